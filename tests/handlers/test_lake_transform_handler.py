"""The lake's Firehose transformation function: Kinesis-source buffers in, one answer per record, events or quarantine rows out.

Firehose hands the function a buffer of the events stream's records and needs every ``recordId`` back, once, with
``Ok`` (the row in ``data``, routed with ``otfMetadata``), ``Dropped`` or ``ProcessingFailed``. The function answers
every readable event with its ``events`` row, a second copy of an event id in the buffer with ``Dropped``, and every
other record with a ``quarantine`` row (so nothing is lost for being bad); only a buffer that is not a Firehose
transformation event at all makes it raise (Firehose retries, then writes the buffer to its error prefix).
"""

import base64
import json
import string
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from messaging_runtime import lake
from messaging_runtime.contracts.analytics import ANALYTICS_EVENT, PLATFORMS
from tests.handlers.exercise_01 import emitted_totals

DATABASE = "capstone_analytics_lake"
REGION, ACCOUNT_ID = "us-east-1", "123456789012"
STREAM_ARN = f"arn:aws:kinesis:{REGION}:{ACCOUNT_ID}:stream/capstone-analytics-events"
SHARD = "shardId-000000000002"
EVENT_COLUMN_NAMES = [name for name, _, _ in lake.EVENT_COLUMNS]
QUARANTINE_COLUMN_NAMES = [name for name, _, _ in lake.QUARANTINE_COLUMNS]
#: Put in the payloads of bad records: a reason must never repeat it.
SECRET = "SECRET-7f3a"
#: 2026-03-02T00:00:03.250Z: the stream received the records just after midnight.
ARRIVAL_MS = 1_772_409_603_250
ARRIVED = datetime(2026, 3, 2, 0, 0, 3, 250_000, tzinfo=UTC)

#: An invocation that raises before adding a metric flushes none: Powertools warns, as it should.
NO_METRICS = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")
PROPERTY = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def transform(handler_env, load_handler):
    handler_env.setenv("LAKE_DATABASE", DATABASE)
    handler_env.setenv("POWERTOOLS_SERVICE_NAME", "capstone-analytics")
    handler_env.setenv("POWERTOOLS_METRICS_NAMESPACE", "CapstoneAnalytics")
    return load_handler("lake_transform")


# --- Building the buffers Firehose passes --------------------------------------------------------------------------


class Buffer:
    """Firehose transformation events of a Kinesis data stream source, with realistic record ids and sequence numbers."""

    def __init__(self) -> None:
        self._sequence = 49_671_234_567_890_123_456_789_012_345_678_901_234_567_890_123_456

    def record(self, data: bytes | None = None, *, raw_data: Any = ..., arrival_ms: Any = ARRIVAL_MS, partition_key: str = "u-ada") -> dict[str, Any]:
        """One record; ``data`` is base64-encoded, ``raw_data`` goes in as it is (``None``: no data field)."""
        self._sequence += 1
        sequence = str(self._sequence)
        record = {
            # Firehose's recordId for a Kinesis source: the sequence number, the subsequence number, more digits.
            "recordId": f"{sequence}000000000000000000000000{len(sequence)}",
            "approximateArrivalTimestamp": arrival_ms,
            "data": base64.b64encode(data or b"").decode() if raw_data is ... else raw_data,
            "kinesisRecordMetadata": {
                "shardId": SHARD,
                "partitionKey": partition_key,
                "sequenceNumber": sequence,
                "subsequenceNumber": 0,
                "approximateArrivalTimestamp": arrival_ms,
            },
        }
        if raw_data is None:
            del record["data"]
        return record

    def event_record(self, event: dict[str, Any], **options: Any) -> dict[str, Any]:
        options.setdefault("partition_key", str(event.get("user_id", "u-none")))
        return self.record(json.dumps(event).encode(), **options)

    @staticmethod
    def event(records: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "invocationId": str(uuid.uuid4()),
            "deliveryStreamArn": f"arn:aws:firehose:{REGION}:{ACCOUNT_ID}:deliverystream/capstone-analytics-lake",
            "sourceKinesisStreamArn": STREAM_ARN,
            "region": REGION,
            "records": records,
        }


