"""Custom::IcebergTable: CloudFormation's requests, with Athena standing in and a local endpoint for the answers.

The Athena stand-in records each statement and answers it SUCCEEDED (or FAILED, when told to); what the statements
say is checked here, and ``tests/unit/test_analytics_constructs.py`` parses them as Athena SQL.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest

from messaging_constructs.iceberg_lake import HANDLER_CODE

PROPERTIES = {
    "ServiceToken": "x",
    "Workgroup": "lake-wg",
    "Database": "analytics_lake",
    "Table": "events",
    "Location": "s3://lake-bucket/warehouse/analytics_lake/events/",
    "Columns": [["event_id", "string"], ["event_date", "string"], ["schema_version", "int"]],
    "Partitions": ["event_date"],
    "TableProperties": {"format": "parquet", "vacuum_max_snapshot_age_seconds": "86400"},
    "RemovalPolicy": "destroy",
}


class Athena:
    """What the handler calls of Athena: statements recorded, each SUCCEEDED unless ``fail`` says otherwise."""

    def __init__(self) -> None:
        self.statements: list[str] = []
        self.fail = False

    def start_query_execution(self, QueryString: str, WorkGroup: str) -> dict:
        assert WorkGroup == "lake-wg"
        self.statements.append(QueryString)
        return {"QueryExecutionId": f"q-{len(self.statements)}"}

    def get_query_execution(self, QueryExecutionId: str) -> dict:
        status = {"State": "FAILED", "StateChangeReason": "AccessDeniedException: glue:CreateTable"} if self.fail else {"State": "SUCCEEDED"}
        return {"QueryExecution": {"Status": status}}


@pytest.fixture
def handler(handler_env):
    spec = importlib.util.spec_from_file_location("iceberg_tables_handler_under_test", Path(HANDLER_CODE) / "handler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.athena = Athena()
    return module


def _event(request_type: str, url: str, *, physical_id: str | None = None, old: dict | None = None, **changes) -> dict:
    event = {
        "RequestType": request_type,
        "ResponseURL": url,
        "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/CapstoneAnalytics/1c2fa620-982a-11e3-aff7-50e2416294e0",
        "RequestId": "5e0f8a2b-0d8f-4b6e-9d3a-7f1c2b3a4d5e",
        "ResourceType": "Custom::IcebergTable",
        "LogicalResourceId": "LakeTableEvents",
        "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:handler",
        "ResourceProperties": {**PROPERTIES, **changes},
    }
    if physical_id is not None:
        event["PhysicalResourceId"] = physical_id
    if old is not None:
        event["OldResourceProperties"] = old
    return event


CONTEXT = SimpleNamespace(
    get_remaining_time_in_millis=lambda: 300_000,
    log_stream_name="stream",
    function_name="f",
    aws_request_id="r",
    invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:f",
    memory_limit_in_mb=128,
    function_version="$LATEST",
)


def test_create_makes_the_table_with_athena_ddl_and_answers_with_its_name(handler, answers):
    url, received = answers
    handler.lambda_handler(_event("Create", url), CONTEXT)
    (statement,) = handler.athena.statements
    assert statement.startswith("CREATE TABLE IF NOT EXISTS analytics_lake.events (")
    assert "PARTITIONED BY (event_date)" in statement and "LOCATION 's3://lake-bucket/warehouse/analytics_lake/events/'" in statement
    assert "'table_type'='ICEBERG'" in statement and "'vacuum_max_snapshot_age_seconds'='86400'" in statement
    assert [(a["Status"], a["PhysicalResourceId"], a["Data"]) for a in received] == [
        ("SUCCESS", "analytics_lake.events", {"TableName": "analytics_lake.events"})
    ]


def test_a_create_athena_refuses_answers_failed_with_athenas_reason_and_a_delete_then_drops_nothing(handler, answers):
    url, received = answers
    handler.athena.fail = True
    handler.lambda_handler(_event("Create", url), CONTEXT)
    (answer,) = received
    assert answer["Status"] == "FAILED" and "AccessDeniedException: glue:CreateTable" in answer["Reason"]
    assert answer["PhysicalResourceId"] == "LakeTableEvents-not-created"
    handler.athena.fail, handler.athena.statements = False, []
    handler.lambda_handler(_event("Delete", url, physical_id="LakeTableEvents-not-created"), CONTEXT)
    assert handler.athena.statements == [] and received[-1]["Status"] == "SUCCESS"


def test_an_update_adds_columns_at_the_end_and_sets_only_the_changed_properties(handler, answers):
    url, received = answers
    columns = [*PROPERTIES["Columns"], ["page", "string"]]
    properties = {**PROPERTIES["TableProperties"], "vacuum_max_snapshot_age_seconds": "3600"}
    handler.lambda_handler(_event("Update", url, physical_id="analytics_lake.events", old=PROPERTIES, Columns=columns, TableProperties=properties), CONTEXT)
    assert handler.athena.statements == [
        "ALTER TABLE analytics_lake.events ADD COLUMNS (page string)",
        "ALTER TABLE analytics_lake.events SET TBLPROPERTIES ('vacuum_max_snapshot_age_seconds'='3600')",
    ]
    assert received[-1]["Status"] == "SUCCESS"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"Columns": [["event_id", "string"], ["event_date", "string"]]}, "columns can only be added at the end"),
        ({"Columns": [["event_id", "string"], ["event_date", "string"], ["schema_version", "bigint"]]}, "columns can only be added at the end"),
        ({"Partitions": ["event_id"]}, "Partitions cannot change in place"),
        ({"Location": "s3://other/"}, "Location cannot change in place"),
        ({"TableProperties": {"format": "parquet"}}, "cannot be removed here"),
        ({"Table": "events;drop"}, "Table must be lower-case letters"),
    ],
)
def test_an_update_it_cannot_make_is_refused_with_the_reason_and_runs_nothing(handler, answers, changes, reason):
    url, received = answers
    handler.lambda_handler(_event("Update", url, physical_id="analytics_lake.events", old=PROPERTIES, **changes), CONTEXT)
    assert handler.athena.statements == []
    assert received[-1]["Status"] == "FAILED" and reason in received[-1]["Reason"]


def test_delete_drops_the_table_when_the_profile_destroys_and_keeps_it_otherwise(handler, answers):
    url, received = answers
    handler.lambda_handler(_event("Delete", url, physical_id="analytics_lake.events"), CONTEXT)
    assert handler.athena.statements == ["DROP TABLE IF EXISTS analytics_lake.events"]
    handler.athena.statements = []
    handler.lambda_handler(_event("Delete", url, physical_id="analytics_lake.events", RemovalPolicy="retain"), CONTEXT)
    assert handler.athena.statements == [] and [a["Status"] for a in received] == ["SUCCESS", "SUCCESS"]
