"""The clickstream aggregator against moto DynamoDB: MSK event shapes, one failed item per bad record, one effect per record."""

import base64
import json
import uuid
from collections import Counter

import boto3
import pytest
from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.handlers import kafka_events as kafka
from tests.handlers.kafka_events import click, click_record, failures, record

TABLE_NAME = "clickstream-aggregates"
FAST = settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def aggregator(moto_module, load_function_module):
    boto3.client("dynamodb").create_table(
        TableName=TABLE_NAME,
        AttributeDefinitions=[{"AttributeName": "user_id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "user_id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    moto_module.setenv("AGGREGATES_TABLE", TABLE_NAME)
    moto_module.setenv("POWERTOOLS_SERVICE_NAME", "exercise03-streaming")
    moto_module.setenv("POWERTOOLS_METRICS_NAMESPACE", "Exercise03Streaming")
    return load_function_module("clickstream_aggregator")  # handler.py with its folder importable (aggregates.py)


@pytest.fixture
def writes(aggregator, monkeypatch):
    """Every UpdateItem the handler makes, as (user_id, offsets attribute values) in call order."""
    calls = []
    real_update = aggregator.dynamodb.update_item

    def counting_update(**kwargs):
        calls.append(kwargs["Key"]["user_id"]["S"])
        return real_update(**kwargs)

    monkeypatch.setattr(aggregator.dynamodb, "update_item", counting_update)
    return calls


def new_user():
    return f"u-{uuid.uuid4().hex[:10]}"


def aggregate_of(user_id):
    item = boto3.client("dynamodb").get_item(TableName=TABLE_NAME, Key={"user_id": {"S": user_id}}, ConsistentRead=True).get("Item")
    if item is None:
        return None
    deserialize = TypeDeserializer().deserialize
    return {
        name: (int(value) if name.startswith(("clicks_", "action_", "offset_")) else value) for name, value in ((n, deserialize(v)) for n, v in item.items())
    }


def emitted_metrics(output):
    """Sum of every metric in the EMF lines Powertools printed."""
    totals = Counter()
    for line in output.splitlines():
        if not line.startswith("{") or '"_aws"' not in line:
            continue
        blob = json.loads(line)
        for directive in blob["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                value = blob[metric["Name"]]
                totals[metric["Name"]] += sum(value) if isinstance(value, list) else value
    return totals


def occurred_at(entry):
    return json.loads(base64.b64decode(entry["value"]))["occurred_at"]


def test_a_batch_over_several_partitions_and_topics_is_aggregated_without_failures(aggregator, lambda_context):
    ada, bob, cy = new_user(), new_user(), new_user()
    records = [
        click_record(click(ada, action="view", page="/"), offset=10, partition=0),
        click_record(click(bob, action="click", page="/sale"), offset=7, partition=3),
        click_record(click(ada, action="add_to_cart", page="/cart"), offset=11, partition=0),
        click_record(click(bob, action="purchase", page="/checkout", occurred_at="2025-03-14T09:30:00+00:00"), offset=8, partition=3),
        click_record(click(cy, action="view", page="/help"), offset=4, partition=0, topic="clickstream-replay"),
        click_record(click(ada, action="view", page="/faq"), offset=12, partition=0),
    ]

    response = aggregator.lambda_handler(kafka.event(records), lambda_context)

    assert response == {"batchItemFailures": []}
    assert aggregate_of(ada) == {
        "user_id": ada,
        "clicks_total": 3,
        "action_view": 2,
        "action_add_to_cart": 1,
        "last_page": "/faq",
        "last_seen": occurred_at(records[5]),
        "offset_clickstream_p0": 12,
    }
    assert aggregate_of(bob) == {
        "user_id": bob,
        "clicks_total": 2,
        "action_click": 1,
        "action_purchase": 1,
        "last_page": "/checkout",
        "last_seen": "2025-03-14T09:30:00Z",  # stored with Z
        "offset_clickstream_p3": 8,
    }
    # Each topic's partitions are offset sequences of their own.
    assert aggregate_of(cy)["offset_clickstream-replay_p0"] == 4


def test_each_user_and_partition_of_a_batch_is_one_write(aggregator, writes, lambda_context):
    users = [new_user() for _ in range(3)]
    records = [click_record(click(users[n % 3]), offset=100 + n, partition=n % 3) for n in range(30)]

    assert aggregator.lambda_handler(kafka.event(records), lambda_context) == {"batchItemFailures": []}

    assert sorted(writes) == sorted(users)
    assert [aggregate_of(user)["clicks_total"] for user in users] == [10, 10, 10]


def _bad_records(user_id):
    """Each kind of record the aggregator must reject, with a piece of the reason it must give."""
    return {
        "value not base64": (record(offset=0, key=user_id, raw_value="eyJub3QiOiAiYmFzZTY0Ij8/Pz8!"), "value is not base64"),
        "value not UTF-8": (record(offset=0, key=user_id, value=b"\xff\xfe{}"), "value: Invalid JSON: expected value at line 1 column 1"),
        "value not JSON": (record(offset=0, key=user_id, value="<click user='u-1'/>"), "value: Invalid JSON: expected value at line 1 column 1"),
        "value not an object": (record(offset=0, key=user_id, value='["view"]'), "value: Input should be an object"),
        "unknown action": (click_record(click(user_id, action="scroll"), offset=0), "action: Input should be 'view', 'click', 'add_to_cart' or 'purchase'"),
        "missing field": (click_record(click(user_id, page=None), offset=0), "page: Field required"),
        "naive time": (click_record(click(user_id, occurred_at="2025-03-14T09:00:00"), offset=0), "occurred_at: Input should have timezone info"),
        # The contract's rule: a click's time is in UTC (the producer converts it), so another offset is refused.
        "time not in UTC": (
            click_record(click(user_id, occurred_at="2025-03-14T11:00:00+02:00"), offset=0),
            "occurred_at: Value error, must be a UTC time (Z or +00:00), got offset +02:00",
        ),
        "bad event id": (click_record(click(user_id, event_id="42"), offset=0), "event_id: Input should be a valid UUID"),
        "version as text": (click_record(click(user_id, schema_version="1"), offset=0), "schema_version: Value error, must be a whole number"),
        "newer version": (
            click_record(click(user_id, schema_version=2, action="hover", page=None), offset=0),
            "schema_version: Input should be 1",
        ),
        "key of another user": (click_record(click(user_id), offset=0, key="u-someone-else"), "key 'u-someone-else' is not the event's user_id"),
        "no key": (click_record(click(user_id), offset=0, key=None), "record has no key"),
        "key not base64": (click_record(click(user_id), offset=0, raw_key="dS0x!"), "key is not base64"),
    }


BAD_KINDS = sorted(_bad_records("u-x"))


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_a_bad_record_is_its_own_failed_item_logged_with_its_reason(aggregator, lambda_context, log_records, kind):
    user_id = new_user()
    bad, reason = _bad_records(user_id)[kind]
    bad.update(partition=2, offset=41)
    before = click_record(click(user_id, action="click"), offset=40, partition=2)
    after = click_record(click(user_id, action="purchase", page="/done"), offset=42, partition=2)
    logs = log_records(aggregator)
    batch = kafka.event([before, bad, after])

    response = aggregator.lambda_handler(batch, lambda_context)

    assert response == {"batchItemFailures": [{"itemIdentifier": {"partition": "clickstream-2", "offset": 41}}]}
    assert response == failures(batch, bad)
    [rejected] = [entry for entry in logs if entry.getMessage() == "Rejected record"]
    assert (rejected.topic, rejected.partition, rejected.offset) == ("clickstream", 2, 41)
    assert reason in rejected.reason
    # The good records on either side still count.
    assert aggregate_of(user_id) == {
        "user_id": user_id,
        "clicks_total": 2,
        "action_click": 1,
        "action_purchase": 1,
        "last_page": "/done",
        "last_seen": occurred_at(after),
        "offset_clickstream_p2": 42,
    }


def test_a_newer_schema_version_is_rejected_for_its_version_alone(aggregator, lambda_context, log_records):
    user_id = new_user()
    bad = click_record({"schema_version": 2, "user_id": user_id, "clicks": [{"page": "/"}]}, offset=3)
    logs = log_records(aggregator)

    assert aggregator.lambda_handler(kafka.event([bad]), lambda_context) == failures(kafka.event([bad]), bad)

    [rejected] = [entry for entry in logs if entry.getMessage() == "Rejected record"]
    assert rejected.reason == "schema_version: Input should be 1"


def test_every_kind_of_bad_record_in_one_batch_fails_exactly_those_records(aggregator, lambda_context, capsys):
    user_id = new_user()
    bad = []
    for number, kind in enumerate(BAD_KINDS):
        entry, _ = _bad_records(user_id)[kind]
        entry.update(partition=number % 4, offset=1000 + number)
        bad.append(entry)
    good = [click_record(click(user_id), offset=2000 + n, partition=5) for n in range(3)]
    batch = kafka.event(bad[:7] + good + bad[7:])

    response = aggregator.lambda_handler(batch, lambda_context)

    assert response == failures(batch, *bad)
    assert len(response["batchItemFailures"]) == len(BAD_KINDS)
    assert aggregate_of(user_id)["clicks_total"] == 3
    metrics = emitted_metrics(capsys.readouterr().out)
    assert (metrics["RejectedRecords"], metrics["RecordsAggregated"], metrics["FailedRecords"]) == (len(BAD_KINDS), 3, len(BAD_KINDS))


def test_a_batch_of_only_bad_records_is_answered_not_raised(aggregator, lambda_context):
    bad = [record(offset=n, key="u-1", value="not json") for n in range(3)]
    batch = kafka.event(bad)

    assert aggregator.lambda_handler(batch, lambda_context) == failures(batch, *bad)


def test_a_tombstone_is_skipped_counted_and_logged_and_the_rest_of_the_batch_counts(aggregator, lambda_context, log_records, capsys):
    user_id = new_user()
    before = click_record(click(user_id, action="click"), offset=10, partition=3)
    tombstone = record(offset=11, partition=3, key=user_id)  # a null value: Lambda leaves "value" out
    keyless_tombstone = record(offset=12, partition=3)  # and "key" too when it is null
    after = click_record(click(user_id, action="purchase", page="/done"), offset=13, partition=3)
    assert "value" not in tombstone and not {"key", "value"} & set(keyless_tombstone)
    logs = log_records(aggregator)
    capsys.readouterr()

    assert aggregator.lambda_handler(kafka.event([before, tombstone, keyless_tombstone, after]), lambda_context) == {"batchItemFailures": []}

    item = aggregate_of(user_id)
    assert (item["clicks_total"], item["action_click"], item["action_purchase"], item["last_page"]) == (2, 1, 1, "/done")
    skipped = [entry for entry in logs if entry.getMessage() == "Record skipped: a tombstone (no value) carries no event"]
    assert [(entry.levelname, entry.topic, entry.partition, entry.offset) for entry in skipped] == [
        ("WARNING", "clickstream", 3, 11),
        ("WARNING", "clickstream", 3, 12),
    ]
    assert not [entry for entry in logs if entry.getMessage() == "Rejected record"]
    metrics = emitted_metrics(capsys.readouterr().out)
    assert (metrics["TombstonesSkipped"], metrics["RecordsAggregated"], metrics["RejectedRecords"], metrics["FailedRecords"]) == (2, 2, 0, 0)


def test_a_batch_of_only_tombstones_succeeds_and_counts_them(aggregator, lambda_context, capsys):
    capsys.readouterr()

    assert aggregator.lambda_handler(kafka.event([record(offset=n, key="u-gone") for n in range(3)]), lambda_context) == {"batchItemFailures": []}

    assert aggregate_of("u-gone") is None
    assert emitted_metrics(capsys.readouterr().out)["TombstonesSkipped"] == 3


DEEPLY_NESTED = "[" * 1000 + "]" * 1000


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (DEEPLY_NESTED, "value: Invalid JSON: recursion limit exceeded"),
        ('{"schema_version": 1, "page": ' + DEEPLY_NESTED + "}", "value: Invalid JSON: recursion limit exceeded"),
        ("42", "value: Input should be an object"),
        ("null", "value: Input should be an object"),
        ('"view"', "value: Input should be an object"),
    ],
    ids=["nested arrays", "nested in a field", "number", "null", "string"],
)
def test_a_value_that_is_deeply_nested_or_not_an_object_fails_only_its_record(aggregator, lambda_context, log_records, value, reason):
    user_id = new_user()
    bad = record(offset=1, key=user_id, value=value)
    good = click_record(click(user_id), offset=2)
    logs = log_records(aggregator)
    batch = kafka.event([bad, good])

    assert aggregator.lambda_handler(batch, lambda_context) == failures(batch, bad)

    [rejected] = [entry for entry in logs if entry.getMessage() == "Rejected record"]
    assert rejected.offset == 1 and rejected.reason.startswith(reason)
    assert aggregate_of(user_id)["clicks_total"] == 1


def test_any_exception_while_reading_a_record_is_that_records_failure(aggregator, lambda_context, log_records, monkeypatch, capsys):
    user_id = new_user()
    click_kind = type(aggregator.CLICK)  # the contract's EventKind, which the reader validates the value with
    real_validate = click_kind.model_validate_json

    def validate(kind, text):
        if b'"action": "purchase"' in text:
            raise RecursionError("maximum recursion depth exceeded")
        return real_validate(kind, text)

    monkeypatch.setattr(click_kind, "model_validate_json", validate)
    bad = click_record(click(user_id, action="purchase"), offset=1)
    good = click_record(click(user_id), offset=2)
    logs = log_records(aggregator)
    capsys.readouterr()
    batch = kafka.event([bad, good])

    assert aggregator.lambda_handler(batch, lambda_context) == failures(batch, bad)

    [rejected] = [entry for entry in logs if entry.getMessage() == "Rejected record"]
    assert rejected.reason == "the value cannot be read: RecursionError: maximum recursion depth exceeded"
    assert aggregate_of(user_id)["clicks_total"] == 1
    assert emitted_metrics(capsys.readouterr().out)["RejectedRecords"] == 1


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("clickstream-0:7", r"^not a Kafka event: records\['clickstream-0'\]\[1\] is str, expected a record object$"),
        (None, r"^not a Kafka event: records\['clickstream-0'\]\[1\] is NoneType, expected a record object$"),
        ({"topic": "clickstream", "partition": 0, "value": "e30="}, r"^not a Kafka event: records\['clickstream-0'\]\[1\] has no offset \(an integer\)"),
        ({"topic": "clickstream", "offset": 8, "value": "e30="}, r"^not a Kafka event: records\['clickstream-0'\]\[1\] has no partition \(an integer\)"),
        ({"partition": 0, "offset": 8, "value": "e30="}, r"^not a Kafka event: records\['clickstream-0'\]\[1\] has no topic \(a string\)"),
        ({"topic": "clickstream", "partition": "0", "offset": 8}, r"^not a Kafka event: records\['clickstream-0'\]\[1\] has no partition \(an integer\)"),
    ],
    ids=["text", "null", "no offset", "no partition", "no topic", "partition as text"],
)
def test_fails_when_a_record_cannot_be_named_in_the_response(aggregator, lambda_context, entry, expected):
    batch = kafka.event([click_record(click(new_user()), offset=7)])
    batch["records"]["clickstream-0"].append(entry)

    # Lambda names a failed Kafka record by its topic, partition and offset: without them it cannot be reported, nor retried alone.
    with pytest.raises(ValueError, match=expected):
        aggregator.lambda_handler(batch, lambda_context)


