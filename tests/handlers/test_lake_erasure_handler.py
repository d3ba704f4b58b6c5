"""The erasure: a user's rows gone from the lake's files and tables, their share gone from the aggregates, nobody else's touched.

The lake is the local stand-in (``tests/lake_duckdb.py``: Parquet files written with pyarrow from the real
transformation's answers, queried by DuckDB in Athena's SQL); the aggregates are written by the real aggregator from the
same records, in moto's DynamoDB; the report goes to moto's S3. Athena is a stand-in client over the local lake
(``LakeAthena``) that runs each statement the erasure sends: ``SELECT`` and ``DELETE`` translated by sqlglot, ``OPTIMIZE
... REWRITE DATA USING BIN_PACK WHERE <partition> IN (...)`` by rewriting those partitions' files from the table, and
``VACUUM`` as a checked no-op (the stand-in keeps no snapshots); anything else fails the query, as Athena would.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import boto3
import pyarrow.parquet as pq
import pytest

from messaging_runtime import lake
from messaging_runtime.minute_counts import minute_totals
from tests.handlers.exercise_01 import failures
from tests.lake_duckdb import LocalLake

DATABASE = "analytics_lake"
BUCKET = "analytics-lake"
TABLE = "aggregates"
SHARD = "shardId-000000000000"
T0 = datetime(2026, 12, 1, 10, 0, 5, tzinfo=UTC)
_OPTIMIZE = re.compile(r"^OPTIMIZE (\w+)\.(\w+) REWRITE DATA USING BIN_PACK WHERE (\w+) IN \(((?:'[^']*'(?:, )?)+)\)$")
_VACUUM = re.compile(r"^VACUUM (\w+)\.(\w+)$")


class LakeAthena:
    """What the erasure calls of boto3's Athena client, answered from a ``LocalLake``. ``fail_on`` makes the first statement
    that starts with it fail (once), as an Athena error would."""

    def __init__(self, local: LocalLake) -> None:
        self.lake, self.statements, self.fail_on = local, [], None
        self._results: dict[str, list[dict]] = {}
        self._states: dict[str, list[str]] = {}
        self._ids = itertools.count(1)

    def start_query_execution(self, QueryString: str, WorkGroup: str) -> dict:
        assert WorkGroup == "analytics-wg"
        execution_id = f"q-{next(self._ids)}"
        self.statements.append(QueryString)
        state = "SUCCEEDED"
        if self.fail_on and QueryString.startswith(self.fail_on):
            self.fail_on, state = None, "FAILED"
        else:
            self._results[execution_id] = self._run(QueryString)
        self._states[execution_id] = ["RUNNING", state]  # polled once while running, as Athena answers
        return {"QueryExecutionId": execution_id}

    def get_query_execution(self, QueryExecutionId: str) -> dict:
        states = self._states[QueryExecutionId]
        state = states.pop(0) if len(states) > 1 else states[0]
        status = {"State": state} | ({"StateChangeReason": "HIVE_METASTORE_ERROR: injected"} if state == "FAILED" else {})
        return {"QueryExecution": {"QueryExecutionId": QueryExecutionId, "Status": status}}

    def stop_query_execution(self, QueryExecutionId: str) -> dict:
        raise AssertionError("no statement should run long enough to be stopped")

    def get_paginator(self, name: str) -> SimpleNamespace:
        assert name == "get_query_results"
        return SimpleNamespace(paginate=self._pages)

    def _pages(self, QueryExecutionId: str):
        rows = self._results[QueryExecutionId]
        columns = list(rows[0]) if rows else []
        header = {"Data": [{"VarCharValue": c} for c in columns]}
        data = [{"Data": [{"VarCharValue": str(row[c])} if row[c] is not None else {} for c in columns]} for row in rows]
        everything = [header, *data]
        for start in range(0, len(everything), 3):  # small pages: the reader must follow them
            yield {"ResultSet": {"ResultSetMetadata": {"ColumnInfo": [{"Name": c} for c in columns]}, "Rows": everything[start : start + 3]}}

    def _run(self, sql: str) -> list[dict]:
        if sql.startswith("SELECT"):
            return self.lake.query(sql)
        if sql.startswith("DELETE FROM"):
            self.lake.execute(sql)
            return []
        if match := _OPTIMIZE.fullmatch(sql):
            database, table, column, values = match.groups()
            assert database == self.lake.database and (table, column) in {(lake.EVENTS_TABLE, "event_date"), (lake.QUARANTINE_TABLE, "quarantine_date")}
            self._rewrite(table, column, re.findall(r"'([^']*)'", values))
            return []
        if match := _VACUUM.fullmatch(sql):
            assert match.group(1) == self.lake.database and match.group(2) in (lake.EVENTS_TABLE, lake.QUARANTINE_TABLE)
            return []
        raise AssertionError(f"Athena would refuse this statement here: {sql}")

    def _rewrite(self, table: str, column: str, values: list[str]) -> None:
        """The partitions' files written again from the table as it is now (its deletes applied): what OPTIMIZE does."""
        quoted = ", ".join(f"'{v}'" for v in values)
        rows = self.lake.connection.sql(f'SELECT * FROM "{self.lake.database}"."{table}" WHERE {column} IN ({quoted})').to_arrow_table().to_pylist()
        for value in values:
            shutil.rmtree(self.lake.root / table / f"{column}={value}", ignore_errors=True)
        self.lake.write(table, rows)