@pytest.fixture(scope="module")
def buffer() -> Buffer:
    return Buffer()


def analytics_event(**overrides: Any) -> dict[str, Any]:
    event = {
        "schema_version": 1,
        "event_id": str(uuid.uuid4()),
        "event_type": "page_view",
        "event_time": "2026-03-01T23:59:58.5Z",
        "user_id": "u-ada",
        "platform": "web",
    }
    event.update(overrides)
    return {name: value for name, value in event.items() if value is not None}


def without(event: dict[str, Any], name: str) -> dict[str, Any]:
    return {key: value for key, value in event.items() if key != name}


def row_of(answer: dict[str, Any]) -> dict[str, Any]:
    return json.loads(base64.b64decode(answer["data"]))


def table_of(answer: dict[str, Any]) -> str:
    return answer["metadata"]["otfMetadata"]["destinationTableName"]


def run(transform, records: list[dict[str, Any]], lambda_context) -> list[dict[str, Any]]:
    response = transform.lambda_handler(Buffer.event(records), lambda_context)
    assert set(response) == {"records"}
    answers = response["records"]
    assert [answer["recordId"] for answer in answers] == [record["recordId"] for record in records]
    return answers


# --- Events ----------------------------------------------------------------------------------------------------------


def test_an_event_becomes_its_events_row_routed_to_the_events_table(transform, buffer, lambda_context):
    event = analytics_event(
        event_type="add_to_cart",
        event_time="2026-03-01T23:59:58.5+00:00",  # the day before it arrived, in UTC
        user_id="u-ada_Lovelace-1815",
        platform="ios",
        session_id="s-42",
        page="/products/7?ref=home",
        device_id="greenhouse-7:probe-2",
        properties={"sku": "SKU-9", "quantity": 2.5, "price": 12.25},
    )
    record = buffer.event_record(event)

    [answer] = run(transform, [record], lambda_context)

    assert answer["result"] == "Ok"
    assert answer["metadata"] == {"otfMetadata": {"destinationDatabaseName": DATABASE, "destinationTableName": "events", "operation": "insert"}}
    row = row_of(answer)
    assert list(row) == EVENT_COLUMN_NAMES
    assert row == {
        "event_id": event["event_id"],
        "event_type": "add_to_cart",
        "event_date": "2026-03-01",
        "event_time": "2026-03-01T23:59:58.500000Z",
        "arrival_time": "2026-03-02T00:00:03.250000Z",
        "user_id": "u-ada_Lovelace-1815",
        "platform": "ios",
        "session_id": "s-42",
        "page": "/products/7?ref=home",
        "device_id": "greenhouse-7:probe-2",
        "properties": '{"price":12.25,"quantity":2.5,"sku":"SKU-9"}',
        "schema_version": 1,
    }
    assert row["arrival_time"] == lake.timestamp_text(ARRIVED)


def test_optional_fields_left_out_are_nulls_and_no_properties_is_an_empty_object(transform, buffer, lambda_context):
    event = analytics_event(platform="server", event_time="2026-03-02T00:00:01Z")

    [answer] = run(transform, [buffer.event_record(event)], lambda_context)

    row = row_of(answer)
    assert (row["session_id"], row["page"], row["device_id"]) == (None, None, None)
    assert row["properties"] == "{}"
    assert row["event_date"] == "2026-03-02"


def test_a_field_the_contract_does_not_know_is_ignored(transform, buffer, lambda_context):
    event = analytics_event(campaign="spring-sale")

    [answer] = run(transform, [buffer.event_record(event)], lambda_context)

    assert table_of(answer) == "events"
    assert list(row_of(answer)) == EVENT_COLUMN_NAMES


def test_properties_are_sorted_compact_json_with_their_json_types(transform, buffer, lambda_context):
    event = analytics_event(properties={"zeta": "last", "alpha": True, "mid": 3, "beta": False, "ratio": 0.5})

    [answer] = run(transform, [buffer.event_record(event)], lambda_context)

    assert row_of(answer)["properties"] == '{"alpha":true,"beta":false,"mid":3.0,"ratio":0.5,"zeta":"last"}'