def test_the_same_record_twice_in_a_batch_counts_once(aggregator, lambda_context, capsys):
    user_id = new_user()
    first = click_record(click(user_id, action="purchase"), offset=5)
    batch = kafka.event([first, dict(first), click_record(click(user_id), offset=6)])

    assert aggregator.lambda_handler(batch, lambda_context) == {"batchItemFailures": []}

    assert aggregate_of(user_id)["clicks_total"] == 2
    assert aggregate_of(user_id)["action_purchase"] == 1
    metrics = emitted_metrics(capsys.readouterr().out)
    assert (metrics["RecordsAggregated"], metrics["DuplicateRecordsSkipped"]) == (2, 1)


def test_a_redelivered_batch_changes_nothing(aggregator, lambda_context, capsys):
    users = [new_user(), new_user()]
    records = [click_record(click(users[n % 2], action=kafka.ACTIONS[n % 4]), offset=n, partition=n % 2) for n in range(12)]
    batch = kafka.event(records)

    assert aggregator.lambda_handler(batch, lambda_context) == {"batchItemFailures": []}
    first = [aggregate_of(user) for user in users]
    capsys.readouterr()
    assert aggregator.lambda_handler(json.loads(json.dumps(batch)), lambda_context) == {"batchItemFailures": []}

    assert [aggregate_of(user) for user in users] == first
    assert [item["clicks_total"] for item in first] == [6, 6]
    metrics = emitted_metrics(capsys.readouterr().out)
    assert (metrics["RecordsAggregated"], metrics["DuplicateRecordsSkipped"]) == (0, 12)


