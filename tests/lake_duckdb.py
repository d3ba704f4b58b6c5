"""A local stand-in for the analytics lake: Parquet files written with pyarrow, queried with DuckDB in Athena's SQL.

``LocalLake`` writes the rows the Firehose transformation makes
(``lambdas/lake_transform``) as Parquet files, hive-partitioned as the Iceberg
tables are (``messaging_runtime.lake``: ``events`` by ``event_date`` and
``event_type``, ``quarantine`` by ``quarantine_date``), one set of files per
write (as Firehose writes one per buffer), with the tables' types and
nullability. It loads them, read back from the files, into an in-memory DuckDB
database as ``<database>.events`` and ``<database>.quarantine`` (a DuckDB schema
named after the Glue database), so the named queries run unchanged.

``athena_to_duckdb`` translates Athena's SQL (Trino) to DuckDB's with sqlglot,
and corrects what sqlglot translates to something that means another thing in
DuckDB (``_FIXES``: each says why). The session's time zone is UTC, as
Athena's is; ``now`` (when given) stands for ``current_timestamp`` and
``current_date``, so that a test's "last hour" and "last 7 days" are fixed.
"""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import sqlglot
from sqlglot import exp
from sqlglot.dialects.dialect import Dialect

from messaging_runtime import lake

#: sqlglot's dialect for Athena's SQL: ``athena`` (Trino for queries) where sqlglot has it.
READ = "athena" if "athena" in Dialect.classes else "trino"

#: Each table: its columns (name, Iceberg type, required) and its partition columns.
TABLES: dict[str, tuple[tuple[tuple[str, str, bool], ...], tuple[str, ...]]] = {
    lake.EVENTS_TABLE: (lake.EVENT_COLUMNS, lake.EVENT_PARTITIONS),
    lake.QUARANTINE_TABLE: (lake.QUARANTINE_COLUMNS, lake.QUARANTINE_PARTITIONS),
}
_ARROW_TYPES = {"string": pa.string(), "int": pa.int32()}
_DUCKDB_TYPES = {"string": "VARCHAR", "int": "INTEGER"}


def arrow_schema(table: str) -> pa.Schema:
    """The table's columns as a pyarrow schema: ``string`` is a string, ``int`` a 32-bit integer; a required column is not nullable."""
    columns, _ = TABLES[table]
    return pa.schema([pa.field(name, _ARROW_TYPES[kind], nullable=not required) for name, kind, required in columns])


# sqlglot's translations that mean something else in DuckDB, each corrected on the parsed (Athena) tree.


def _iso8601_to_the_millisecond(node: exp.Expression) -> exp.Expression:
    """``from_iso8601_timestamp(x)``: sqlglot writes ``CAST(x AS TIMESTAMPTZ)``, to the microsecond; Athena's answer is a
    ``timestamp(3) with time zone``, the fraction cut to the millisecond. Cut it as Athena does (so that two times in one
    millisecond are equal in both)."""
    if isinstance(node, exp.FromISO8601Timestamp):
        return exp.func("DATE_TRUNC", exp.Literal.string("millisecond"), exp.cast(node.this, exp.DataType.Type.TIMESTAMPTZ))
    return node


def _date_diff_whole_units(node: exp.Expression) -> exp.Expression:
    """``date_diff(unit, a, b)``: Trino counts the whole units from ``a`` to ``b`` (10:00:00.900 to 10:00:01.100 is 0
    seconds); DuckDB's ``date_diff``, which sqlglot writes, counts the unit boundaries crossed (1). DuckDB's ``date_sub``
    counts whole units."""
    if isinstance(node, exp.DateDiff):
        unit = node.args.get("unit")
        return exp.Anonymous(this="DATE_SUB", expressions=[exp.Literal.string(unit.name.lower() if unit else "day"), node.expression, node.this])
    return node


def _approx_percentile_is_a_value(node: exp.Expression) -> exp.Expression:
    """``approx_percentile(x, q)``: sqlglot writes DuckDB's ``approx_quantile``, a t-digest that interpolates between values
    and drifts with the input's order; Athena's (a q-digest for a bigint) answers one of the values. ``quantile_disc`` is
    the exact quantile, one of the values: what Athena's approximates. (On an even number of values the two may pick the
    neighbouring value: a test of a median uses an odd number.)"""
    if isinstance(node, exp.ApproxQuantile):
        return exp.Anonymous(this="QUANTILE_DISC", expressions=[node.this, node.args["quantile"]])
    return node


_DATE_UNITS = {"DAY", "WEEK", "MONTH", "QUARTER", "YEAR"}


def _is_date(node: exp.Expression) -> bool:
    return isinstance(node, exp.CurrentDate) or (isinstance(node, exp.Cast) and node.to.is_type(exp.DataType.Type.DATE))


def _date_arithmetic_stays_a_date(node: exp.Expression) -> exp.Expression:
    """``current_date - INTERVAL '6' DAY`` is a date in Trino and a timestamp in DuckDB: cast to text, Trino's is
    ``2026-11-27``, DuckDB's ``2026-11-27 00:00:00`` (and a partition filter on the text compares wrong). Cast a date
    plus or minus days, weeks, months or years back to a date. (A date is ``current_date`` or a cast to date.)"""
    if isinstance(node, (exp.Add, exp.Sub)) and _is_date(node.this) and isinstance(node.expression, exp.Interval):
        unit = node.expression.args.get("unit")
        if unit is not None and unit.name.upper() in _DATE_UNITS:
            return exp.cast(node, exp.DataType.Type.DATE)
    if isinstance(node, (exp.DateAdd, exp.DateSub)) and _is_date(node.this):
        return exp.cast(node, exp.DataType.Type.DATE)
    return node