def test_numbers_in_properties_are_written_as_json_numbers(transform, buffer, lambda_context):
    # Number is written as a float: an integer comes back as 3.0 (still 3 for json_extract and DuckDB).
    event = analytics_event(properties={"count": 3, "reading": -21.75, "big": 12345678901234})

    [answer] = run(transform, [buffer.event_record(event)], lambda_context)

    text = row_of(answer)["properties"]
    assert text == '{"big":12345678901234.0,"count":3.0,"reading":-21.75}'
    assert json.loads(text) == {"big": 12345678901234, "count": 3, "reading": -21.75}


def test_every_record_of_a_buffer_is_answered_once_in_order(transform, buffer, lambda_context, capsys):
    records = [buffer.event_record(analytics_event(user_id=f"u-{n}")) for n in range(5)]
    records.insert(2, buffer.record(b"not an event"))

    capsys.readouterr()
    answers = run(transform, records, lambda_context)

    assert [answer["result"] for answer in answers] == ["Ok"] * 6
    assert [table_of(answer) for answer in answers] == ["events", "events", "quarantine", "events", "events", "events"]
    totals = emitted_totals(capsys.readouterr().out)
    assert (totals["RowsWritten"], totals["RecordsQuarantined"], totals["DuplicatesDropped"]) == (5, 1, 0)


def test_a_second_copy_of_an_event_in_the_buffer_is_dropped_and_counted(transform, buffer, lambda_context, capsys):
    event = analytics_event()
    first = buffer.event_record(event)
    other = buffer.event_record(analytics_event())
    retry = buffer.event_record(event)  # the producer's retry: the same event again
    # Same event id, different content: still the same event as far as the lake is concerned.
    third = buffer.event_record({**event, "event_type": "purchase"})

    capsys.readouterr()
    answers = run(transform, [first, other, retry, third], lambda_context)

    assert [answer["result"] for answer in answers] == ["Ok", "Ok", "Dropped", "Dropped"]
    assert row_of(answers[0])["event_id"] == event["event_id"]
    assert row_of(answers[0])["event_type"] == "page_view"
    totals = emitted_totals(capsys.readouterr().out)
    assert (totals["RowsWritten"], totals["DuplicatesDropped"], totals["RecordsQuarantined"]) == (2, 2, 0)


def test_copies_in_two_buffers_are_both_written(transform, buffer, lambda_context):
    # The promise is per buffer: the named queries keep the first copy of copies further apart.
    event = analytics_event()
    [one] = run(transform, [buffer.event_record(event)], lambda_context)
    [two] = run(transform, [buffer.event_record(event)], lambda_context)
    assert (one["result"], two["result"]) == ("Ok", "Ok")
    assert row_of(one)["event_id"] == row_of(two)["event_id"] == event["event_id"]


def test_event_age_is_the_oldest_events_age_when_it_arrived(transform, buffer, lambda_context, capsys):
    records = [
        buffer.event_record(analytics_event(event_time="2026-03-02T00:00:00Z")),  # 3.25 s old
        buffer.event_record(analytics_event(event_time="2026-03-01T23:50:03.25Z")),  # 10 minutes old: late
        buffer.event_record(analytics_event(event_time="2026-03-02T00:05:00Z")),  # ahead of the stream's clock
    ]
    capsys.readouterr()
    run(transform, records, lambda_context)
    assert emitted_totals(capsys.readouterr().out)["EventAge"] == 600_000


def test_an_arrival_time_that_is_not_a_number_is_the_time_of_the_transformation(transform, buffer, lambda_context):
    before = datetime.now(UTC)
    [answer] = run(transform, [buffer.event_record(analytics_event(), arrival_ms="yesterday")], lambda_context)
    after = datetime.now(UTC)
    arrival = datetime.fromisoformat(row_of(answer)["arrival_time"])
    assert before - timedelta(microseconds=1) <= arrival <= after


# --- Records that are not events -------------------------------------------------------------------------------------

