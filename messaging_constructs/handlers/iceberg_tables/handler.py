"""Custom resource ``Custom::IcebergTable``: an Apache Iceberg table in the Glue catalog, made with Athena DDL.

CloudFormation's own ``AWS::Glue::Table`` takes no partition spec for an
Iceberg table that deploys reliably, and any later update of one strips the
properties that make it Iceberg; Athena's ``CREATE TABLE ... TBLPROPERTIES
('table_type'='ICEBERG')`` makes a format-2 table with identity partitions,
which Firehose and Athena both write. So:

- Create: ``CREATE TABLE IF NOT EXISTS`` with the columns, partitions, location
  and properties given (an existing table of that name is kept as it is).
- Update: new columns at the end are added (``ALTER TABLE ... ADD COLUMNS``)
  and changed properties set (``ALTER TABLE ... SET TBLPROPERTIES``, only those
  that changed); a property removed is refused (Athena sets, never unsets); any other
  change (a column removed, renamed or retyped, another partitioning, location,
  database or name) is refused with the reason, since Iceberg would keep the
  old files under the old layout: make a new table instead.
- Delete: ``DROP TABLE IF EXISTS`` when ``RemovalPolicy`` is ``destroy``; the
  table is kept otherwise.

Every request is answered, SUCCESS or FAILED with the reason, so a deployment
never waits for a custom resource's timeout.

Properties: ``Workgroup``, ``Database``, ``Table``, ``Location`` (``s3://.../``),
``Columns`` (``[[name, type], ...]``), ``Partitions`` (column names),
``TableProperties`` (name to value), ``RemovalPolicy``.
"""

from __future__ import annotations

import re

import boto3
from aws_lambda_powertools import Logger

from messaging_runtime.athena import AthenaQueries
from messaging_runtime.cloudformation import serve

logger = Logger()
athena = boto3.client("athena")

_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,127}$")
_TYPES = frozenset({"string", "int", "bigint", "boolean", "double", "float", "date", "timestamp"})
_PROPERTY = re.compile(r"^[a-z_][a-z0-9_.]{0,127}$")


class Refused(Exception):
    """A change this resource does not make."""


def _check(properties: dict) -> None:
    for label in ("Database", "Table"):
        if not _NAME.fullmatch(str(properties.get(label, ""))):
            raise Refused(f"{label} must be lower-case letters, digits and _, got {properties.get(label)!r}")
    for name, kind in properties["Columns"]:
        if not _NAME.fullmatch(name) or kind not in _TYPES:
            raise Refused(f"column {name!r} of type {kind!r}: names are lower-case letters, digits and _; types {', '.join(sorted(_TYPES))}")
    names = [name for name, _ in properties["Columns"]]
    if len(set(names)) != len(names) or not set(properties.get("Partitions", [])) <= set(names):
        raise Refused(f"columns must be distinct and partitions among them, got {names} and {properties.get('Partitions')}")
    for name, value in properties.get("TableProperties", {}).items():
        if not _PROPERTY.fullmatch(name) or "'" in str(value):
            raise Refused(f"table property {name!r}={value!r} is not one this resource writes")
    if not str(properties.get("Location", "")).startswith("s3://") or "'" in properties["Location"]:
        raise Refused(f"Location must be an s3:// URL, got {properties.get('Location')!r}")


def _quoted_properties(values: dict) -> str:
    return ", ".join(f"'{name}'='{value}'" for name, value in sorted(values.items()))


def create_statement(properties: dict) -> str:
    """Athena's Iceberg DDL (https://docs.aws.amazon.com/athena/latest/ug/querying-iceberg-creating-tables.html), with
    ``IF NOT EXISTS`` as AWS's own aws-sdk-pandas writes it (``athena.to_iceberg``)."""
    columns = ",\n  ".join(f"{name} {kind}" for name, kind in properties["Columns"])
    partitioned = f"\nPARTITIONED BY ({', '.join(properties['Partitions'])})" if properties.get("Partitions") else ""
    return (
        f"CREATE TABLE IF NOT EXISTS {properties['Database']}.{properties['Table']} (\n  {columns}\n){partitioned}\n"
        f"LOCATION '{properties['Location']}'\nTBLPROPERTIES ({_quoted_properties({'table_type': 'ICEBERG', **properties.get('TableProperties', {})})})"
    )


def update_statements(old: dict, new: dict) -> list[str]:
    """The statements that take the table from ``old`` to ``new``; ``Refused`` for a change they cannot make."""
    for label in ("Database", "Table", "Location", "Partitions"):
        if old.get(label) != new.get(label):
            raise Refused(f"{label} cannot change in place ({old.get(label)!r} to {new.get(label)!r}): make a new table")
    kept, columns = [list(c) for c in old["Columns"]], [list(c) for c in new["Columns"]]
    if columns[: len(kept)] != kept:
        raise Refused("columns can only be added at the end: an existing column cannot be removed, renamed, retyped or moved")
    table = f"{new['Database']}.{new['Table']}"
    statements = []
    if added := columns[len(kept) :]:
        statements.append(f"ALTER TABLE {table} ADD COLUMNS ({', '.join(f'{name} {kind}' for name, kind in added)})")
    changed = {k: v for k, v in new.get("TableProperties", {}).items() if old.get("TableProperties", {}).get(k) != v}
    if removed := sorted(set(old.get("TableProperties", {})) - set(new.get("TableProperties", {}))):
        raise Refused(f"table properties {removed} cannot be removed here (Athena sets properties, it does not unset them): set them to their default instead")
    if changed:  # only the ones that changed, never table_type: Athena's SET TBLPROPERTIES takes the Iceberg properties it lists
        statements.append(f"ALTER TABLE {table} SET TBLPROPERTIES ({_quoted_properties(changed)})")
    return statements


def _act(event: dict, physical_id: str, context) -> str:
    properties = event.get("ResourceProperties", {})
    name = f"{properties.get('Database')}.{properties.get('Table')}"
    queries = AthenaQueries(athena, workgroup=properties["Workgroup"], timeout_seconds=max(30, context.get_remaining_time_in_millis() / 1000 - 30))
    if event["RequestType"] == "Create":
        _check(properties)
        queries.execute(create_statement(properties))
        return name
    if event["RequestType"] == "Update":
        _check(properties)
        for statement in update_statements(event.get("OldResourceProperties", {}), properties):
            queries.execute(statement)
    elif properties.get("RemovalPolicy") == "destroy" and physical_id == name:  # not a create that failed
        queries.execute(f"DROP TABLE IF EXISTS {name}")
    return physical_id


@logger.inject_lambda_context
def lambda_handler(event: dict, context) -> None:
    properties = event.get("ResourceProperties", {})
    name = f"{properties.get('Database')}.{properties.get('Table')}"
    serve(
        event, context, lambda e, physical_id: _act(e, physical_id, context), logger=logger, kind="IcebergTable", data_key="TableName", describe={"table": name}
    )
