"""CapstoneAnalytics' named queries, run: rows made by the real Firehose transformation, in a local lake, each answer checked.

The data set is written out below by hand: seven users and a device over three days (and
older days at the windows' edges), sessions, a funnel that people leave at each step (and steps done
in the wrong order), duplicates of an event id in buffers hours apart, events
that arrive late (and one exactly ``LATE_AFTER`` late, which is not), records
that are not events. It goes through ``transform`` buffer by buffer, and the
answers into ``LocalLake`` (Parquet, DuckDB), as Firehose would write them to
the Iceberg tables. Each query's expected answer is worked out from the table
of events by hand, in the comments.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import uuid
from datetime import UTC, datetime, timedelta

import pyarrow.parquet as pq
import pytest
import sqlglot
from sqlglot import exp

from messaging_runtime import lake
from stacks import analytics_queries as aq
from stacks._paths import lambda_code
from tests.lake_duckdb import READ, LocalLake, athena_to_duckdb

DATABASE = "capstone_analytics_test"
#: The time the queries run at: 2026-12-03 12:00 UTC (today is 2026-12-03; the last hour began at 11:00).
NOW = datetime(2026, 12, 3, 12, tzinfo=UTC)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def event_id(key: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"capstone-analytics-test/{key}"))


# The events: key, type, user, session, page, event time, arrival time. Times are UTC.
EVENTS = {
    # Out of every window (more than 30 days before NOW).
    "old": ("page_view", "u-ann", None, "/home", "2026-10-01T10:00:00Z", "2026-10-01T10:00:01Z"),
    # Gus, at the edges of the windows: the 30 days are 2026-11-04 to today, the 7 days 2026-11-27 to today.
    "out-30": ("page_view", "u-gus", None, "/home", "2026-11-03T23:59:59.999Z", "2026-11-04T00:00:01Z"),
    "edge-30": ("page_view", "u-gus", None, "/home", "2026-11-04T00:00:00Z", "2026-11-04T00:00:01Z"),
    "out-7": ("page_view", "u-gus", None, "/docs/1", "2026-11-26T23:59:59.999Z", "2026-11-27T00:00:01Z"),
    "edge-7": ("page_view", "u-gus", None, "/docs/1", "2026-11-27T00:00:00Z", "2026-11-27T00:00:01Z"),
    # 2026-11-25: in the 30-day reports, not in the 7-day ones. Ann's session s-ann-0: 9 views of /old-page, 10:00 to 10:08.
    **{f"ann0-{i}": ("page_view", "u-ann", "s-ann-0", "/old-page", f"2026-11-25T10:0{i}:00Z", f"2026-11-25T10:0{i}:01Z") for i in range(9)},
    # 2026-12-01
    "e01": ("page_view", "u-ann", "s-ann-1", "/home", "2026-12-01T10:00:00Z", "2026-12-01T10:00:01Z"),
    "e02": ("add_to_cart", "u-ann", "s-ann-1", "/product/1", "2026-12-01T10:05:00Z", "2026-12-01T10:05:00.500Z"),
    "e03": ("purchase", "u-ann", "s-ann-1", "/checkout", "2026-12-01T10:10:00Z", "2026-12-01T10:10:02Z"),
    "e04": ("page_view", "u-bob", "s-bob-1", "/home", "2026-12-01T11:00:00Z", "2026-12-01T11:00:00.250Z"),
    "e05": ("add_to_cart", "u-bob", "s-bob-1", "/product/2", "2026-12-01T11:02:00Z", "2026-12-01T11:09:00Z"),  # late: 7 minutes
    "e06": ("add_to_cart", "u-cat", "s-cat-1", "/product/1", "2026-12-01T09:00:00Z", "2026-12-01T09:00:01Z"),  # cart before view
    "e07": ("page_view", "u-cat", "s-cat-1", "/product/1", "2026-12-01T09:30:00Z", "2026-12-01T09:30:01Z"),
    "e08": ("purchase", "u-cat", "s-cat-1", "/checkout", "2026-12-01T09:40:00Z", "2026-12-01T09:40:01Z"),
    # Microseconds: Athena reads 12:00:00.000400 as 12:00:00.000 (to the millisecond), so s-dan-1 lasts 600 s, not 599.999.
    "e09": ("page_view", "u-dan", "s-dan-1", "/home", "2026-12-01T12:00:00.000400Z", "2026-12-01T12:00:00.100Z"),
    "e10": ("purchase", "u-dan", "s-dan-1", "/checkout", "2026-12-01T12:05:00Z", "2026-12-01T12:10:00.001Z"),  # late: 5 min + 1 ms
    "e11": ("add_to_cart", "u-dan", "s-dan-1", "/product/3", "2026-12-01T12:10:00Z", "2026-12-01T12:10:00.100Z"),  # after the purchase
    "e12": ("page_view", "u-eve", "s-eve-1", "/product/2", "2026-12-01T23:59:00Z", "2026-12-01T23:59:00.500Z"),
    "e13": ("reading", "u-dev", None, None, "2026-12-01T12:00:00Z", "2026-12-01T12:00:00.200Z"),
    "e14": ("page_view", "u-bob", "s-bob-1", "/pricing", "2026-12-01T11:01:00Z", "2026-12-01T11:06:00Z"),  # exactly 5 min: not late
    # 2026-12-02
    "e15": ("add_to_cart", "u-eve", "s-eve-1", "/product/2", "2026-12-02T00:01:00Z", "2026-12-02T00:01:00.300Z"),  # the next day
    "e16": ("page_view", "u-ann", "s-ann-2", "/home", "2026-12-02T08:00:00Z", "2026-12-02T08:00:00.400Z"),
    "e17": ("add_to_cart", "u-ann", "s-ann-2", "/product/4", "2026-12-02T08:01:00Z", "2026-12-02T08:01:00.400Z"),
    "e18": ("purchase", "u-ann", "s-ann-2", "/checkout", "2026-12-02T08:03:00Z", "2026-12-02T08:03:00.400Z"),
    "e19": ("page_view", "u-bob", "s-bob-2", "/home", "2026-12-02T09:00:00Z", "2026-12-02T09:00:01Z"),
    "e20": ("purchase", "u-bob", "s-bob-2", "/checkout", "2026-12-02T09:20:00Z", "2026-12-02T09:20:01Z"),  # before the cart
    "e21": ("add_to_cart", "u-bob", "s-bob-2", "/product/2", "2026-12-02T09:30:00Z", "2026-12-02T09:30:01Z"),
    "e22": ("purchase", "u-bob", "s-bob-2", "/checkout", "2026-12-02T10:00:00Z", "2026-12-02T10:20:00Z"),  # late: 20 minutes
    "e23": ("page_view", "u-cat", None, "/home", "2026-12-02T14:00:00Z", "2026-12-02T14:00:00.100Z"),  # no session
    # Fay reads 7 pages of docs, one a minute from 15:00 (s-fay-1: 360 s).
    **{f"fay-{i}": ("page_view", "u-fay", "s-fay-1", f"/docs/{i + 1}", f"2026-12-02T15:0{i}:00Z", f"2026-12-02T15:0{i}:00.100Z") for i in range(7)},
    # 2026-12-03 (today)
    "cat2-view": ("page_view", "u-cat", "s-cat-2", "/home", "2026-12-03T08:00:00Z", "2026-12-03T08:00:00.200Z"),
    "cat2-cart": ("add_to_cart", "u-cat", "s-cat-2", "/product/6", "2026-12-03T08:00:30Z", "2026-12-03T08:00:30.200Z"),
    "e24": ("page_view", "u-dan", "s-dan-2", "/home", "2026-12-03T11:10:00Z", "2026-12-03T11:10:01Z"),  # delay 1 s
    "e25": ("page_view", "u-dan", "s-dan-2", "/product/5", "2026-12-03T11:20:00Z", "2026-12-03T11:20:02Z"),  # delay 2 s
    "e26": ("page_view", "u-ann", "s-ann-3", "/home", "2026-12-03T11:30:00Z", "2026-12-03T11:36:40Z"),  # delay 400 s: late
    "e27": ("add_to_cart", "u-dan", "s-dan-2", "/product/5", "2026-12-03T11:40:00Z", "2026-12-03T11:40:00.500Z"),  # delay 0.5 s
    "e28": ("purchase", "u-ann", "s-ann-3", "/checkout", "2026-12-03T10:00:00Z", "2026-12-03T10:00:03Z"),  # before the last hour
    "e29": ("reading", "u-dev", None, None, "2026-12-03T11:59:00Z", "2026-12-03T11:59:30Z"),  # delay 30 s
}
#: Second copies of an event (a producer's retry), each in a later buffer than the first: key, arrival time.
COPIES = {
    "e01": "2026-12-01T11:00:00Z",  # an hour later (late, if it counted)
    "e18": "2026-12-02T20:00:00Z",  # 12 hours later
    "e25": "2026-12-03T11:50:00Z",  # in the last hour: the latest page_view arrival and a 30-minute delay, if it counted
}


def event_document(key: str) -> dict:
    event_type, user, session, page, when, _ = EVENTS[key]
    document = {"schema_version": 1, "event_id": event_id(key), "event_type": event_type, "event_time": when, "user_id": user}
    if event_type == "reading":
        return {**document, "platform": "device", "device_id": "sensor-1", "properties": {"temperature": 21.5}}
    return {**document, "platform": "web", "session_id": session, "page": page, "properties": {"campaign": "winter", "items": 1}}


_sequence = iter(range(1000, 100_000))


def record(data: bytes | dict | str, arrived: str, *, sequence: int | None = None) -> dict:
    """A Firehose record from the events stream: ``data`` (an event, bytes, or text put as the data field itself)."""
    sequence = next(_sequence) if sequence is None else sequence
    milliseconds = (at(arrived) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    if isinstance(data, dict):
        data = json.dumps(data).encode()
    return {
        "recordId": f"record-{sequence}",
        "approximateArrivalTimestamp": milliseconds,
        "data": data if isinstance(data, str) else base64.b64encode(data).decode(),
        "kinesisRecordMetadata": {
            "shardId": "shardId-000000000000",
            "partitionKey": "u-any",
            "approximateArrivalTimestamp": milliseconds,
            "sequenceNumber": str(sequence),
            "subsequenceNumber": 0,
        },
    }


def events_in(prefix: str) -> list[dict]:
    return [record(event_document(key), EVENTS[key][5]) for key in EVENTS if EVENTS[key][4].startswith(prefix)]


BAD_USER = json.dumps({**event_document("e16"), "user_id": "ann"}).encode()
REASON_NOT_JSON = "event: Invalid JSON: expected ident at line 1 column 2"
REASON_BROKEN_JSON = "event: Invalid JSON: key must be a string at line 1 column 2"
REASON_VERSION = "schema_version: Input should be 1"
REASON_USER = "user_id: String should match pattern '^u-[A-Za-z0-9_-]{1,64}$'"
REASON_BASE64 = "the record's data is not base64"


def buffers() -> list[tuple[str, list[dict], dict[str, int]]]:
    """The buffers in the order Firehose hands them over (a retry's buffer before the first copy's, once): name, records,
    the transformation's counts."""
    redelivered = record(BAD_USER, "2026-12-02T09:00:00Z", sequence=7)  # the same stream record, transformed twice
    return [
        (
            "older",
            [*events_in("2026-10"), *events_in("2026-11"), record(b"{oops", "2026-11-01T09:00:00Z"), record(b"{oops", "2026-11-04T00:00:00Z")],
            {"RowsWritten": 14, "RecordsQuarantined": 2},
        ),
        (
            "2026-12-01",
            [
                *events_in("2026-12-01"),
                record(b"not json", "2026-12-01T10:30:00Z"),
                record(b"not json", "2026-12-01T14:00:00Z"),
                record({**event_document("e01"), "schema_version": 2}, "2026-12-01T15:00:00Z"),
            ],
            {"RowsWritten": 14, "RecordsQuarantined": 3},
        ),
        ("2026-12-01 retry", [record(event_document("e01"), COPIES["e01"])], {"RowsWritten": 1}),
        (
            "2026-12-02",
            [
                *events_in("2026-12-02"),
                record(event_document("e18"), "2026-12-02T08:03:00.900Z"),  # a copy in the same buffer: dropped by the transformation
                redelivered,
                record("not base64!", "2026-12-02T10:00:00Z"),
            ],
            {"RowsWritten": 16, "RecordsQuarantined": 2, "DuplicatesDropped": 1},
        ),
        ("2026-12-02 retry", [record(event_document("e18"), COPIES["e18"]), redelivered], {"RowsWritten": 1, "RecordsQuarantined": 1}),
        ("2026-12-03 retry", [record(event_document("e25"), COPIES["e25"])], {"RowsWritten": 1}),
        ("2026-12-03", events_in("2026-12-03"), {"RowsWritten": 8}),
    ]