GOOD_UTF16 = json.dumps(analytics_event(user_id="u-utf16")).encode("utf-16")
HUGE = json.dumps({"user_id": "u-huge", "note": SECRET * 10_000}).encode()


def _bad_records() -> dict[str, tuple[dict[str, Any], str, str, str | None]]:
    """kind: (record, a piece of the reason, the payload kept, the user_id found)."""
    buffer = Buffer()

    def json_record(document: Any) -> tuple[dict[str, Any], str]:
        text = json.dumps(document)
        return buffer.record(text.encode()), text

    cases: dict[str, tuple[dict[str, Any], str, str, str | None]] = {}

    def add(kind: str, document: Any, reason: str, user_id: str | None) -> None:
        record, text = json_record(document)
        cases[kind] = (record, reason, text, user_id)

    cases["data not base64"] = (buffer.record(raw_data=f"{SECRET}!!"), "the record's data is not base64", f"{SECRET}!!", None)
    cases["data not a string"] = (buffer.record(raw_data=12345), "the record's data is not base64", "12345", None)
    cases["no data"] = (buffer.record(raw_data=None), "event: Invalid JSON: EOF while parsing a value", "", None)
    cases["data not UTF-8"] = (
        buffer.record(b"\xff\xfe\x00" + SECRET.encode()),
        "event: Invalid JSON",
        "base64:" + base64.b64encode(b"\xff\xfe\x00" + SECRET.encode()).decode(),
        None,
    )
    cases["JSON in UTF-16"] = (buffer.record(GOOD_UTF16), "event: Invalid JSON", "base64:" + base64.b64encode(GOOD_UTF16).decode(), "u-utf16")
    cases["not JSON"] = (
        buffer.record(f"<event user_id='u-ada' note='{SECRET}'/>".encode()),
        "event: Invalid JSON",
        f"<event user_id='u-ada' note='{SECRET}'/>",
        None,
    )
    add("JSON array", [analytics_event(note=SECRET)], "event: Input should be an object", None)
    add("JSON null", None, "event: Input should be an object", None)
    add("JSON text", SECRET, "event: Input should be an object", None)
    add("version as text", analytics_event(schema_version="1", note=SECRET), "schema_version: Value error, must be a whole number", "u-ada")
    add("version as true", analytics_event(schema_version=True, note=SECRET), "schema_version: Value error, must be a whole number", "u-ada")
    add("unknown version", analytics_event(schema_version=2, note=SECRET), "schema_version: Input should be 1", "u-ada")
    add("no version", without(analytics_event(note=SECRET), "schema_version"), "schema_version: Field required", "u-ada")
    add("no user_id", without(analytics_event(note=SECRET), "user_id"), "user_id: Field required", None)
    add("user_id not a string", analytics_event(user_id=42, note=SECRET), "user_id: Input should be a valid string", None)
    add("user_id an email", analytics_event(user_id=f"{SECRET}@example.com"), "user_id: String should match pattern", f"{SECRET}@example.com")
    add("event_id not a UUID", analytics_event(event_id=f"{SECRET}-id"), "event_id: Input should be a valid UUID", "u-ada")
    add("event_type in capitals", analytics_event(event_type=f"Page{SECRET}"), "event_type: String should match pattern", "u-ada")
    add("event_time a number", analytics_event(event_time=1_772_409_603), "event_time: Value error, must be an ISO 8601 date-time string", "u-ada")
    add("event_time without zone", analytics_event(event_time="2026-03-01T23:59:58"), "event_time: Input should have timezone info", "u-ada")
    add("event_time not UTC", analytics_event(event_time="2026-03-02T01:59:58+02:00"), "event_time: Value error, must be a UTC time", "u-ada")
    add("unknown platform", analytics_event(platform=SECRET), "platform: Input should be 'web', 'ios', 'android', 'device' or 'server'", "u-ada")
    add("page not a path", analytics_event(page=f"https://{SECRET}"), "page: String should match pattern", "u-ada")
    add("nested property", analytics_event(properties={"cart": {SECRET: 1}}), "properties.cart", "u-ada")
    # A property's name is part of the path the reason gives (pydantic's loc), so the case uses a name that is no secret.
    add("property name with a space", analytics_event(properties={"bad name": SECRET}), "properties.bad name.[key]: String should match pattern", "u-ada")
    add("too many properties", analytics_event(properties={f"p{n}": n for n in range(51)}), "properties: Dictionary should have at most 50 items", "u-ada")
    huge_text = HUGE.decode()
    cases["huge payload"] = (
        buffer.record(HUGE),
        f"(payload of {len(huge_text)} characters cut to {lake.MAX_QUARANTINED_PAYLOAD})",
        huge_text[: lake.MAX_QUARANTINED_PAYLOAD],
        "u-huge",
    )
    return cases