def test_a_redelivery_from_an_earlier_offset_adds_only_the_new_records_in_one_more_write(aggregator, writes, lambda_context, capsys):
    user_id = new_user()
    log = [click_record(click(user_id, page=f"/p{n}"), offset=n, partition=1) for n in range(8)]

    assert aggregator.lambda_handler(kafka.event(log[:5]), lambda_context) == {"batchItemFailures": []}
    capsys.readouterr()
    # The mapping resumes from offset 2: 2, 3 and 4 again, then 5 to 7 for the first time.
    assert aggregator.lambda_handler(kafka.event(log[2:]), lambda_context) == {"batchItemFailures": []}

    assert writes == [user_id, user_id, user_id]  # the first batch, then a condition miss and the rest
    item = aggregate_of(user_id)
    assert (item["clicks_total"], item["offset_clickstream_p1"], item["last_page"]) == (8, 7, "/p7")
    metrics = emitted_metrics(capsys.readouterr().out)
    assert (metrics["RecordsAggregated"], metrics["DuplicateRecordsSkipped"]) == (3, 3)


def test_an_older_record_alone_is_a_duplicate(aggregator, lambda_context):
    user_id = new_user()
    log = [click_record(click(user_id), offset=n) for n in range(3)]
    aggregator.lambda_handler(kafka.event(log), lambda_context)

    assert aggregator.lambda_handler(kafka.event([log[1]]), lambda_context) == {"batchItemFailures": []}

    assert aggregate_of(user_id)["clicks_total"] == 3


