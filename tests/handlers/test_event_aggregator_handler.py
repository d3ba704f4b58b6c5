"""The real-time aggregator against moto DynamoDB: Kinesis tumbling-window events, state carried between invocations.

Lambda invokes the function several times per window and shard, each time with the ``state`` the last invocation
returned; the final one (``isFinalInvokeForWindow``, or ``isWindowTerminatedEarly`` when the state grew too big) writes
one item per event type and minute of arrival, ``sk = shard#<shard id>#<first sequence number>``, and returns an empty
state. A failed write fails the invocation, and Lambda retries it with the state from before: the same items are
written again, never added twice.

The handler's promise about duplicates: a second copy of an event id *within one invocation* is counted once. Copies
in two invocations (a producer's retry that lands in a later batch) are both counted; the lake, not the aggregates,
keeps one row per event id.
"""

import base64
import itertools
import json
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import boto3
import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from messaging_runtime.minute_counts import STATE_VERSION, MinuteCounts, minute_totals, user_hash
from messaging_runtime.publishers.core import PublishError, Retry
from tests.handlers.exercise_01 import emitted_totals

TABLE_NAME = "capstone-analytics-aggregates"
AGGREGATE_DAYS = 7
REGION, ACCOUNT_ID = "us-east-1", "123456789012"
STREAM_ARN = f"arn:aws:kinesis:{REGION}:{ACCOUNT_ID}:stream/capstone-analytics-events"
CONSUMER_ROLE = f"arn:aws:iam::{ACCOUNT_ID}:role/capstone-analytics-event-aggregator"
#: 2026-03-02T10:00:00Z, the start of the windows of these tests.
WINDOW_START = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)