BAD = _bad_records()


@pytest.mark.parametrize("kind", sorted(BAD))
def test_a_record_that_is_not_an_event_is_quarantined_with_its_reason_and_payload(transform, buffer, lambda_context, capsys, kind):
    bad, reason, payload, user_id = BAD[kind]
    bad = {**bad, "recordId": f"{bad['recordId']}-{uuid.uuid4().hex[:6]}"}  # the cases are shared: a fresh record id each run
    good = buffer.event_record(analytics_event())

    capsys.readouterr()
    answers = run(transform, [good, bad], lambda_context)

    assert answers[0]["result"] == "Ok" and table_of(answers[0]) == "events"
    answer = answers[1]
    assert answer["result"] == "Ok"
    assert answer["metadata"] == {"otfMetadata": {"destinationDatabaseName": DATABASE, "destinationTableName": "quarantine", "operation": "insert"}}
    row = row_of(answer)
    assert list(row) == QUARANTINE_COLUMN_NAMES
    metadata = bad["kinesisRecordMetadata"]
    assert row["record_id"] == f"{metadata['shardId']}/{metadata['sequenceNumber']}"
    assert row["quarantine_date"] == "2026-03-02"
    assert row["arrival_time"] == lake.timestamp_text(ARRIVED)
    assert reason in row["reason"]
    assert row["payload"] == payload
    assert row["user_id"] == user_id
    if kind != "huge payload":
        assert SECRET not in row["reason"]  # the reason never repeats what the payload says
    totals = emitted_totals(capsys.readouterr().out)
    assert (totals["RowsWritten"], totals["RecordsQuarantined"]) == (1, 1)


def test_a_validation_reason_names_every_problem_and_no_value(transform, buffer, lambda_context):
    document = analytics_event(platform=f"{SECRET}-platform", event_time=f"{SECRET}-time", page=f"{SECRET}-page")
    [answer] = run(transform, [buffer.record(json.dumps(document).encode())], lambda_context)
    reason = row_of(answer)["reason"]
    assert table_of(answer) == "quarantine"
    assert [part.split(":")[0] for part in reason.split("; ")] == ["event_time", "platform", "page"]
    assert SECRET not in reason


def test_a_payload_of_exactly_the_limit_is_kept_whole(transform, buffer, lambda_context):
    text = json.dumps({"user_id": "u-edge", "note": ""})
    text = text[:-2] + "x" * (lake.MAX_QUARANTINED_PAYLOAD - len(text)) + '"}'
    assert len(text) == lake.MAX_QUARANTINED_PAYLOAD
    [answer] = run(transform, [buffer.record(text.encode())], lambda_context)
    row = row_of(answer)
    assert row["payload"] == text
    assert "cut to" not in row["reason"]
    assert row["user_id"] == "u-edge"


def test_a_long_non_utf8_payload_is_cut_after_base64(transform, buffer, lambda_context):
    data = b"\xff" * 60_000  # 80,000 characters of base64
    [answer] = run(transform, [buffer.record(data)], lambda_context)
    row = row_of(answer)
    encoded = "base64:" + base64.b64encode(data).decode()
    assert row["payload"] == encoded[: lake.MAX_QUARANTINED_PAYLOAD]
    assert f"(payload of {len(encoded)} characters cut to {lake.MAX_QUARANTINED_PAYLOAD})" in row["reason"]