def test_after_a_bad_record_the_redelivered_rest_counts_once(aggregator, lambda_context):
    user_id = new_user()
    good_before = click_record(click(user_id), offset=20)
    bad = click_record(click(user_id, action="hover"), offset=21)
    good_after = click_record(click(user_id, action="click"), offset=22)
    batch = kafka.event([good_before, bad, good_after])
    assert aggregator.lambda_handler(batch, lambda_context) == failures(batch, bad)

    # Lambda retries from the failed record on: the bad one fails again, the one after it is not counted twice.
    retry = kafka.event([bad, good_after])
    assert aggregator.lambda_handler(retry, lambda_context) == failures(retry, bad)

    item = aggregate_of(user_id)
    assert (item["clicks_total"], item["action_view"], item["action_click"]) == (2, 1, 1)


def _throttled(operation="UpdateItem"):
    return ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "Rate of requests exceeds the allowed throughput."}}, operation)


def test_a_failed_group_write_fails_only_that_groups_records_and_a_redelivery_applies_them_once(aggregator, lambda_context, monkeypatch, log_records):
    unlucky, lucky = new_user(), new_user()
    records = [
        click_record(click(lucky), offset=0, partition=4),
        click_record(click(unlucky, action="add_to_cart"), offset=1, partition=4),
        click_record(click(lucky), offset=2, partition=4),
        click_record(click(unlucky, action="purchase"), offset=3, partition=4),
    ]
    real_update = aggregator.dynamodb.update_item
    throttled = []

    def flaky_update(**kwargs):
        if kwargs["Key"]["user_id"]["S"] == unlucky and not throttled:
            throttled.append(kwargs["Key"])
            raise _throttled()
        return real_update(**kwargs)

    monkeypatch.setattr(aggregator.dynamodb, "update_item", flaky_update)
    logs = log_records(aggregator)
    batch = kafka.event(records)

    assert aggregator.lambda_handler(batch, lambda_context) == failures(batch, records[1], records[3])
    assert aggregate_of(unlucky) is None
    [failed] = [entry for entry in logs if entry.getMessage().startswith("Group write failed")]
    assert (failed.user_id, failed.partition, failed.offsets) == (unlucky, 4, [1, 3])
    assert "ProvisionedThroughputExceededException" in failed.reason

    # Lambda retries from the lowest failed offset, so the lucky record at offset 2 comes again too.
    retry = kafka.event(records[1:])
    assert aggregator.lambda_handler(retry, lambda_context) == {"batchItemFailures": []}
    # And a second redelivery of everything changes nothing.
    assert aggregator.lambda_handler(kafka.event(records), lambda_context) == {"batchItemFailures": []}

    assert aggregate_of(unlucky)["clicks_total"] == 2
    assert (aggregate_of(unlucky)["action_add_to_cart"], aggregate_of(unlucky)["action_purchase"]) == (1, 1)
    assert aggregate_of(lucky)["clicks_total"] == 2