@pytest.fixture(scope="module")
def transform():
    """The transformation function's ``transform``, loaded from its folder as Lambda would (LAKE_DATABASE set)."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {
            "LAKE_DATABASE": DATABASE,
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_NAMESPACE": "test",
            "POWERTOOLS_SERVICE_NAME": "test",
            "POWERTOOLS_LOG_LEVEL": "ERROR",
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():
            patch.setenv(name, value)
        spec = importlib.util.spec_from_file_location(f"lake_transform_{uuid.uuid4().hex[:8]}", f"{lambda_code('lake_transform')}/handler.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module.transform


@pytest.fixture(scope="module")
def local_lake(transform, tmp_path_factory):
    with LocalLake(tmp_path_factory.mktemp("lake"), DATABASE, now=NOW) as the_lake:
        for name, records, counts in buffers():
            answers, got, _ = transform(records, NOW)
            assert [answer["recordId"] for answer in answers] == [r["recordId"] for r in records], name
            assert {k: v for k, v in got.items() if v} == counts, name
            the_lake.deliver(answers)
        yield the_lake


QUERIES = {query.name: query for query in aq.queries_for(DATABASE)}


def run(local_lake: LocalLake, name: str) -> list[dict]:
    return local_lake.query(QUERIES[name].sql)


def rows(answer: list[dict], *columns: str) -> list[tuple]:
    return [tuple(row[column] for column in columns) for row in answer]


def test_the_lake_is_hive_partitioned_parquet_with_the_tables_types(local_lake):
    events = local_lake.root / "events"
    assert (events / "event_date=2026-12-01" / "event_type=page_view").is_dir()
    assert (local_lake.root / "quarantine" / "quarantine_date=2026-12-02").is_dir()
    schema = pq.read_schema(next((events / "event_date=2026-12-01" / "event_type=reading").glob("*.parquet")))
    assert "event_date" not in schema.names and "event_type" not in schema.names  # in the folder names
    assert not schema.field("event_id").nullable and schema.field("session_id").nullable
    assert str(schema.field("schema_version").type) == "int32"
    # Every row the transformation made, as many as it wrote (copies included: the queries remove them).
    assert local_lake.query(f"SELECT count(*) AS n FROM {DATABASE}.events") == [{"n": len(EVENTS) + len(COPIES)}]
    assert local_lake.query(f"SELECT count(*) AS n FROM {DATABASE}.quarantine") == [{"n": 8}]


def test_events_per_type_per_day(local_lake):
    # 2026-10-01 and 11-03 are before the 30 days. Copies of e01 (page_view, 12-01), e18 (purchase, 12-02), e25 (page_view, 12-03)
    # count once.
    assert rows(run(local_lake, "events_per_type_per_day"), "event_date", "event_type", "events", "users") == [
        ("2026-11-04", "page_view", 1, 1),
        ("2026-11-25", "page_view", 9, 1),
        ("2026-11-26", "page_view", 1, 1),
        ("2026-11-27", "page_view", 1, 1),
        ("2026-12-01", "add_to_cart", 4, 4),  # e02 ann, e05 bob, e06 cat, e11 dan
        ("2026-12-01", "page_view", 6, 5),  # e01 ann, e04 bob, e07 cat, e09 dan, e12 eve, e14 bob
        ("2026-12-01", "purchase", 3, 3),  # e03 ann, e08 cat, e10 dan
        ("2026-12-01", "reading", 1, 1),
        ("2026-12-02", "add_to_cart", 3, 3),  # e15 eve, e17 ann, e21 bob
        ("2026-12-02", "page_view", 10, 4),  # e16 ann, e19 bob, e23 cat, 7 by fay
        ("2026-12-02", "purchase", 3, 2),  # e18 ann, e20 and e22 bob
        ("2026-12-03", "add_to_cart", 2, 2),  # cat, e27 dan
        ("2026-12-03", "page_view", 4, 3),  # cat, e24 and e25 dan, e26 ann
        ("2026-12-03", "purchase", 1, 1),
        ("2026-12-03", "reading", 1, 1),
    ]


def test_sessions(local_lake):
    # The last 7 days (from 2026-11-27: not s-ann-0); ordered by start. s-eve-1 spans midnight; e18's copy is not a 4th event.
    def t(text: str) -> datetime:
        return at(f"2026-12-0{text}:00+00:00")

    assert rows(run(local_lake, "sessions"), "session_id", "user_id", "session_start", "session_end", "duration_seconds", "events") == [
        ("s-cat-1", "u-cat", t("1T09:00"), t("1T09:40"), 2400.0, 3),
        ("s-ann-1", "u-ann", t("1T10:00"), t("1T10:10"), 600.0, 3),
        ("s-bob-1", "u-bob", t("1T11:00"), t("1T11:02"), 120.0, 3),
        ("s-dan-1", "u-dan", t("1T12:00"), t("1T12:10"), 600.0, 3),  # e09 at 12:00:00.000400 is 12:00:00.000 to Athena
        ("s-eve-1", "u-eve", t("1T23:59"), t("2T00:01"), 120.0, 2),
        ("s-ann-2", "u-ann", t("2T08:00"), t("2T08:03"), 180.0, 3),
        ("s-bob-2", "u-bob", t("2T09:00"), t("2T10:00"), 3600.0, 4),
        ("s-fay-1", "u-fay", t("2T15:00"), t("2T15:06"), 360.0, 7),
        ("s-cat-2", "u-cat", t("3T08:00"), at("2026-12-03T08:00:30+00:00"), 30.0, 2),
        ("s-ann-3", "u-ann", t("3T10:00"), t("3T11:30"), 5400.0, 2),
        ("s-dan-2", "u-dan", t("3T11:10"), t("3T11:40"), 1800.0, 3),  # e25's copy is not a 4th event
    ]


def test_sessions_per_day(local_lake):
    # By the day a session starts. 12-01: 2400, 600, 120, 600, 120 s (median 600, mean 3840 / 5); events 3, 3, 3, 3, 2.
    # 12-02: 180, 3600, 360 (median 360, mean 4140 / 3); events 3, 4, 7. 12-03: 30, 5400, 1800 (median 1800, mean 7230 / 3); 2, 2, 3.
    answer = run(local_lake, "sessions_per_day")
    assert rows(answer, "session_date", "sessions", "users", "median_duration_seconds", "avg_duration_seconds") == [
        ("2026-11-25", 1, 1, 480.0, 480.0),
        ("2026-12-01", 5, 5, 600.0, 768.0),
        ("2026-12-02", 3, 3, 360.0, 1380.0),
        ("2026-12-03", 3, 3, 1800.0, 2410.0),
    ]
    assert [row["avg_events"] for row in answer] == pytest.approx([9.0, 2.8, 14 / 3, 7 / 3])


def test_funnel_per_day(local_lake):
    # 11-04, 11-26, 11-27: gus viewed; 11-25: ann viewed; nothing more.
    # 12-01: viewed ann, bob, cat, dan, eve; then a cart: ann, bob, dan (cat's cart was before her view, eve's the next day); then a
    # purchase: ann (dan's purchase was before his cart).
    # 12-02: viewed ann, bob, cat, fay (eve only carted); carted ann, bob; purchased ann, bob (his 10:00 purchase after his 09:30
    # cart, not the 09:20 one).
    # 12-03: viewed cat, dan, ann; carted cat, dan; nobody purchased after a cart (ann's purchase has no cart before it).
    answer = run(local_lake, "funnel_per_day")
    assert rows(answer, "event_date", "viewed", "added_to_cart", "purchased", "cart_rate", "purchase_rate") == [
        ("2026-11-04", 1, 0, 0, 0.0, 0.0),
        ("2026-11-25", 1, 0, 0, 0.0, 0.0),
        ("2026-11-26", 1, 0, 0, 0.0, 0.0),
        ("2026-11-27", 1, 0, 0, 0.0, 0.0),
        ("2026-12-01", 5, 3, 1, 0.6, 0.2),
        ("2026-12-02", 4, 2, 2, 0.5, 0.5),
        ("2026-12-03", 3, 2, 0, 0.6667, 0.0),
    ]


def test_top_pages(local_lake):
    # Page views since 2026-11-27: /home 9 (e01, e04, e09, e16, e19, e23, cat's, e24, e26 by ann, bob, dan, cat), /docs/1 2 (fay,
    # gus on 11-27 at 00:00), and 1 each for /docs/2../docs/7, /pricing, /product/1, /product/2, /product/5 (its copy does not
    # count): ties by page, 10 in all. /old-page's 9 views (11-25), gus's /docs/1 on 11-26 and the /home of 10-01 are before the 7 days.
    assert rows(run(local_lake, "top_pages"), "page", "views", "users") == [
        ("/home", 9, 4),
        ("/docs/1", 2, 2),
        *[(f"/docs/{n}", 1, 1) for n in range(2, 8)],
        ("/pricing", 1, 1),
        ("/product/1", 1, 1),
    ]


def test_late_share_per_day(local_lake):
    # 12-01: 14 events, late e05 (7 min) and e10 (5 min 1 ms); e14 (exactly 5 min) is not; e01's copy (an hour late) does not count.
    # 12-02: 16 events, late e22 (20 min); e18's copy does not count. 12-03: 8 events, late e26 (400 s); e25's copy does not count.
    assert rows(run(local_lake, "late_share_per_day"), "event_date", "events", "late_events", "late_share") == [
        ("2026-11-04", 1, 0, 0.0),
        ("2026-11-25", 9, 0, 0.0),
        ("2026-11-26", 1, 0, 0.0),
        ("2026-11-27", 1, 0, 0.0),
        ("2026-12-01", 14, 2, 0.1429),
        ("2026-12-02", 16, 1, 0.0625),
        ("2026-12-03", 8, 1, 0.125),
    ]
    # The same events are late by the lake's own rule (lake.is_late), which the query's threshold is derived from.
    late = sorted(key for key, (*_, when, arrived) in EVENTS.items() if at(arrived) - at(when) > lake.LATE_AFTER and when >= "2026-11")
    assert late == ["e05", "e10", "e22", "e26"]


def test_freshness(local_lake):
    # NOW is 12:00; the last hour's arrivals are after 11:00. add_to_cart: latest e27 at 11:40:00.500 (1199.5 s ago), delay 0.5 s.
    # page_view: latest e26 at 11:36:40 (e25's copy at 11:50 does not count); delays 1, 2, 400 s. purchase: latest e28 at 10:00:03,
    # nothing in the last hour. reading: e29 at 11:59:30, delay 30 s.
    answer = run(local_lake, "freshness")
    assert rows(answer, "event_type", "latest_arrival", "seconds_since_latest_arrival", "recent_events", "p50_delay_seconds", "p95_delay_seconds") == [
        ("add_to_cart", at("2026-12-03T11:40:00.500+00:00"), 1199.5, 1, 0.5, 0.5),
        ("page_view", at("2026-12-03T11:36:40+00:00"), 1400.0, 3, 2.0, 400.0),
        ("purchase", at("2026-12-03T10:00:03+00:00"), 7197.0, 0, None, None),
        ("reading", at("2026-12-03T11:59:30+00:00"), 30.0, 1, 30.0, 30.0),
    ]


def test_quarantine_per_day(local_lake):
    # 12-01: two records that are not JSON (the same reason), one of version 2. 12-02: a user id without ``u-`` (transformed twice:
    # the same record, counted once), a data field that is not base64. 11-04 (the first of the 30 days): not JSON either; 11-01's
    # record is before the 30 days.
    assert rows(run(local_lake, "quarantine_per_day"), "quarantine_date", "reason", "records") == [
        ("2026-11-04", REASON_BROKEN_JSON, 1),
        ("2026-12-01", REASON_NOT_JSON, 2),
        ("2026-12-01", REASON_VERSION, 1),
        ("2026-12-02", REASON_BASE64, 1),
        ("2026-12-02", REASON_USER, 1),
    ]


def test_a_delete_runs_on_the_local_lake(transform, tmp_path):
    """``LocalLake.execute`` runs an Athena statement (an erasure's DELETE); the queries then answer without the rows."""
    with LocalLake(tmp_path, DATABASE, now=NOW) as the_lake:
        for _, records, _ in buffers():
            the_lake.deliver(transform(records, NOW)[0])
        the_lake.execute(f"DELETE FROM {DATABASE}.events WHERE user_id = 'u-fay'")
        assert rows(the_lake.query(QUERIES["top_pages"].sql), "page", "views") == [
            ("/home", 9),
            ("/docs/1", 1),
            ("/pricing", 1),
            ("/product/1", 1),
            ("/product/2", 1),
            ("/product/5", 1),
        ]


def test_a_row_that_is_not_the_tables_is_refused(tmp_path):
    with LocalLake(tmp_path, DATABASE) as the_lake:
        with pytest.raises(ValueError, match="columns"):
            the_lake.write("quarantine", [{"record_id": "r"}])
        row = {name: None for name, _, _ in lake.QUARANTINE_COLUMNS}
        with pytest.raises(ValueError, match="required"):
            the_lake.write("quarantine", [row])


# The SQL itself.


def _tables(tree: exp.Expression) -> list[exp.Table]:
    ctes = {cte.alias for cte in tree.find_all(exp.CTE)}
    return [table for table in tree.find_all(exp.Table) if not (not table.db and table.name in ctes)]


def _is_first_copy(scan: exp.Select, key: str) -> bool:
    """``scan`` numbers its rows ``ROW_NUMBER() OVER (PARTITION BY key ORDER BY arrival_time)`` as N, and the query around it
    keeps ``N = 1``."""
    for projection in scan.expressions:
        window = projection.this if isinstance(projection, exp.Alias) else None
        if not (isinstance(window, exp.Window) and isinstance(window.this, exp.RowNumber)):
            continue
        partition = [column.sql() for column in window.args.get("partition_by") or []]
        order = window.args.get("order")
        ordered = [(o.this.sql(), bool(o.args.get("desc"))) for o in order.expressions] if order else []
        outer = scan.parent.find_ancestor(exp.Select) if isinstance(scan.parent, exp.Subquery) else None
        where = outer.args.get("where") if isinstance(outer, exp.Select) else None
        keeps_first = where is not None and any(
            isinstance(eq, exp.EQ) and eq.this.sql() == projection.alias and eq.expression.sql() == "1" for eq in where.find_all(exp.EQ)
        )
        if partition == [key] and ordered == [("arrival_time", False)] and keeps_first:
            return True
    return False


def _partition_filter(scan: exp.Select, column: str) -> bool:
    """``scan`` (the one that reads the table) filters ``column >= CAST(current_date - INTERVAL ... AS varchar)``."""
    where = scan.args.get("where")
    return where is not None and any(
        isinstance(bound, exp.GTE) and bound.this.sql() == column and bound.expression.find(exp.CurrentDate) for bound in where.find_all(exp.GTE)
    )


@pytest.mark.parametrize("query", aq.NAMED_QUERIES, ids=lambda q: q.name)
def test_every_query_is_athena_sql_that_reads_first_copies_of_the_lake_in_its_partitions(query):
    sql = aq.render(query.sql, DATABASE)
    trees = [sqlglot.parse_one(sql, read=dialect) for dialect in {READ, "trino"}]
    for tree in trees:
        assert isinstance(tree, exp.Query)
        tables = _tables(tree)
        assert tables and {(table.db, table.name) for table in tables} <= {(DATABASE, "events"), (DATABASE, "quarantine")}
        for table in tables:
            scan = table.find_ancestor(exp.Select)
            key, date = ("event_id", "event_date") if table.name == "events" else ("record_id", "quarantine_date")
            assert _is_first_copy(scan, key), f"{query.name} reads {table.name} without keeping the first copy of each {key}"
            # Every query covers a range of days: filtered on the partition where the table is read, before the window function.
            assert _partition_filter(scan, date), f"{query.name} reads {table.name} without a filter on {date}"
    assert "{" not in sql and query.description and len(query.name) <= 128


def test_queries_for_names_the_database_and_refuses_a_name_athena_would_misread():
    queries = aq.queries_for("my_lake")
    assert [q.name for q in queries] == [q.name for q in aq.NAMED_QUERIES] and len({q.name for q in queries}) == len(queries)
    assert all("my_lake.events" in q.sql or "my_lake.quarantine" in q.sql for q in queries)
    for bad in ("my-lake", "1lake", "Lake", "lake; DROP TABLE x", ""):
        with pytest.raises(ValueError):
            aq.queries_for(bad)


def test_the_late_threshold_is_the_lakes():
    assert aq.interval_literal(timedelta(minutes=5)) == "INTERVAL '300' SECOND"
    assert aq.interval_literal(timedelta(milliseconds=1500)) == "INTERVAL '1.500' SECOND"
    with pytest.raises(ValueError):
        aq.interval_literal(timedelta(microseconds=1))
    assert aq.LATE_AFTER_SQL == aq.interval_literal(lake.LATE_AFTER)
    assert aq.LATE_AFTER_SQL in aq.LATE_SHARE_PER_DAY.sql


@pytest.mark.parametrize(
    ("athena", "expected"),
    [
        # Trino's date_diff counts whole units; DuckDB's date_diff would say 1 here (a second boundary crossed).
        ("SELECT date_diff('second', from_iso8601_timestamp('2026-12-01T10:00:00.900Z'), from_iso8601_timestamp('2026-12-01T10:00:01.100Z')) AS x", 0),
        # from_iso8601_timestamp is to the millisecond in Athena: the two times are equal.
        ("SELECT from_iso8601_timestamp('2026-12-01T10:00:00.000100Z') = from_iso8601_timestamp('2026-12-01T10:00:00.000900Z') AS x", True),
        # A date minus days is a date: as text, YYYY-MM-DD (the partition's format).
        ("SELECT CAST(current_date - INTERVAL '6' DAY AS varchar) AS x", "2026-11-27"),
        ("SELECT CAST(date_add('day', -6, current_date) AS varchar) AS x", "2026-11-27"),
        # approx_percentile answers one of the values (DuckDB's approx_quantile, a t-digest, would say 28).
        ("SELECT approx_percentile(x, 0.75) AS x FROM (VALUES 1, 2, 3, 4, 100) AS t(x)", 4),
        ("SELECT date_diff('millisecond', current_timestamp, from_iso8601_timestamp('2026-12-03T12:00:01.5Z')) AS x", 1500),
    ],
)
def test_athena_to_duckdb_keeps_athenas_meaning(athena, expected, tmp_path):
    with LocalLake(tmp_path, DATABASE, now=NOW) as the_lake:
        assert the_lake.query(athena) == [{"x": expected}], athena_to_duckdb(athena, now=NOW)