@NO_METRICS
def test_json_nested_too_deeply_is_quarantined(transform, buffer, lambda_context):
    deep = b'{"a":' * 5_000 + b"1" + b"}" * 5_000
    [answer] = run(transform, [buffer.record(deep)], lambda_context)
    assert table_of(answer) == "quarantine"
    assert "recursion limit" in row_of(answer)["reason"]


# --- Buffers that are not transformation events -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "event",
    [
        pytest.param({}, id="no records"),
        pytest.param({"records": None}, id="records null"),
        pytest.param({"records": {"0": {"recordId": "1"}}}, id="records not a list"),
        pytest.param({"records": [{"data": "e30="}]}, id="a record without recordId"),
        pytest.param({"records": [{"recordId": 1, "data": "e30="}]}, id="recordId not a string"),
        pytest.param({"records": ["e30="]}, id="a record not an object"),
        pytest.param([], id="not an object"),
        pytest.param({"Records": [{"kinesis": {"data": "e30="}}]}, id="a Lambda Kinesis event"),
    ],
)
@NO_METRICS
def test_an_event_that_is_not_a_firehose_transformation_raises(transform, lambda_context, event):
    with pytest.raises(ValueError, match="expected a Firehose transformation event"):
        transform.lambda_handler(event, lambda_context)


def test_an_empty_buffer_is_answered_with_no_records(transform, lambda_context):
    assert transform.lambda_handler(Buffer.event([]), lambda_context) == {"records": []}


# --- The property: nothing lost, nothing raised, every row readable ----------------------------------------------------

_TEXT = st.characters(codec="utf-8", exclude_categories=("Cs",))
_UTC_TIMES = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))
_SAFE = string.ascii_letters + string.digits
_PROPERTY_VALUES = st.one_of(
    st.text(_TEXT, max_size=40),
    st.integers(-(2**53), 2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
)


def valid_events() -> st.SearchStrategy[dict[str, Any]]:
    """Events the contract accepts, every optional field present or not."""
    optional = {
        "session_id": st.text(_TEXT, min_size=1, max_size=128),
        "page": st.text(_SAFE + "/-_.?=&%", max_size=60).map(lambda path: "/" + path),
        "device_id": st.text(_SAFE + ":_-", min_size=1, max_size=128),
        "properties": st.dictionaries(st.text(_SAFE + "_", min_size=1, max_size=64), _PROPERTY_VALUES, max_size=6),
    }
    return st.fixed_dictionaries(
        {
            "schema_version": st.just(1),
            "event_id": st.uuids().map(str),
            "event_type": st.from_regex(r"[a-z][a-z0-9_]{0,63}", fullmatch=True),
            "event_time": st.builds(lambda moment, z: moment.isoformat().replace("+00:00", "Z" if z else "+00:00"), _UTC_TIMES, st.booleans()),
            "user_id": st.text(_SAFE + "_-", min_size=1, max_size=64).map(lambda suffix: f"u-{suffix}"),
            "platform": st.sampled_from(PLATFORMS),
        },
        optional=optional,
    )


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(_TEXT, max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(_TEXT, max_size=10), children, max_size=4),
    max_leaves=12,
)


@st.composite
def broken_events(draw) -> dict[str, Any]:
    """A valid event with one field removed or given any JSON value (which may leave it valid)."""
    event = dict(draw(valid_events()))
    name = draw(st.sampled_from(sorted({*event, "user_id", "schema_version"})))
    if draw(st.booleans()):
        event.pop(name, None)
    else:
        event[name] = draw(_JSON)
    return event