def test_a_condition_that_keeps_failing_fails_the_group_instead_of_looping(aggregator, lambda_context, monkeypatch):
    user_id = new_user()
    records = [click_record(click(user_id), offset=n) for n in range(5, 11)]
    moving = iter(range(5, 5 + aggregator.aggregates.MAX_GROUP_ATTEMPTS))

    def another_writer_ahead(**kwargs):
        # Each attempt finds one more record of the group applied: someone else keeps writing this partition.
        stored = next(moving)
        raise ClientError(
            {
                "Error": {"Code": "ConditionalCheckFailedException", "Message": "The conditional request failed"},
                "Item": {"user_id": {"S": user_id}, "offset_clickstream_p0": {"N": str(stored)}},
            },
            "UpdateItem",
        )

    monkeypatch.setattr(aggregator.dynamodb, "update_item", another_writer_ahead)
    batch = kafka.event(records)

    assert aggregator.lambda_handler(batch, lambda_context) == failures(batch, *records)


def test_an_event_that_is_not_a_kafka_event_is_an_error(aggregator, lambda_context):
    with pytest.raises(ValueError, match="not a Kafka event"):
        aggregator.lambda_handler({"Records": [{"body": "{}"}]}, lambda_context)
    with pytest.raises(ValueError, match="not a Kafka event"):
        aggregator.lambda_handler(kafka.event([]), lambda_context)


