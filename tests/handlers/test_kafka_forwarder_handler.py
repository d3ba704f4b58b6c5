"""The Kafka forwarder against moto Kinesis: clicks from MSK events become analytics events on the stream, one failed item per record not forwarded."""

import base64
import json
import uuid
from collections import defaultdict

import boto3
import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from messaging_runtime.contracts.analytics import ANALYTICS_EVENT, AnalyticsEventV1, from_click
from messaging_runtime.contracts.clicks import CLICK
from messaging_runtime.publishers import Retry
from tests.handlers import kafka_events as kafka
from tests.handlers.kafka_events import click, click_record, failures, record
from tests.handlers.record_shapes import metric_totals

STREAM_NAME = "analytics-events"
FAST = settings(max_examples=30, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
THROTTLED = {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "Rate exceeded for shard shardId-000000000001 in stream analytics-events."}


@pytest.fixture(scope="module")
def forwarder(moto_module, load_function_module):
    boto3.client("kinesis").create_stream(StreamName=STREAM_NAME, ShardCount=2)
    moto_module.setenv("STREAM_NAME", STREAM_NAME)
    moto_module.setenv("POWERTOOLS_SERVICE_NAME", "kafka_forwarder")
    moto_module.setenv("POWERTOOLS_METRICS_NAMESPACE", "CapstoneAnalytics")
    module = load_function_module("kafka_forwarder")
    module.stream.retry = Retry(sleep=lambda _: None)  # the publisher's rounds without their pauses
    return module


def new_user():
    return f"u-{uuid.uuid4().hex[:10]}"


def on_stream(*user_ids):
    """The stream's records of ``user_ids``: {partition key: [data, ...]} in each shard's order."""
    kinesis, found = boto3.client("kinesis"), defaultdict(list)
    for shard in kinesis.list_shards(StreamName=STREAM_NAME)["Shards"]:
        iterator = kinesis.get_shard_iterator(StreamName=STREAM_NAME, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while (page := kinesis.get_records(ShardIterator=iterator, Limit=10_000))["Records"]:
            for entry in page["Records"]:
                if entry["PartitionKey"] in user_ids:
                    found[entry["PartitionKey"]].append(entry["Data"])
            iterator = page["NextShardIterator"]
    return dict(found)


def events_on_stream(*user_ids):
    """As ``on_stream``, each record read with the producer's view of the contract (no unknown field, every rule)."""
    return {key: [AnalyticsEventV1.model_validate_json(data) for data in records] for key, records in on_stream(*user_ids).items()}


def expected(*clicks):
    return [from_click(CLICK.parse(c)) for c in clicks]


def carried(entry):
    """The click a record carries, as a dict."""
    return json.loads(base64.b64decode(entry["value"]))


def raising(error):
    def call(*args, **kwargs):
        raise error

    return call


def refuse(forwarder, monkeypatch, refused):
    """Kinesis refuses (ProvisionedThroughputExceededException) each entry for which ``refused(event_id, attempt)``; moto stores the rest.

    Returns the event ids of every entry sent, call by call.
    """
    real, attempts, calls = forwarder.kinesis.put_records, defaultdict(int), []

    def put_records(*, Records, **stream):  # noqa: N803
        ids = [json.loads(entry["Data"])["event_id"] for entry in Records]
        calls.append(ids)
        verdicts = []
        for event_id in ids:
            attempts[event_id] += 1
            verdicts.append(refused(event_id, attempts[event_id]))
        kept = [entry for entry, no in zip(Records, verdicts, strict=True) if not no]
        stored = iter(real(Records=kept, **stream)["Records"] if kept else [])
        return {"FailedRecordCount": sum(verdicts), "Records": [dict(THROTTLED) if no else next(stored) for no in verdicts]}

    monkeypatch.setattr(forwarder.kinesis, "put_records", put_records)
    return calls


def test_valid_clicks_become_analytics_events_on_the_stream_keyed_by_user(forwarder, lambda_context, capsys):
    ada, bob = new_user(), new_user()
    clicks = [
        click(ada, action="view", page="/"),
        click(bob, action="click", page="/sale"),
        click(ada, action="add_to_cart", page="/cart"),
        click(bob, action="purchase", page="/checkout"),
        click(ada, action="view", page="/faq"),
    ]
    records = [click_record(c, offset=10 + n, partition=n % 2) for n, c in enumerate(clicks)]
    capsys.readouterr()

    assert forwarder.lambda_handler(kafka.event(records), lambda_context) == {"batchItemFailures": []}

    assert events_on_stream(ada, bob) == {ada: expected(*clicks[0::2]), bob: expected(*clicks[1::2])}
    assert [e.event_type for e in events_on_stream(ada)[ada]] == ["page_view", "add_to_cart", "page_view"]
    [data, *_] = on_stream(ada)[ada]
    assert ANALYTICS_EVENT.parse(data).model_dump() == expected(clicks[0])[0].model_dump()  # as the lake and the aggregator read it
    metrics = metric_totals(capsys.readouterr().out)
    assert (metrics["EventsForwarded"], metrics["RejectedRecords"], metrics["FailedRecords"]) == (5, 0, 0)


@pytest.mark.parametrize("value", [None, "", "  "], ids=["unset", "empty", "blank"])
def test_the_function_does_not_start_without_its_stream(forwarder, load_function_module, monkeypatch, value):
    if value is None:
        monkeypatch.delenv("STREAM_NAME")
    else:
        monkeypatch.setenv("STREAM_NAME", value)

    with pytest.raises(RuntimeError, match="^environment variable STREAM_NAME is required$"):
        load_function_module("kafka_forwarder")


def _bad_records(user_id):
    """Each kind of record the forwarder must fail alone, with a piece of the reason it must give."""
    return {
        "key of another user": (click_record(click(user_id), offset=0, key="u-someone-else"), "key 'u-someone-else' is not the event's user_id"),
        "no key": (click_record(click(user_id), offset=0, key=None), "the record has no key"),
        "key not base64": (click_record(click(user_id), offset=0, raw_key="dS0x!"), "the key is not base64"),
        "value not JSON": (record(offset=0, key=user_id, value="<click/>"), "value: Invalid JSON"),
        "unknown action": (click_record(click(user_id, action="scroll"), offset=0), "action: Input should be 'view', 'click', 'add_to_cart' or 'purchase'"),
        "missing field": (click_record(click(user_id, page=None), offset=0), "page: Field required"),
        "newer version": (click_record(click(user_id, schema_version=2), offset=0), "schema_version: Input should be 1"),
        # A click's user_id is "u-" and anything but white space (128 at most); an analytics event's, 1 to 64 of [A-Za-z0-9_-].
        "user id with a dot": (click_record(click("u-ada.lovelace"), offset=0), "the analytics contract refuses the click: user_id: String should match"),
        "user id not ASCII": (click_record(click("u-zoë"), offset=0), "the analytics contract refuses the click: user_id: String should match"),
        "user id too long": (click_record(click("u-" + "a" * 65), offset=0), "the analytics contract refuses the click: user_id: String should match"),
    }


BAD_KINDS = sorted(_bad_records("u-x"))


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_a_record_that_cannot_be_forwarded_fails_alone_with_its_reason(forwarder, lambda_context, log_records, kind):
    user_id, logs = new_user(), log_records(forwarder)
    bad, reason = _bad_records(user_id)[kind]
    bad.update(partition=2, offset=41)
    before, after = (click_record(click(user_id, page=f"/{n}"), offset=n, partition=2) for n in (40, 42))
    batch = kafka.event([before, bad, after])

    response = forwarder.lambda_handler(batch, lambda_context)

    assert response == {"batchItemFailures": [{"itemIdentifier": {"partition": "clickstream-2", "offset": 41}}]} == failures(batch, bad)
    [rejected] = [entry for entry in logs if entry.getMessage() == "Rejected record"]
    assert (rejected.topic, rejected.partition, rejected.offset) == ("clickstream", 2, 41)
    assert reason in rejected.reason
    assert events_on_stream(user_id) == {user_id: expected(carried(before), carried(after))}


def test_every_kind_of_bad_record_in_one_batch_fails_exactly_those_records(forwarder, lambda_context, capsys):
    user_id = new_user()
    bad = [entry for kind in BAD_KINDS for entry, _ in [_bad_records(user_id)[kind]]]
    for number, entry in enumerate(bad):
        entry.update(partition=number % 3, offset=1000 + number)
    clicks = [click(user_id, page=f"/p{n}") for n in range(3)]
    batch = kafka.event(bad[:5] + [click_record(c, offset=2000 + n, partition=5) for n, c in enumerate(clicks)] + bad[5:])
    capsys.readouterr()

    assert forwarder.lambda_handler(batch, lambda_context) == failures(batch, *bad)

    assert events_on_stream(user_id) == {user_id: expected(*clicks)}
    metrics = metric_totals(capsys.readouterr().out)
    assert (metrics["RejectedRecords"], metrics["FailedRecords"], metrics["EventsForwarded"]) == (len(BAD_KINDS), len(BAD_KINDS), 3)


def test_a_tombstone_is_skipped_and_counted_not_failed(forwarder, lambda_context, capsys):
    # The reader's rule (messaging_runtime.readers.kafka_json): a tombstone carries no event, and no retry would change that.
    user_id = new_user()
    first, last = click(user_id), click(user_id, action="purchase")
    batch = kafka.event([click_record(first, offset=1), record(offset=2, key=user_id), record(offset=3), click_record(last, offset=4)])
    capsys.readouterr()

    assert forwarder.lambda_handler(batch, lambda_context) == {"batchItemFailures": []}

    assert events_on_stream(user_id) == {user_id: expected(first, last)}
    metrics = metric_totals(capsys.readouterr().out)
    assert (metrics["TombstonesSkipped"], metrics["EventsForwarded"], metrics["FailedRecords"]) == (2, 2, 0)


def test_the_records_of_entries_kinesis_refuses_fail_with_the_reason_and_the_rest_is_forwarded(forwarder, lambda_context, monkeypatch, log_records, capsys):
    ada, bob = new_user(), new_user()
    clicks = [click(ada), click(bob), click(ada, action="click"), click(bob, action="purchase")]
    records = [click_record(c, offset=n) for n, c in enumerate(clicks)]
    calls = refuse(forwarder, monkeypatch, lambda event_id, attempt: event_id in {clicks[1]["event_id"], clicks[3]["event_id"]})
    logs = log_records(forwarder)
    capsys.readouterr()
    batch = kafka.event(records)

    assert forwarder.lambda_handler(batch, lambda_context) == failures(batch, records[1], records[3])

    assert events_on_stream(ada, bob) == {ada: expected(clicks[0], clicks[2])}
    assert sum(call.count(clicks[1]["event_id"]) for call in calls) == 3  # the publisher's own attempts first
    reasons = {entry.offset: entry.reason for entry in logs if entry.getMessage() == "Record failed"}
    assert reasons[1] == (
        "NotForwarded: Kinesis did not store the event: ProvisionedThroughputExceededException: Rate exceeded for shard shardId-000000000001"
        " in stream analytics-events. (after 3 attempts)"
    )
    assert reasons[3] == "NotForwarded: Kinesis did not store the event: GroupStopped: an earlier record of its partition key was not sent"
    metrics = metric_totals(capsys.readouterr().out)
    assert (metrics["EventsForwarded"], metrics["FailedRecords"], metrics["RejectedRecords"]) == (2, 2, 0)


def test_a_refused_event_holds_back_its_users_later_events_only(forwarder, lambda_context, monkeypatch):
    ada, bob = new_user(), new_user()
    clicks = [click(ada, page="/1"), click(bob, page="/1"), click(ada, page="/2"), click(bob, page="/2"), click(ada, page="/3")]
    records = [click_record(c, offset=n) for n, c in enumerate(clicks)]
    refuse(forwarder, monkeypatch, lambda event_id, attempt: event_id == clicks[2]["event_id"])
    batch = kafka.event(records)

    # Lambda retries from the failed records: ada's events stay in order on the stream, with no gap.
    assert forwarder.lambda_handler(batch, lambda_context) == failures(batch, records[2], records[4])

    assert events_on_stream(ada, bob) == {ada: expected(clicks[0]), bob: expected(clicks[1], clicks[3])}


def test_an_entry_refused_once_is_retried_by_the_publisher_in_order(forwarder, lambda_context, monkeypatch):
    ada = new_user()
    clicks = [click(ada, page=f"/{n}") for n in range(4)]
    calls = refuse(forwarder, monkeypatch, lambda event_id, attempt: event_id == clicks[1]["event_id"] and attempt == 1)

    assert forwarder.lambda_handler(kafka.event([click_record(c, offset=n) for n, c in enumerate(clicks)]), lambda_context) == {"batchItemFailures": []}

    assert events_on_stream(ada) == {ada: expected(*clicks)}
    assert [len(call) for call in calls] == [1, 1, 1, 1, 1]  # one record of a partition key per call: the order cannot break


@pytest.mark.parametrize(
    "failure",
    [
        ClientError({"Error": {"Code": "AccessDeniedException", "Message": "not authorized to perform kinesis:PutRecords"}}, "PutRecords"),
        ClientError({"Error": {"Code": "ResourceNotFoundException", "Message": "Stream analytics-events not found"}}, "PutRecords"),
    ],
    ids=["access denied", "no stream"],
)
def test_when_the_call_fails_every_readable_record_fails_and_the_rejected_keep_their_reason(forwarder, lambda_context, monkeypatch, log_records, failure):
    user_id = new_user()
    good = [click_record(click(user_id), offset=n) for n in range(3)]
    bad = click_record(click(user_id, action="scroll"), offset=3)
    monkeypatch.setattr(forwarder.kinesis, "put_records", raising(failure))
    logs = log_records(forwarder)
    batch = kafka.event([*good, bad])

    assert forwarder.lambda_handler(batch, lambda_context) == failures(batch, *good, bad)

    assert on_stream(user_id) == {}
    failed = [entry.reason for entry in logs if entry.getMessage() == "Record failed"]
    assert len(failed) == 3 and all(failure.response["Error"]["Code"] in reason for reason in failed)
    assert [entry.offset for entry in logs if entry.getMessage() == "Rejected record"] == [3]


def test_a_batch_with_nothing_to_forward_makes_no_call_and_counts_none(forwarder, lambda_context, monkeypatch, capsys):
    calls = refuse(forwarder, monkeypatch, lambda event_id, attempt: False)
    bad, tombstone = record(offset=1, key="u-1", value="not json"), record(offset=2, key="u-1")
    batch = kafka.event([bad, tombstone])
    capsys.readouterr()

    assert forwarder.lambda_handler(batch, lambda_context) == failures(batch, bad)

    assert calls == []
    metrics = metric_totals(capsys.readouterr().out)
    assert (metrics["EventsForwarded"], metrics["RejectedRecords"], metrics["TombstonesSkipped"]) == (0, 1, 1)
    assert "EventsForwarded" in metrics


def test_when_publishing_raises_every_readable_record_fails_and_the_batch_is_answered(forwarder, lambda_context, monkeypatch):
    user_id = new_user()
    good = [click_record(click(user_id), offset=n) for n in range(2)]
    monkeypatch.setattr(forwarder.stream, "publish", raising(RuntimeError("a bug")))
    batch = kafka.event([*good, record(offset=2, key=user_id)])  # and a tombstone, which is skipped all the same

    assert forwarder.lambda_handler(batch, lambda_context) == failures(batch, *good)


# --- the property: forwarded and failed make the batch; a user's events keep their order ---------------------------

VALID, WRONG_KEY, BAD_ACTION, REFUSED_USER, NOT_JSON = "valid", "wrong key", "bad action", "refused user", "not JSON"


def _entry(kind, user_id, offset, partition):
    """A record of ``kind`` for ``user_id``, and the click it carries when it is valid."""
    if kind == VALID:
        event = click(user_id, page=f"/{offset}")
        return click_record(event, offset=offset, partition=partition), event
    if kind == REFUSED_USER:
        return click_record(click(f"{user_id}.x"), offset=offset, partition=partition), None
    if kind == WRONG_KEY:
        return click_record(click(user_id), offset=offset, partition=partition, key=f"{user_id}-other"), None
    if kind == BAD_ACTION:
        return click_record(click(user_id, action="hover"), offset=offset, partition=partition), None
    return record(offset=offset, partition=partition, key=user_id, value="{"), None


def _batch(draws):
    """Records for (user number, kind) draws: a user's records on one partition, as the producer keys them, offsets rising."""
    users = [new_user() for _ in range(4)]
    entries = [_entry(kind, users[user], offset, partition=user % 3) for offset, (user, kind) in enumerate(draws)]
    return users, entries


def _clicks_per_user(batch, entries, users):
    """The valid clicks of each user in the order the function walks the batch."""
    carried = {id(entry): event for entry, event in entries}
    per_user = defaultdict(list)
    for entry in kafka.flattened(batch):
        if (event := carried[id(entry)]) is not None:
            per_user[event["user_id"]].append(event)
    return {user: per_user[user] for user in users if per_user[user]}


DRAWS = st.lists(st.tuples(st.integers(0, 3), st.sampled_from([VALID, VALID, VALID, WRONG_KEY, BAD_ACTION, REFUSED_USER, NOT_JSON])), min_size=1, max_size=25)


@FAST
@given(draws=DRAWS)
def test_property_forwarded_and_failed_make_the_batch_and_each_users_order_is_kept(forwarder, lambda_context, draws):
    users, entries = _batch(draws)
    batch = kafka.event([entry for entry, _ in entries])

    response = forwarder.lambda_handler(batch, lambda_context)

    stream = events_on_stream(*users)
    assert response == failures(batch, *(entry for entry, event in entries if event is None))
    assert sum(map(len, stream.values())) + len(response["batchItemFailures"]) == len(entries)
    assert stream == {user: expected(*clicks) for user, clicks in _clicks_per_user(batch, entries, users).items()}


@FAST
@given(draws=DRAWS, refused=st.sets(st.integers(0, 24), max_size=4))
def test_property_with_refusals_each_user_has_a_prefix_of_its_events_on_the_stream_and_the_rest_failed(forwarder, lambda_context, draws, refused):
    users, entries = _batch(draws)
    batch = kafka.event([entry for entry, _ in entries])
    refused_ids = {entries[n][1]["event_id"] for n in refused if n < len(entries) and entries[n][1] is not None}
    with pytest.MonkeyPatch.context() as patch:
        refuse(forwarder, patch, lambda event_id, attempt: event_id in refused_ids)
        response = forwarder.lambda_handler(batch, lambda_context)

    stream, record_of = events_on_stream(*users), {event["event_id"]: entry for entry, event in entries if event is not None}
    held = []  # per user, the events from the first refused one on: not stored, so that the user's order holds
    for user, clicks in _clicks_per_user(batch, entries, users).items():
        stored = next((n for n, c in enumerate(clicks) if c["event_id"] in refused_ids), len(clicks))
        assert stream.get(user, []) == expected(*clicks[:stored])
        held += [record_of[c["event_id"]] for c in clicks[stored:]]
    assert response == failures(batch, *(entry for entry, event in entries if event is None), *held)
    assert sum(map(len, stream.values())) + len(response["batchItemFailures"]) == len(entries)