@st.composite
def buffers(draw) -> list[tuple[str, Any]]:
    """(kind, content) per record: an event (``json``), a copy of an earlier one, any bytes, any JSON, data that is not base64."""
    contents: list[tuple[str, Any]] = []
    for _ in range(draw(st.integers(0, 12))):
        kind = draw(st.sampled_from(["event", "event", "copy", "broken", "bytes", "json", "raw"]))
        if kind == "copy":
            earlier = [content for what, content in contents if what == "event"]
            if not earlier:
                continue
            original = draw(st.sampled_from(earlier))
            contents.append(("event", draw(st.sampled_from([original, {**original, "event_type": "copy_with_other_content"}]))))
        elif kind == "event":
            contents.append(("event", draw(valid_events())))
        elif kind == "broken":
            contents.append(("event", draw(broken_events())))
        elif kind == "bytes":
            contents.append(("bytes", draw(st.binary(max_size=120))))
        elif kind == "json":
            contents.append(("bytes", json.dumps(draw(_JSON)).encode()))
        else:
            contents.append(("raw", draw(st.one_of(st.text(_TEXT, max_size=30), st.none(), st.integers()))))
    return contents


def _as_record(buffer: Buffer, kind: str, content: Any, arrival_ms: int) -> dict[str, Any]:
    if kind == "event":
        return buffer.record(json.dumps(content).encode(), arrival_ms=arrival_ms)
    if kind == "bytes":
        return buffer.record(content, arrival_ms=arrival_ms)
    return buffer.record(raw_data=content, arrival_ms=arrival_ms)


def _expected(record: dict[str, Any]) -> tuple[str, Any]:
    """What the contract makes of a record: ("event", event) or ("bad", None)."""
    try:
        data = base64.b64decode(record.get("data") or "", validate=True)
    except (ValueError, TypeError):
        return "bad", None
    try:
        return "event", ANALYTICS_EVENT.parse(data)
    except ValueError:
        return "bad", None


def _row_as_event(row: dict[str, Any]) -> Any:
    document = {name: row[name] for name in ("schema_version", "event_id", "event_type", "event_time", "user_id", "platform")}
    document.update({name: row[name] for name in ("session_id", "page", "device_id") if row[name] is not None})
    document["properties"] = json.loads(row["properties"])
    return ANALYTICS_EVENT.parse(document)


@PROPERTY
@given(contents=buffers(), arrival_ms=st.integers(946_684_800_000, 4_102_444_800_000))
def test_property_every_record_is_answered_and_every_row_is_readable(transform, lambda_context, capsys, contents, arrival_ms):
    buffer = Buffer()
    records = [_as_record(buffer, kind, content, arrival_ms) for kind, content in contents]
    arrived = datetime.fromtimestamp(arrival_ms / 1000, UTC)

    capsys.readouterr()
    answers = run(transform, records, lambda_context)  # never raises: nothing in a record's content fails the buffer

    assert len(answers) == len(records)
    written: set[str] = set()
    counts = Counter()
    for record, answer in zip(records, answers, strict=True):
        assert answer["result"] in ("Ok", "Dropped")
        expected, event = _expected(record)
        if answer["result"] == "Dropped":
            # Dropped only as a later copy of an event written from this buffer.
            assert expected == "event" and str(event.event_id) in written
            counts["DuplicatesDropped"] += 1
            continue
        assert answer["metadata"]["otfMetadata"]["destinationDatabaseName"] == DATABASE
        row = row_of(answer)
        if table_of(answer) == "events":
            assert expected == "event" and str(event.event_id) not in written
            assert list(row) == EVENT_COLUMN_NAMES
            assert _row_as_event(row) == event  # the row reads back as the event it came from
            assert row["event_date"] == event.event_time.astimezone(UTC).date().isoformat()
            assert row["event_time"] == lake.timestamp_text(event.event_time)
            assert row["arrival_time"] == lake.timestamp_text(arrived)
            written.add(row["event_id"])
            counts["RowsWritten"] += 1
        else:
            assert table_of(answer) == "quarantine"
            assert expected == "bad"
            assert list(row) == QUARANTINE_COLUMN_NAMES
            assert row["reason"].strip()
            assert len(row["payload"]) <= lake.MAX_QUARANTINED_PAYLOAD
            assert row["arrival_time"] == lake.timestamp_text(arrived)
            counts["RecordsQuarantined"] += 1
    totals = emitted_totals(capsys.readouterr().out)
    for name in ("RowsWritten", "RecordsQuarantined", "DuplicatesDropped"):
        assert totals[name] == counts[name], name