#: An invocation that raises before adding a metric flushes none: Powertools warns, as it should.
NO_METRICS = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")
PROPERTY = settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def aggregator(moto_module, load_handler):
    dynamodb = boto3.client("dynamodb")
    dynamodb.create_table(
        TableName=TABLE_NAME,
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.update_time_to_live(TableName=TABLE_NAME, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"})
    moto_module.setenv("AGGREGATES_TABLE", TABLE_NAME)
    moto_module.setenv("AGGREGATE_DAYS", str(AGGREGATE_DAYS))
    moto_module.setenv("POWERTOOLS_SERVICE_NAME", "capstone-analytics")
    moto_module.setenv("POWERTOOLS_METRICS_NAMESPACE", "CapstoneAnalytics")
    module = load_handler("event_aggregator")
    # The test's own reads: one client for the module (making a client costs more than a call to moto).
    _clients["dynamodb"] = boto3.client("dynamodb")
    yield module
    _clients.clear()


_clients: dict[str, Any] = {}


@pytest.fixture
def quick_retries(aggregator, monkeypatch):
    """The publisher's retries without their pauses; the pauses it would have made, in order."""
    pauses: list[float] = []
    monkeypatch.setattr(aggregator.aggregates, "retry", Retry(sleep=pauses.append))
    return pauses


# --- Building the events Lambda passes --------------------------------------------------------------------------------

_shard_numbers = itertools.count(1)


class Shard:
    """One shard of the events stream: records with increasing sequence numbers, and the window events Lambda makes of them."""

    def __init__(self) -> None:
        self.id = f"shardId-{next(_shard_numbers):012d}"
        self._sequence = itertools.count(49_671_234_567_890_123_456_789_012_345_678_901_234_567_890_123_456, 7)

    def record(self, data: bytes | None = None, *, arrival: datetime | float = WINDOW_START, raw_data: str | None = None, partition_key: str = "u-ada"):
        sequence = str(next(self._sequence))
        seconds = arrival.timestamp() if isinstance(arrival, datetime) else arrival
        return {
            "kinesis": {
                "kinesisSchemaVersion": "1.0",
                "partitionKey": partition_key,
                "sequenceNumber": sequence,
                "data": base64.b64encode(data).decode() if raw_data is None else raw_data,
                "approximateArrivalTimestamp": seconds,
            },
            "eventSource": "aws:kinesis",
            "eventVersion": "1.0",
            "eventID": f"{self.id}:{sequence}",
            "eventName": "aws:kinesis:record",
            "invokeIdentityArn": CONSUMER_ROLE,
            "awsRegion": REGION,
            "eventSourceARN": STREAM_ARN,
        }

    def event_record(self, event: dict[str, Any], *, arrival: datetime | float = WINDOW_START) -> dict[str, Any]:
        return self.record(json.dumps(event).encode(), arrival=arrival, partition_key=str(event.get("user_id", "u-none")))

    def window(self, records: list[dict[str, Any]], *, state: dict[str, Any] | None = None, final: bool = False, early: bool = False) -> dict[str, Any]:
        return {
            "Records": records,
            "window": {
                "start": WINDOW_START.isoformat().replace("+00:00", "Z"),
                "end": (WINDOW_START + timedelta(minutes=1)).isoformat().replace("+00:00", "Z"),
            },
            "state": {} if state is None else state,
            "shardId": self.id,
            "eventSourceARN": STREAM_ARN,
            "isFinalInvokeForWindow": final,
            "isWindowTerminatedEarly": early,
        }

    def first_sequence(self, record: dict[str, Any]) -> str:
        return f"shard#{self.id}#{record['kinesis']['sequenceNumber']}"


def analytics_event(**overrides: Any) -> dict[str, Any]:
    event = {
        "schema_version": 1,
        "event_id": str(uuid.uuid4()),
        "event_type": "page_view",
        "event_time": "2026-03-02T10:00:00Z",
        "user_id": "u-ada",
        "platform": "web",
    }
    event.update(overrides)
    return event


def at(seconds: float) -> datetime:
    return WINDOW_START + timedelta(seconds=seconds)


def text(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def items_of(shard: Shard) -> list[dict[str, Any]]:
    """Every item the shard's windows wrote, in low-level form, sorted by key."""
    pages = (
        _clients["dynamodb"]
        .get_paginator("scan")
        .paginate(
            TableName=TABLE_NAME,
            ConsistentRead=True,
            FilterExpression="begins_with(sk, :shard)",
            ExpressionAttributeValues={":shard": {"S": f"shard#{shard.id}#"}},
        )
    )
    return sorted((item for page in pages for item in page["Items"]), key=lambda item: (item["pk"]["S"], item["sk"]["S"]))


def totals_by_minute(items: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """{pk: minute_totals of its items}."""
    by_pk: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in items:
        by_pk[item["pk"]["S"]].append(item)
    return {pk: minute_totals(group) for pk, group in by_pk.items()}


def invoke(aggregator, event: dict[str, Any], lambda_context) -> dict[str, Any]:
    response = aggregator.lambda_handler(event, lambda_context)
    assert set(response) == {"state", "batchItemFailures"}
    assert response["batchItemFailures"] == []
    # Lambda keeps the state as JSON between invocations: text values only.
    assert json.loads(json.dumps(response["state"])) == response["state"]
    assert all(isinstance(value, str) for value in response["state"].values())
    return response


# --- Windows -----------------------------------------------------------------------------------------------------------


def test_an_invocation_before_the_end_of_the_window_writes_nothing_and_returns_the_counts_as_state(aggregator, lambda_context):
    shard = Shard()
    records = [
        shard.event_record(analytics_event(user_id="u-ada"), arrival=at(1.5)),
        shard.event_record(analytics_event(user_id="u-bob"), arrival=at(2.25)),
        shard.event_record(analytics_event(user_id="u-ada", event_type="purchase"), arrival=at(3)),
    ]

    response = invoke(aggregator, shard.window(records), lambda_context)

    assert items_of(shard) == []
    state = response["state"]
    assert state["v"] == STATE_VERSION
    assert state["first"] == records[0]["kinesis"]["sequenceNumber"]
    counts = MinuteCounts.from_state(state)
    assert {key: (tally.events, tally.late, tally.users) for key, tally in counts.tallies.items()} == {
        ("page_view", "2026-03-02T10:00"): (2, 0, {user_hash("u-ada"), user_hash("u-bob")}),
        ("purchase", "2026-03-02T10:00"): (1, 0, {user_hash("u-ada")}),
    }


def test_the_state_is_carried_across_invocations_and_the_final_one_writes_one_item_per_type_and_minute(aggregator, lambda_context, capsys):
    shard = Shard()
    first = [
        shard.event_record(analytics_event(user_id="u-ada", event_time="2026-03-02T09:59:59Z"), arrival=at(0.25)),
        shard.event_record(analytics_event(user_id="u-bob"), arrival=at(10)),
    ]
    second = [
        shard.event_record(analytics_event(user_id="u-ada"), arrival=at(20)),
        # Arrived in the next minute: counted there, whatever its event time says.
        shard.event_record(analytics_event(user_id="u-cy", event_time="2026-03-02T10:00:30Z"), arrival=at(61.5)),
    ]
    last = [
        shard.event_record(analytics_event(user_id="u-ada", event_type="purchase"), arrival=at(30)),
        shard.event_record(analytics_event(user_id="u-bob"), arrival=at(59.999)),
    ]

    capsys.readouterr()
    state = invoke(aggregator, shard.window(first), lambda_context)["state"]
    state = invoke(aggregator, shard.window(second, state=state), lambda_context)["state"]
    assert items_of(shard) == []
    before = int(time.time())
    response = invoke(aggregator, shard.window(last, state=state, final=True), lambda_context)
    after = int(time.time())

    assert response == {"state": {}, "batchItemFailures": []}
    items = items_of(shard)
    sk = shard.first_sequence(first[0])
    assert [(item["pk"]["S"], item["sk"]["S"]) for item in items] == [
        ("page_view#2026-03-02T10:00", sk),
        ("page_view#2026-03-02T10:01", sk),
        ("purchase#2026-03-02T10:00", sk),
    ]
    assert totals_by_minute(items) == {
        "page_view#2026-03-02T10:00": {"events": 4, "late": 0, "users": 2},  # ada twice, bob twice
        "page_view#2026-03-02T10:01": {"events": 1, "late": 0, "users": 1},
        "purchase#2026-03-02T10:00": {"events": 1, "late": 0, "users": 1},
    }
    for item in items:
        assert set(item) == {"pk", "sk", "events", "late", "users", "expires_at"}
        assert before + AGGREGATE_DAYS * 86_400 <= int(item["expires_at"]["N"]) <= after + AGGREGATE_DAYS * 86_400
    metrics = emitted_totals(capsys.readouterr().out)
    assert (metrics["EventsAggregated"], metrics["AggregatesWritten"], metrics["RecordsNotAggregated"]) == (6, 3, 0)


def test_a_retried_final_invocation_writes_the_same_items_again(aggregator, lambda_context):
    shard = Shard()
    records = [shard.event_record(analytics_event(user_id=f"u-{n % 3}"), arrival=at(n)) for n in range(6)]
    state = invoke(aggregator, shard.window(records[:3]), lambda_context)["state"]
    final = shard.window(records[3:], state=state, final=True)

    invoke(aggregator, final, lambda_context)
    written = items_of(shard)
    invoke(aggregator, json.loads(json.dumps(final)), lambda_context)  # Lambda's retry: the same records, the same state

    again = items_of(shard)
    assert [(item["pk"], item["sk"], item["events"], item["late"], item["users"]) for item in again] == [
        (item["pk"], item["sk"], item["events"], item["late"], item["users"]) for item in written
    ]
    assert totals_by_minute(again) == {"page_view#2026-03-02T10:00": {"events": 6, "late": 0, "users": 3}}


def test_a_window_terminated_early_is_written_and_the_rest_of_the_window_is_a_segment_of_its_own(aggregator, lambda_context, capsys):
    shard = Shard()
    first = [shard.event_record(analytics_event(user_id="u-ada"), arrival=at(1)), shard.event_record(analytics_event(user_id="u-bob"), arrival=at(2))]
    rest = [shard.event_record(analytics_event(user_id="u-cy"), arrival=at(3))]

    capsys.readouterr()
    state = invoke(aggregator, shard.window(first), lambda_context)["state"]
    response = invoke(aggregator, shard.window([], state=state, early=True), lambda_context)
    assert response["state"] == {}
    assert totals_by_minute(items_of(shard)) == {"page_view#2026-03-02T10:00": {"events": 2, "late": 0, "users": 2}}
    assert emitted_totals(capsys.readouterr().out)["AggregatesWritten"] == 1

    invoke(aggregator, shard.window(rest, state=response["state"], final=True), lambda_context)

    items = items_of(shard)
    assert [item["sk"]["S"] for item in items] == [shard.first_sequence(first[0]), shard.first_sequence(rest[0])]
    assert totals_by_minute(items) == {"page_view#2026-03-02T10:00": {"events": 3, "late": 0, "users": 3}}


def test_an_event_that_arrives_more_than_five_minutes_after_its_time_is_late(aggregator, lambda_context, capsys):
    shard = Shard()
    arrival = at(30)
    records = [
        shard.event_record(analytics_event(event_time=text(arrival - timedelta(minutes=5))), arrival=arrival),  # exactly 5 minutes: on time
        shard.event_record(analytics_event(event_time=text(arrival - timedelta(minutes=5, milliseconds=1))), arrival=arrival),
        shard.event_record(analytics_event(event_time=text(arrival - timedelta(hours=26))), arrival=arrival),
        shard.event_record(analytics_event(event_time=text(arrival + timedelta(minutes=10))), arrival=arrival),  # ahead of the stream's clock
        shard.event_record(analytics_event(event_time=text(arrival)), arrival=arrival),
    ]

    capsys.readouterr()
    invoke(aggregator, shard.window(records, final=True), lambda_context)

    assert totals_by_minute(items_of(shard)) == {"page_view#2026-03-02T10:00": {"events": 5, "late": 2, "users": 1}}
    assert emitted_totals(capsys.readouterr().out)["LateEvents"] == 2


def test_lambdas_arrival_time_in_seconds_with_milliseconds_decides_the_minute(aggregator, lambda_context):
    shard = Shard()
    records = [
        shard.event_record(analytics_event(user_id="u-ada"), arrival=1_772_445_659.999),  # 10:00:59.999
        shard.event_record(analytics_event(user_id="u-bob"), arrival=1_772_445_660.0),  # 10:01:00.000
    ]
    invoke(aggregator, shard.window(records, final=True), lambda_context)
    assert sorted(totals_by_minute(items_of(shard))) == ["page_view#2026-03-02T10:00", "page_view#2026-03-02T10:01"]


def test_a_copy_of_an_event_in_one_invocation_is_counted_once(aggregator, lambda_context, capsys):
    shard = Shard()
    event = analytics_event(user_id="u-ada")
    records = [
        shard.event_record(event, arrival=at(1)),
        shard.event_record(analytics_event(user_id="u-bob"), arrival=at(2)),
        shard.event_record(event, arrival=at(3)),
        shard.event_record({**event, "event_type": "purchase"}, arrival=at(4)),  # same id, other content: still a copy
    ]

    capsys.readouterr()
    invoke(aggregator, shard.window(records, final=True), lambda_context)

    assert totals_by_minute(items_of(shard)) == {"page_view#2026-03-02T10:00": {"events": 2, "late": 0, "users": 2}}
    metrics = emitted_totals(capsys.readouterr().out)
    assert (metrics["EventsAggregated"], metrics["DuplicatesSkipped"]) == (2, 2)


def test_copies_in_two_invocations_of_a_window_are_both_counted(aggregator, lambda_context):
    # The documented limit of the promise: the state keeps counts, not event ids.
    shard = Shard()
    event = analytics_event(user_id="u-ada")
    state = invoke(aggregator, shard.window([shard.event_record(event, arrival=at(1))]), lambda_context)["state"]
    invoke(aggregator, shard.window([shard.event_record(event, arrival=at(2))], state=state, final=True), lambda_context)
    assert totals_by_minute(items_of(shard)) == {"page_view#2026-03-02T10:00": {"events": 2, "late": 0, "users": 1}}


def _unreadable(shard: Shard) -> list[dict[str, Any]]:
    return [
        shard.record(raw_data="not base64!"),
        shard.record(b"\xff\xfe\x00garbage"),
        shard.record(b"<event/>"),
        shard.record(b'["page_view"]'),
        shard.record(b""),
        shard.event_record(analytics_event(schema_version=2)),
        shard.event_record({k: v for k, v in analytics_event().items() if k != "user_id"}),
        shard.event_record(analytics_event(event_time="2026-03-02T12:00:00+02:00")),
        shard.event_record(analytics_event(event_type="PageView")),
    ]


def test_records_that_are_not_events_are_skipped_and_counted_never_failed(aggregator, lambda_context, capsys):
    shard = Shard()
    bad = _unreadable(shard)
    good = [shard.event_record(analytics_event(user_id="u-ada"), arrival=at(5)), shard.event_record(analytics_event(user_id="u-bob"), arrival=at(6))]
    records = [bad[0], good[0], *bad[1:], good[1]]

    capsys.readouterr()
    response = invoke(aggregator, shard.window(records, final=True), lambda_context)

    assert response == {"state": {}, "batchItemFailures": []}
    items = items_of(shard)
    # The segment is named after its first aggregated record, not the first record of the batch.
    assert [item["sk"]["S"] for item in items] == [shard.first_sequence(good[0])]
    assert totals_by_minute(items) == {"page_view#2026-03-02T10:00": {"events": 2, "late": 0, "users": 2}}
    metrics = emitted_totals(capsys.readouterr().out)
    assert (metrics["RecordsNotAggregated"], metrics["EventsAggregated"]) == (len(bad), 2)


def test_a_final_invocation_with_nothing_to_count_writes_nothing(aggregator, lambda_context, capsys):
    shard = Shard()
    capsys.readouterr()
    assert invoke(aggregator, shard.window([], final=True), lambda_context) == {"state": {}, "batchItemFailures": []}
    assert invoke(aggregator, shard.window(_unreadable(shard), final=True), lambda_context) == {"state": {}, "batchItemFailures": []}
    assert items_of(shard) == []
    assert emitted_totals(capsys.readouterr().out)["AggregatesWritten"] == 0


def test_an_empty_non_final_invocation_returns_an_empty_count(aggregator, lambda_context):
    shard = Shard()
    state = invoke(aggregator, shard.window([]), lambda_context)["state"]
    assert MinuteCounts.from_state(state).tallies == {}
    invoke(aggregator, shard.window([], state=state, final=True), lambda_context)
    assert items_of(shard) == []


def test_a_window_of_many_types_and_minutes_is_written_in_several_calls(aggregator, lambda_context):
    shard = Shard()
    arrivals = [at(60 * (n // 2)) for n in range(60)]
    records = [shard.event_record(analytics_event(event_type=f"type_{n % 2}", event_time=text(arrivals[n])), arrival=arrivals[n]) for n in range(60)]
    invoke(aggregator, shard.window(records, final=True), lambda_context)
    totals = totals_by_minute(items_of(shard))
    assert len(totals) == 60
    assert all(total == {"events": 1, "late": 0, "users": 1} for total in totals.values())


@pytest.mark.parametrize(
    "state",
    [
        pytest.param({"v": "0", "page_view|2026-03-02T10:00": "1|0|"}, id="an older version"),
        pytest.param({"v": 1}, id="version as a number"),
        pytest.param({"page_view|2026-03-02T10:00": "1|0|"}, id="no version"),
        pytest.param({"counts": {"page_view": 3}}, id="another function's state"),
    ],
)
@NO_METRICS
def test_a_state_the_function_did_not_write_is_refused(aggregator, lambda_context, state):
    shard = Shard()
    with pytest.raises(ValueError, match="window state of version"):
        aggregator.lambda_handler(shard.window([shard.event_record(analytics_event())], state=state, final=True), lambda_context)
    assert items_of(shard) == []


@pytest.mark.parametrize(
    "event",
    [
        pytest.param({"Records": []}, id="no shardId"),
        pytest.param({"shardId": "shardId-000000000000", "window": {}}, id="no Records"),
        pytest.param({"Records": {"0": {}}, "shardId": "shardId-000000000000"}, id="Records not a list"),
        pytest.param([], id="not an object"),
        pytest.param({"records": [], "invocationId": "1"}, id="a Firehose event"),
    ],
)
@NO_METRICS
def test_an_event_that_is_not_a_tumbling_window_invocation_raises(aggregator, lambda_context, event):
    with pytest.raises(ValueError, match="expected a Kinesis tumbling-window event"):
        aggregator.lambda_handler(event, lambda_context)


# --- Writes that fail --------------------------------------------------------------------------------------------------


def _window_of_three_items(shard: Shard) -> tuple[dict[str, Any], dict[str, dict[str, int]]]:
    records = [
        shard.event_record(analytics_event(user_id="u-ada"), arrival=at(1)),
        shard.event_record(analytics_event(user_id="u-bob", event_type="purchase"), arrival=at(2)),
        shard.event_record(analytics_event(user_id="u-cy"), arrival=at(62)),
    ]
    expected = {
        "page_view#2026-03-02T10:00": {"events": 1, "late": 0, "users": 1},
        "page_view#2026-03-02T10:01": {"events": 1, "late": 0, "users": 1},
        "purchase#2026-03-02T10:00": {"events": 1, "late": 0, "users": 1},
    }
    return shard.window(records, final=True), expected


def test_a_write_that_stays_unprocessed_fails_the_invocation_and_its_retry_writes_the_items(aggregator, lambda_context, monkeypatch, quick_retries):
    shard = Shard()
    final, expected = _window_of_three_items(shard)
    calls = []

    def nothing_processed(**kwargs):
        calls.append(kwargs)
        return {"UnprocessedItems": kwargs["RequestItems"], "ResponseMetadata": {"HTTPStatusCode": 200}}

    with monkeypatch.context() as patch:
        patch.setattr(aggregator.dynamodb, "batch_write_item", nothing_processed)
        with pytest.raises(PublishError, match="UnprocessedItems"):
            aggregator.lambda_handler(final, lambda_context)
    assert len(calls) == Retry().max_attempts  # tried, then retried, then given up
    assert len(quick_retries) == Retry().max_attempts - 1
    assert items_of(shard) == []

    invoke(aggregator, final, lambda_context)  # Lambda's retry: the state from before

    assert totals_by_minute(items_of(shard)) == expected


def test_a_write_unprocessed_once_is_retried_within_the_invocation(aggregator, lambda_context, monkeypatch, quick_retries):
    shard = Shard()
    final, expected = _window_of_three_items(shard)
    real = aggregator.dynamodb.batch_write_item
    calls = []

    def first_item_unprocessed_once(**kwargs):
        calls.append(kwargs)
        if len(calls) > 1:
            return real(**kwargs)
        [(table, writes)] = kwargs["RequestItems"].items()
        real(RequestItems={table: writes[1:]})
        return {"UnprocessedItems": {table: writes[:1]}, "ResponseMetadata": {"HTTPStatusCode": 200}}

    monkeypatch.setattr(aggregator.dynamodb, "batch_write_item", first_item_unprocessed_once)
    invoke(aggregator, final, lambda_context)

    assert len(calls) == 2 and len(quick_retries) == 1
    assert totals_by_minute(items_of(shard)) == expected


def test_a_write_refused_outright_fails_the_invocation(aggregator, lambda_context, monkeypatch, quick_retries):
    shard = Shard()
    final, _ = _window_of_three_items(shard)

    def refused(**kwargs):
        raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "not allowed"}, "ResponseMetadata": {"HTTPStatusCode": 400}}, "BatchWriteItem")

    monkeypatch.setattr(aggregator.dynamodb, "batch_write_item", refused)
    with pytest.raises(PublishError, match="AccessDeniedException"):
        aggregator.lambda_handler(final, lambda_context)
    assert quick_retries == []  # not worth a retry


def test_throttling_that_does_not_end_fails_the_invocation(aggregator, lambda_context, monkeypatch, quick_retries):
    shard = Shard()
    final, _ = _window_of_three_items(shard)

    def throttled(**kwargs):
        raise ClientError(
            {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}, "ResponseMetadata": {"HTTPStatusCode": 400}}, "BatchWriteItem"
        )

    monkeypatch.setattr(aggregator.dynamodb, "batch_write_item", throttled)
    with pytest.raises(PublishError, match="ProvisionedThroughputExceededException"):
        aggregator.lambda_handler(final, lambda_context)
    assert len(quick_retries) == Retry().max_attempts - 1


# --- The property: any split of a window into invocations gives a direct count -----------------------------------------

USERS = ("u-ada", "u-bob", "u-cy", "u-dee", "u-eve")
TYPES = ("page_view", "purchase", "reading")
#: The window's records arrive over three minutes (a window is 60 seconds, but the minutes are the stream's, not the window's).
SPAN_MS = 180_000
LATE_MS = 300_000


@st.composite
def window_records(draw) -> list[tuple[str, Any, int]]:
    """(kind, content, arrival in ms after WINDOW_START): events, copies of earlier ones, and records that are not events."""
    records: list[tuple[str, Any, int]] = []
    for _ in range(draw(st.integers(0, 25))):
        arrival_ms = draw(st.integers(0, SPAN_MS - 1))
        kind = draw(st.sampled_from(["event", "event", "event", "copy", "bad"]))
        if kind == "copy" and any(what == "event" for what, _, _ in records):
            original = draw(st.sampled_from([content for what, content, _ in records if what == "event"]))
            records.append(("event", original, arrival_ms))
        elif kind == "bad":
            records.append(("bad", draw(st.sampled_from([b"", b"{}", b"\xff", b"[1]", b'{"schema_version": 2}'])), arrival_ms))
        else:
            age_ms = draw(st.one_of(st.integers(-60_000, 900_000), st.sampled_from([LATE_MS, LATE_MS + 1, LATE_MS - 1])))
            event_time = WINDOW_START + timedelta(milliseconds=arrival_ms - age_ms)
            event = analytics_event(
                event_id=str(draw(st.uuids())), event_type=draw(st.sampled_from(TYPES)), user_id=draw(st.sampled_from(USERS)), event_time=text(event_time)
            )
            records.append(("event", event, arrival_ms))
    return records


def _direct_count(invocations: list[list[tuple[str, Any, int]]]) -> dict[str, dict[str, int]]:
    """Events, late events and distinct users per type and minute of arrival; a copy of an event id counts once per invocation."""
    tallies: dict[str, dict[str, Any]] = defaultdict(lambda: {"events": 0, "late": 0, "users": set()})
    for invocation in invocations:
        seen = set()
        for kind, event, arrival_ms in invocation:
            if kind != "event" or event["event_id"] in seen:
                continue
            seen.add(event["event_id"])
            arrived = WINDOW_START + timedelta(milliseconds=arrival_ms)
            tally = tallies[f"{event['event_type']}#{arrived.strftime('%Y-%m-%dT%H:%M')}"]
            tally["events"] += 1
            tally["late"] += arrived - datetime.fromisoformat(event["event_time"]) > timedelta(milliseconds=LATE_MS)
            tally["users"].add(event["user_id"])
    return {pk: {"events": tally["events"], "late": tally["late"], "users": len(tally["users"])} for pk, tally in tallies.items()}


@PROPERTY
@given(records=window_records(), cuts=st.lists(st.integers(0, 25), max_size=4), empty_final=st.booleans())
def test_property_any_split_into_invocations_gives_the_direct_count(aggregator, lambda_context, records, cuts, empty_final):
    shard = Shard()
    built = [
        shard.event_record(content, arrival=(WINDOW_START.timestamp() * 1000 + arrival_ms) / 1000)
        if kind == "event"
        else shard.record(content, arrival=(WINDOW_START.timestamp() * 1000 + arrival_ms) / 1000)
        for kind, content, arrival_ms in records
    ]
    bounds = [0, *sorted(min(cut, len(records)) for cut in cuts), len(records)]
    invocations = [list(range(start, end)) for start, end in itertools.pairwise(bounds)]
    if empty_final:
        invocations.append([])  # the final invocation may come with no records

    writes = []
    real_write = aggregator.dynamodb.batch_write_item

    def recorded_write(**kwargs):
        writes.append(len(invocations_made))
        return real_write(**kwargs)

    state: dict[str, Any] = {}
    invocations_made: list[int] = []
    with mock.patch.object(aggregator.dynamodb, "batch_write_item", recorded_write):
        for number, indexes in enumerate(invocations):
            invocations_made.append(number)
            final = number == len(invocations) - 1
            response = invoke(aggregator, shard.window([built[i] for i in indexes], state=state, final=final), lambda_context)
            state = json.loads(json.dumps(response["state"]))  # as Lambda keeps it

    assert state == {}
    assert set(writes) <= {len(invocations)}  # only the final invocation writes
    items = items_of(shard)
    assert totals_by_minute(items) == _direct_count([[records[i] for i in indexes] for indexes in invocations])
    assert len({item["sk"]["S"] for item in items}) <= 1  # one segment: the window's
    deletes = [{"DeleteRequest": {"Key": {"pk": item["pk"], "sk": item["sk"]}}} for item in items]
    for start in range(0, len(deletes), 25):  # leave the table as small as it was
        _clients["dynamodb"].batch_write_item(RequestItems={TABLE_NAME: deletes[start : start + 25]})