def _fixed_now(now: datetime) -> Callable[[exp.Expression], exp.Expression]:
    """``current_timestamp`` and ``current_date`` as the given time (UTC), for a test whose answers depend on them."""
    moment = exp.cast(exp.Literal.string(lake.timestamp_text(now)), exp.DataType.Type.TIMESTAMPTZ)
    today = exp.cast(exp.Literal.string(now.astimezone(UTC).date().isoformat()), exp.DataType.Type.DATE)

    def fix(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.CurrentTimestamp):
            return moment.copy()
        if isinstance(node, exp.CurrentDate):
            return today.copy()
        return node

    return fix


_FIXES = (_iso8601_to_the_millisecond, _date_diff_whole_units, _approx_percentile_is_a_value, _date_arithmetic_stays_a_date)


def athena_to_duckdb(sql: str, *, now: datetime | None = None) -> str:
    """``sql`` (one Athena statement) in DuckDB's SQL, with ``_FIXES`` applied; ``now`` for ``current_timestamp``/``current_date``."""
    tree = sqlglot.parse_one(sql, read=READ)
    for fix in _FIXES:  # each a pass of its own: the date fix sees the casts, the clock fix comes after it
        tree = tree.transform(fix)
    if now is not None:
        tree = tree.transform(_fixed_now(now))
    return tree.sql(dialect="duckdb")


class LocalLake:
    """The lake's two tables as Parquet files under ``root``, loaded into an in-memory DuckDB as ``<database>.<table>``."""

    def __init__(self, root: Path, database: str = "analytics", *, now: datetime | None = None) -> None:
        self.root, self.database, self.now = Path(root), database, now
        self._writes = itertools.count()
        self.connection = duckdb.connect(":memory:")
        self.connection.execute("SET TimeZone = 'UTC'")  # Athena's session time zone
        self.connection.execute(f'CREATE SCHEMA "{database}"')
        for table in TABLES:
            self._load(table)

    def __enter__(self) -> LocalLake:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.connection.close()

    def write(self, table: str, rows: Iterable[Mapping[str, Any]]) -> None:
        """``rows`` (each with exactly the table's columns) as one new set of Parquet files, one per partition; the table
        is then loaded again from all its files (a ``DELETE`` made before is undone: write first, then delete)."""
        schema = arrow_schema(table)
        rows = [dict(row) for row in rows]
        for row in rows:
            if set(row) != set(schema.names):
                raise ValueError(f"a {table} row has the columns {sorted(row)}, the table {schema.names}")
            missing = [field.name for field in schema if not field.nullable and row[field.name] is None]
            if missing:
                raise ValueError(f"a {table} row has no value for the required {missing}")
        if rows:
            _, partitions = TABLES[table]
            ds.write_dataset(
                pa.Table.from_pylist(rows, schema=schema),
                self.root / table,
                format="parquet",
                partitioning=ds.partitioning(pa.schema([schema.field(name) for name in partitions]), flavor="hive"),
                basename_template=f"write-{next(self._writes):05d}-{{i}}.parquet",
                existing_data_behavior="overwrite_or_ignore",
            )
        self._load(table)

    def deliver(self, answers: Iterable[Mapping[str, Any]]) -> dict[str, int]:
        """The transformation's answers for one buffer, as Firehose delivers them: each ``Ok`` answer's data is a row of
        the table its ``otfMetadata`` names (in this lake's database); ``Dropped`` ones are not written. The rows per table."""
        rows: dict[str, list[dict[str, Any]]] = {table: [] for table in TABLES}
        for answer in answers:
            if answer["result"] == "Dropped":
                continue
            if answer["result"] != "Ok":
                raise ValueError(f"Firehose would write record {answer['recordId']} to its error prefix: {answer['result']}")
            destination = answer["metadata"]["otfMetadata"]
            if destination["destinationDatabaseName"] != self.database or destination["operation"] != "insert":
                raise ValueError(f"record {answer['recordId']} is not an insert into {self.database}: {destination}")
            rows[destination["destinationTableName"]].append(json.loads(base64.b64decode(answer["data"])))
        for table, table_rows in rows.items():
            if table_rows:
                self.write(table, table_rows)
        return {table: len(table_rows) for table, table_rows in rows.items()}

    def query(self, sql: str) -> list[dict[str, Any]]:
        """The rows an Athena query answers, as dicts (times as aware ``datetime`` in UTC)."""
        # Through Arrow: DuckDB's own conversion of a time with a zone to Python needs pytz.
        return self.connection.sql(athena_to_duckdb(sql, now=self.now)).to_arrow_table().to_pylist()

    def execute(self, sql: str) -> None:
        """An Athena statement that answers no rows (``DELETE FROM <database>.events WHERE ...``), on the loaded tables."""
        self.connection.execute(athena_to_duckdb(sql, now=self.now))

    def _load(self, table: str) -> None:
        columns, partitions = TABLES[table]
        name = f'"{self.database}"."{table}"'
        definition = ", ".join(f"{column} {_DUCKDB_TYPES[kind]}{' NOT NULL' if required else ''}" for column, kind, required in columns)
        self.connection.execute(f"CREATE OR REPLACE TABLE {name} ({definition})")
        files = sorted((self.root / table).glob("**/*.parquet"))
        if files:
            kinds = {column: kind for column, kind, _ in columns}
            hive_types = "{" + ", ".join(f"'{column}': '{_DUCKDB_TYPES[kinds[column]]}'" for column in partitions) + "}"
            names = ", ".join(column for column, _, _ in columns)
            self.connection.execute(
                f"INSERT INTO {name} SELECT {names} FROM read_parquet(?, hive_partitioning = true, hive_types = {hive_types}, union_by_name = true)",
                [[str(path) for path in files]],
            )