def test_fails_when_the_table_is_not_configured(moto_module, load_function_module, monkeypatch):
    monkeypatch.delenv("AGGREGATES_TABLE", raising=False)
    with pytest.raises(RuntimeError, match="AGGREGATES_TABLE is required"):
        load_function_module("clickstream_aggregator")


# --- property: whatever the batching and the redeliveries, each good record counts once ----------


@st.composite
def deliveries(draw):
    """A log over a few partitions (good and bad records) and the batches the mapping could deliver it in.

    Per partition the mapping delivers contiguous ranges in order; a range may start at or before the
    point reached so far (a redelivery), never after it, and in the end the whole log has been delivered.
    """
    run = uuid.uuid4().hex[:8]
    users = [f"u-{run}-{n}" for n in range(draw(st.integers(1, 4)))]
    partitions = draw(st.integers(1, 3))
    logs = {partition: [] for partition in range(partitions)}
    for _ in range(draw(st.integers(1, 30))):
        user = draw(st.sampled_from(users))
        partition = users.index(user) % partitions  # a key always lands on the same partition
        offset = len(logs[partition])
        if draw(st.integers(0, 9)) == 0:
            entry = record(offset=offset, partition=partition, key=user, value="{broken")
        else:
            entry = click_record(click(user, action=draw(st.sampled_from(kafka.ACTIONS))), offset=offset, partition=partition)
        logs[partition].append(entry)
    reached = dict.fromkeys(logs, 0)
    batches = []
    for _ in range(draw(st.integers(1, 6))):
        batch = []
        for partition, log in logs.items():
            start = draw(st.integers(0, reached[partition]))
            end = draw(st.integers(reached[partition], len(log)))
            batch.extend(log[start:end])
            reached[partition] = max(reached[partition], end)
        batches.append(batch)
    batches.append([entry for partition, log in logs.items() for entry in log[reached[partition] :]])
    return users, logs, [batch for batch in batches if batch]


@FAST
@given(plan=deliveries())
def test_counts_equal_the_distinct_good_offsets_whatever_the_redeliveries(aggregator, lambda_context, plan):
    users, logs, batches = plan
    for batch in batches:
        aggregator.lambda_handler(kafka.event(batch), lambda_context)

    for user in users:
        good = [
            json.loads(base64.b64decode(entry["value"]))
            for log in logs.values()
            for entry in log
            if base64.b64decode(entry["key"]).decode() == user and entry["value"] != base64.b64encode(b"{broken").decode()
        ]
        item = aggregate_of(user)
        if not good:
            assert item is None
            continue
        expected = {f"action_{action}": count for action, count in Counter(event["action"] for event in good).items()}
        assert item["clicks_total"] == len(good)
        assert {name: value for name, value in item.items() if name.startswith("action_")} == expected
        assert item["last_seen"] == good[-1]["occurred_at"]