def event(event_id: int, user: str, event_type: str, minutes: float, *, late_by: timedelta = timedelta(0)) -> dict:
    return {
        "schema_version": 1,
        "event_id": f"00000000-0000-4000-8000-{event_id:012d}",
        "event_type": event_type,
        "event_time": (T0 + timedelta(minutes=minutes) - late_by).isoformat().replace("+00:00", "Z"),
        "user_id": user,
        "platform": "web",
        "page": "/p",
    }


def arrivals(events: list[dict]) -> list[datetime]:
    """Each event's arrival in the stream: its minute offset from ``T0`` (late ones arrive on time, their event time is old)."""
    return [T0 + timedelta(minutes=i // 3) for i, _ in enumerate(events)]


EVENTS = [
    event(1, "u-alice", "page_view", 0),
    event(2, "u-bob", "page_view", 0),
    event(3, "u-alice", "add_to_cart", 0),
    event(4, "u-carol", "page_view", 1),
    event(5, "u-alice", "page_view", 1, late_by=timedelta(minutes=40)),  # arrives in minute 1, event date the same day
    event(6, "u-bob", "purchase", 1),
    event(7, "u-alice", "purchase", 2),
    event(8, "u-carol", "purchase", 2),
]
#: Not valid events: quarantined with their user (an erasure finds them), or with none.
BAD = [
    json.dumps({"schema_version": 1, "user_id": "u-alice", "event_type": "page_view"}).encode(),
    json.dumps({"schema_version": 1, "user_id": "u-bob", "event_time": "yesterday"}).encode(),
    b"\xff\xfe not json",
]


@pytest.fixture
def world(tmp_path, moto_module, load_handler, lambda_context):
    moto_module.setenv("LAKE_DATABASE", DATABASE)
    moto_module.setenv("AGGREGATES_TABLE", TABLE)
    moto_module.setenv("AGGREGATE_DAYS", "30")
    moto_module.setenv("ATHENA_WORKGROUP", "analytics-wg")
    moto_module.setenv("REPORTS_BUCKET", BUCKET)
    dynamodb = boto3.client("dynamodb")
    if TABLE not in dynamodb.list_tables()["TableNames"]:
        dynamodb.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        boto3.client("s3").create_bucket(Bucket=BUCKET)
    for item in dynamodb.scan(TableName=TABLE)["Items"]:
        dynamodb.delete_item(TableName=TABLE, Key={"pk": item["pk"], "sk": item["sk"]})
    transform, aggregator, erasure = (load_handler(name) for name in ("lake_transform", "event_aggregator", "lake_erasure"))
    local = LocalLake(tmp_path / "lake", DATABASE)
    payloads = [json.dumps(e).encode() for e in EVENTS] + BAD
    times = arrivals(EVENTS) + [T0 + timedelta(minutes=1)] * len(BAD)
    sequences = [f"4959{n:040d}" for n in range(len(payloads))]
    firehose = [
        {
            "recordId": f"r{n}",
            "approximateArrivalTimestamp": int(at.timestamp() * 1000),
            "data": base64.b64encode(data).decode(),
            "kinesisRecordMetadata": {
                "shardId": SHARD,
                "partitionKey": "k",
                "sequenceNumber": seq,
                "subsequenceNumber": 0,
                "approximateArrivalTimestamp": int(at.timestamp() * 1000),
            },
        }
        for n, (data, at, seq) in enumerate(zip(payloads, times, sequences, strict=True))
    ]
    answers, _, _ = transform.transform(firehose, T0 + timedelta(minutes=3))
    local.deliver(answers)
    kinesis = [
        {
            "kinesis": {"data": r["data"], "sequenceNumber": seq, "partitionKey": "k", "approximateArrivalTimestamp": at.timestamp()},
            "eventSource": "aws:kinesis",
        }
        for r, at, seq in zip(firehose, times, sequences, strict=True)
    ]
    window = {"Records": kinesis, "shardId": SHARD, "window": {}, "state": {}, "isFinalInvokeForWindow": True, "isWindowTerminatedEarly": False}
    assert aggregator.lambda_handler(window, lambda_context) == {"state": {}, "batchItemFailures": []}
    athena = LakeAthena(local)
    erasure.erasure.athena.client = athena
    erasure.erasure.athena.sleep = lambda seconds: None
    yield SimpleNamespace(lake=local, athena=athena, erasure=erasure, dynamodb=dynamodb, s3=boto3.client("s3"))
    local.close()


def request(sqs_events, user: str, request_id: str) -> dict:
    body = {"schema_version": 1, "request_id": request_id, "user_id": user, "requested_at": "2026-12-01T11:00:00Z"}
    return sqs_events.event([sqs_events.record(json.dumps(body), queue="erasure-requests", message_id=request_id)])


def totals(world) -> dict[str, dict[str, int]]:
    items = world.dynamodb.scan(TableName=TABLE, ConsistentRead=True)["Items"]
    return {pk: minute_totals([i for i in items if i["pk"]["S"] == pk]) for pk in sorted({i["pk"]["S"] for i in items})}


def rows(world, table: str) -> list[dict]:
    return sorted(world.lake.query(f"SELECT * FROM {DATABASE}.{table}"), key=lambda r: json.dumps(r, default=str, sort_keys=True))


def files_mentioning(world, text: str) -> list[Path]:
    """Parquet files under the lake whose values (any column) contain ``text``."""
    found = []
    for path in sorted(world.lake.root.glob("**/*.parquet")):
        values = pq.read_table(path).to_pylist()
        if any(text in str(value) for row in values for value in row.values()) or text in str(path):
            found.append(path)
    return found


def report(world, request_id: str) -> dict:
    return json.loads(world.s3.get_object(Bucket=BUCKET, Key=f"erasures/{request_id}.json")["Body"].read())


def test_an_erasure_removes_the_users_rows_files_and_share_and_nobody_elses(world, sqs_events, lambda_context):
    before_events, before_quarantine, before = rows(world, "events"), rows(world, "quarantine"), totals(world)
    assert files_mentioning(world, "u-alice")  # she is in the lake's files to begin with

    assert world.erasure.lambda_handler(request(sqs_events, "u-alice", "er-1"), lambda_context) == failures()

    assert rows(world, "events") == [r for r in before_events if r["user_id"] != "u-alice"]
    assert rows(world, "quarantine") == [r for r in before_quarantine if r["user_id"] != "u-alice"]
    assert len(before_events) - len(rows(world, "events")) == 4 and len(before_quarantine) - len(rows(world, "quarantine")) == 1
    # Rewritten, not only hidden: no file of the lake holds her id any more.
    assert files_mentioning(world, "u-alice") == []
    minute = lambda n: (T0 + timedelta(minutes=n)).strftime("%Y-%m-%dT%H:%M")  # noqa: E731
    expected = {pk: dict(t) for pk, t in before.items()}
    for pk, events, late in (
        (f"page_view#{minute(0)}", 1, 0),
        (f"add_to_cart#{minute(0)}", 1, 0),
        (f"page_view#{minute(1)}", 1, 1),
        (f"purchase#{minute(2)}", 1, 0),
    ):
        expected[pk] = {"events": before[pk]["events"] - events, "late": before[pk]["late"] - late, "users": before[pk]["users"] - 1}
    assert totals(world) == expected
    assert expected[f"page_view#{minute(0)}"] == {"events": 1, "late": 0, "users": 1}  # bob's view is still counted
    assert expected[f"purchase#{minute(1)}"] == before[f"purchase#{minute(1)}"]  # a minute she was not in is untouched

    written = report(world, "er-1")
    assert written["status"] == "done" and written["user_id"] == "u-alice" and written["aggregate_items"] == 4
    assert written["removed"] == {"events": 4, "quarantine": 1}
    assert [(s["event_type"], s["minute"], s["events"], s["late"]) for s in written["shares"]] == [
        ("add_to_cart", minute(0), 1, 0),
        ("page_view", minute(0), 1, 0),
        ("page_view", minute(1), 1, 1),
        ("purchase", minute(2), 1, 0),
    ]
    kinds = [s.split(" ", 1)[0] for s in world.athena.statements]
    assert kinds == ["SELECT", "SELECT", "DELETE", "DELETE", "OPTIMIZE", "VACUUM", "OPTIMIZE", "VACUUM"]
    assert len(written["athena_executions"]) == len(kinds)


def test_a_request_repeated_after_it_is_done_changes_nothing(world, sqs_events, lambda_context):
    assert world.erasure.lambda_handler(request(sqs_events, "u-alice", "er-2"), lambda_context) == failures()
    after, statements = totals(world), len(world.athena.statements)
    assert world.erasure.lambda_handler(request(sqs_events, "u-alice", "er-2"), lambda_context) == failures()
    assert totals(world) == after and len(world.athena.statements) == statements


def test_an_erasure_that_fails_after_counting_resumes_from_its_report_and_still_subtracts_the_share(world, sqs_events, lambda_context):
    before = totals(world)
    world.athena.fail_on = "DELETE FROM analytics_lake.quarantine"  # his events are deleted, then Athena fails
    assert world.erasure.lambda_handler(request(sqs_events, "u-bob", "er-3"), lambda_context) == failures("er-3")
    assert report(world, "er-3")["status"] == "counted"
    assert not [r for r in rows(world, "events") if r["user_id"] == "u-bob"]  # gone already: a new count would find nothing

    assert world.erasure.lambda_handler(request(sqs_events, "u-bob", "er-3"), lambda_context) == failures()
    written = report(world, "er-3")
    assert written["status"] == "done" and written["removed"] == {"events": 2, "quarantine": 1}
    minute = lambda n: (T0 + timedelta(minutes=n)).strftime("%Y-%m-%dT%H:%M")  # noqa: E731
    now = totals(world)
    assert now[f"page_view#{minute(0)}"] == {k: v - d for (k, v), d in zip(before[f"page_view#{minute(0)}"].items(), (1, 0, 1), strict=True)}
    assert now[f"purchase#{minute(1)}"] == {k: v - d for (k, v), d in zip(before[f"purchase#{minute(1)}"].items(), (1, 0, 1), strict=True)}
    assert files_mentioning(world, "u-bob") == []


def test_a_request_that_is_not_an_erasure_request_fails_alone_with_its_reason(world, sqs_events, lambda_context):
    bad = sqs_events.record(
        json.dumps({"schema_version": 1, "request_id": "er-4", "user_id": "alice' OR '1'='1"}), queue="erasure-requests", message_id="m-bad"
    )
    assert world.erasure.lambda_handler(sqs_events.event([bad]), lambda_context) == failures("m-bad")
    assert world.athena.statements == []  # nothing reached SQL
