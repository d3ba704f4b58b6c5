"""The order producer against moto SNS, with SQS queues subscribed to see what arrives."""

import dataclasses
import json
import re
import uuid
from collections import Counter
from dataclasses import dataclass

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from tests.handlers.record_shapes import nested

BASE_DELAY = 0.05


@dataclass
class Topology:
    topic_arn: str
    fifo_topic_arn: str
    all_events_url: str
    placed_only_url: str
    ledger_url: str


@pytest.fixture
def topology(handler_env):
    """Both topics, as the blueprint wires them: raw delivery, one queue filtered on event_type."""
    with mock_aws():
        sns, sqs = boto3.client("sns"), boto3.client("sqs")
        topic_arn = sns.create_topic(Name="orders")["TopicArn"]
        fifo_topic_arn = sns.create_topic(Name="orders.fifo", Attributes={"FifoTopic": "true"})["TopicArn"]

        def subscribed_queue(name, topic, **attributes):
            queue_attributes = {"FifoQueue": "true"} if name.endswith(".fifo") else {}
            url = sqs.create_queue(QueueName=name, Attributes=queue_attributes)["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true", **attributes})
            return url

        yield Topology(
            topic_arn=topic_arn,
            fifo_topic_arn=fifo_topic_arn,
            all_events_url=subscribed_queue("audit", topic_arn),
            placed_only_url=subscribed_queue("billing", topic_arn, FilterPolicy=json.dumps({"event_type": ["OrderPlaced"]})),
            ledger_url=subscribed_queue("ledger.fifo", fifo_topic_arn),
        )


@pytest.fixture
def load_producer(topology, load_handler, monkeypatch):
    def load(*, fifo=True):
        monkeypatch.setenv("TOPIC_ARN", topology.topic_arn)
        if fifo:
            monkeypatch.setenv("FIFO_TOPIC_ARN", topology.fifo_topic_arn)
        else:
            monkeypatch.delenv("FIFO_TOPIC_ARN", raising=False)
        monkeypatch.setenv("PUBLISH_RETRY_BASE_DELAY_SECONDS", str(BASE_DELAY))
        module = load_handler("order_producer")
        module.pauses = []
        for topic in (module.standard_topic, module.fifo_topic):
            if topic is not None:  # the publishers pause between retry rounds through their Retry
                topic.retry = dataclasses.replace(topic.retry, sleep=module.pauses.append)
        module.calls = []

        def count(params, **_):
            module.calls.append((params["TopicArn"], [entry["Id"] for entry in params["PublishBatchRequestEntries"]]))

        module.sns.meta.events.register("before-parameter-build.sns.PublishBatch", count)
        return module

    return load


@pytest.fixture
def producer(load_producer):
    return load_producer()


def calls_to(module, topic_arn):
    return [ids for topic, ids in module.calls if topic == topic_arn]


def drain(queue_url):
    """Every message on the queue, in the order SQS hands them out."""
    sqs = boto3.client("sqs")
    messages = []
    while True:
        batch = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, AttributeNames=["All"], MessageAttributeNames=["All"]).get("Messages", [])
        if not batch:
            return messages
        messages.extend(batch)
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)],
        )


def new_request_order(index, **overrides):
    """An order as a caller sends it: no event_id, no occurred_at."""
    order = {
        "event_type": "OrderPlaced" if index % 3 else "OrderCancelled",
        "version": 1,
        "order_id": f"o-{index:04d}",
        "customer_id": f"c-{index:04d}",
        "total": round(10 + index * 7.35, 2),
        "currency": "EUR",
    }
    order.update(overrides)
    return order


def reject_entries(module, monkeypatch, decide):
    """Make SNS report some entries as failed: ``decide(call_number, topic, entry)`` returns
    ``(code, sender_fault)`` for an entry to fail, or None to publish it for real."""
    real_publish_batch = module.sns.publish_batch
    requests = []

    def publish_batch(**params):
        entries = params["PublishBatchRequestEntries"]
        requests.append((params["TopicArn"], [entry["Id"] for entry in entries]))
        verdicts = {entry["Id"]: decide(len(requests), params["TopicArn"], entry) for entry in entries}
        passing = [entry for entry in entries if verdicts[entry["Id"]] is None]
        response = {"Successful": [], "Failed": []}
        if passing:
            response = real_publish_batch(TopicArn=params["TopicArn"], PublishBatchRequestEntries=passing)
        response.setdefault("Failed", [])
        response["Failed"] += [
            {"Id": entry_id, "Code": verdict[0], "Message": "injected", "SenderFault": verdict[1]}
            for entry_id, verdict in verdicts.items()
            if verdict is not None
        ]
        return response

    monkeypatch.setattr(module.sns, "publish_batch", publish_batch)
    return requests


def test_25_orders_take_3_publish_batch_calls_per_topic(producer, topology, lambda_context):
    result = producer.lambda_handler({"orders": [new_request_order(i) for i in range(25)]}, lambda_context)

    assert result == {"published": 25, "fifo_published": 25}
    assert [len(ids) for ids in calls_to(producer, topology.topic_arn)] == [10, 10, 5]
    assert [len(ids) for ids in calls_to(producer, topology.fifo_topic_arn)] == [10, 10, 5]
    assert len(producer.calls) == 6


def test_every_event_arrives_once_with_its_event_type_attribute(producer, topology, lambda_context):
    orders = [new_request_order(i) for i in range(25)]

    producer.lambda_handler({"orders": orders}, lambda_context)

    arrived = drain(topology.all_events_url)
    bodies = [json.loads(message["Body"]) for message in arrived]
    assert sorted(body["order_id"] for body in bodies) == sorted(order["order_id"] for order in orders)
    for message, body in zip(arrived, bodies, strict=True):
        assert message["MessageAttributes"]["event_type"] == {"DataType": "String", "StringValue": body["event_type"]}
        assert uuid.UUID(body["event_id"]).version == 5
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$", body["occurred_at"])  # now, in UTC, as pydantic writes it
    ledger = [json.loads(message["Body"]) for message in drain(topology.ledger_url)]
    assert sorted(event["event_id"] for event in ledger) == sorted(body["event_id"] for body in bodies)


def test_generated_event_ids_repeat_on_a_retry_of_the_same_invocation(producer, lambda_context, monkeypatch):
    """Lambda retries an asynchronous invocation with the same request id: the ids repeat, so the FIFO topic deduplicates."""
    orders = [new_request_order(i) for i in range(3)]
    first = [e.event_id for e in producer.validate_orders({"orders": orders}, "request-1")]
    retry = [e.event_id for e in producer.validate_orders({"orders": orders}, "request-1")]
    other = [e.event_id for e in producer.validate_orders({"orders": orders}, "request-2")]
    assert first == retry
    assert len(set(first)) == 3 and not set(first) & set(other)
    given = producer.validate_orders({"orders": [dict(orders[0], event_id=str(uuid.uuid4()))]}, "request-1")
    assert given[0].event_id not in first


def test_the_event_type_attribute_drives_the_subscription_filter(producer, topology, lambda_context):
    orders = [new_request_order(i) for i in range(12)]

    producer.lambda_handler({"orders": orders}, lambda_context)

    placed = [json.loads(message["Body"]) for message in drain(topology.placed_only_url)]
    expected = sorted(o["order_id"] for o in orders if o["event_type"] == "OrderPlaced")
    assert sorted(event["order_id"] for event in placed) == expected


def test_the_message_is_the_event_with_a_numeric_total(producer, topology, lambda_context):
    order = new_request_order(1, total=1234.5, event_id="3f0c7a4e-51a7-4a43-8f39-2b0f5f8b9d10", occurred_at="2025-06-01T12:00:00+02:00")

    producer.lambda_handler({"orders": [order]}, lambda_context)

    [message] = drain(topology.all_events_url)
    assert json.loads(message["Body"]) == {
        "event_id": "3f0c7a4e-51a7-4a43-8f39-2b0f5f8b9d10",
        "event_type": "OrderPlaced",
        "version": 1,
        "order_id": "o-0001",
        "customer_id": "c-0001",
        "total": 1234.5,
        "currency": "EUR",
        "occurred_at": "2025-06-01T12:00:00+02:00",
    }


def test_the_fifo_entries_are_grouped_by_customer_and_deduplicated_by_event_id(producer, topology, lambda_context):
    sent = []

    def keep_fifo_entries(params, **_):
        if params["TopicArn"] == topology.fifo_topic_arn:
            sent.extend(params["PublishBatchRequestEntries"])

    producer.sns.meta.events.register("before-parameter-build.sns.PublishBatch", keep_fifo_entries)

    producer.lambda_handler({"orders": [new_request_order(i) for i in range(3)]}, lambda_context)

    assert len(sent) == 3
    for entry in sent:
        body = json.loads(entry["Message"])
        assert entry["MessageGroupId"] == body["customer_id"]
        assert entry["MessageDeduplicationId"] == entry["Id"] == body["event_id"]
    assert [m["Attributes"]["MessageGroupId"] for m in drain(topology.ledger_url)] == ["c-0000", "c-0001", "c-0002"]


def test_a_fifo_call_carries_at_most_one_event_per_customer(producer, topology, lambda_context):
    customers = ("c-a", "c-b", "c-a", "c-a", "c-b", "c-c")
    orders = [new_request_order(i, customer_id=customers[i % 6]) for i in range(12)]

    result = producer.lambda_handler({"orders": orders}, lambda_context)

    assert result == {"published": 12, "fifo_published": 12}
    assert len(calls_to(producer, topology.topic_arn)) == 2
    arrived = [json.loads(message["Body"]) for message in drain(topology.ledger_url)]
    customer_of = {event["event_id"]: event["customer_id"] for event in arrived}
    fifo_calls = calls_to(producer, topology.fifo_topic_arn)
    assert len(fifo_calls) == 6  # c-a has six events, so six calls at the least
    for ids in fifo_calls:
        assert len({customer_of[i] for i in ids}) == len(ids)
    assert sorted(i for ids in fifo_calls for i in ids) == sorted(customer_of)


def test_fifo_order_per_customer_survives_the_round_trip(producer, topology, lambda_context):
    orders = [new_request_order(i, customer_id=("c-a", "c-b")[i % 2 if i < 6 else 0]) for i in range(14)]

    producer.lambda_handler({"orders": orders}, lambda_context)

    arrived = [json.loads(message["Body"]) for message in drain(topology.ledger_url)]
    for customer in ("c-a", "c-b"):
        assert [e["order_id"] for e in arrived if e["customer_id"] == customer] == [o["order_id"] for o in orders if o["customer_id"] == customer]


@pytest.mark.parametrize(
    ("bad_index", "change", "reason"),
    [
        (2, {"total": -1}, r"orders\[2\]: total: .*greater than or equal to 0"),
        (0, {"currency": "eur"}, r"orders\[0\]: currency: "),
        (24, {"event_type": "OrderShipped"}, r"orders\[24\]: event_type: Input should be 'OrderPlaced' or 'OrderCancelled'$"),
        (7, {"version": 2}, r"orders\[7\]: version: Input should be 1$"),
        (3, {"total": "12.00"}, r"orders\[3\]: total: .*must be a number"),
        (5, {"coupon": "FREE"}, r"orders\[5\]: coupon: Extra inputs are not permitted"),
        (9, {"customer_id": "c 9"}, r"orders\[9\]: customer_id: "),
        (11, {"occurred_at": "2025-01-01T00:00:00"}, r"orders\[11\]: occurred_at: .*timezone"),
    ],
)
def test_an_invalid_order_names_its_index_and_nothing_is_published(producer, topology, lambda_context, bad_index, change, reason):
    orders = [new_request_order(i) for i in range(25)]
    orders[bad_index].update(change)

    with pytest.raises(ValueError, match=reason):
        producer.lambda_handler({"orders": orders}, lambda_context)

    assert producer.calls == []
    assert drain(topology.all_events_url) == drain(topology.ledger_url) == []


def test_a_missing_field_and_a_repeated_event_id_are_both_reported(producer, topology, lambda_context):
    orders = [new_request_order(i, event_id="5a1d8f0e-8c77-4c1b-9d7e-0f2b3c4d5e6f") for i in range(3)]
    del orders[1]["order_id"]

    with pytest.raises(ValueError) as raised:
        producer.lambda_handler({"orders": orders}, lambda_context)

    assert "orders[1]: order_id: Field required" in str(raised.value)
    assert "orders[2]: event_id 5a1d8f0e-8c77-4c1b-9d7e-0f2b3c4d5e6f repeats orders[0]" in str(raised.value)
    assert producer.calls == []


@pytest.mark.parametrize("event", [{}, {"orders": "o-1"}, {"order": []}, []])
def test_an_event_without_an_orders_list_is_refused(producer, lambda_context, event):
    with pytest.raises(ValueError, match='"orders" list'):
        producer.lambda_handler(event, lambda_context)
    assert producer.calls == []


def test_only_the_entries_sns_failed_are_retried(producer, topology, lambda_context, monkeypatch):
    orders = [new_request_order(i) for i in range(25)]
    first_call_failures = {}

    def decide(call_number, topic, entry):
        if call_number == 1:
            body = json.loads(entry["Message"])
            if body["order_id"] in ("o-0003", "o-0008"):
                first_call_failures[entry["Id"]] = body["order_id"]
                return ("InternalError", False)
        return None

    requests = reject_entries(producer, monkeypatch, decide)

    result = producer.lambda_handler({"orders": orders}, lambda_context)

    assert result == {"published": 25, "fifo_published": 25}
    standard = [ids for topic, ids in requests if topic == topology.topic_arn]
    assert [len(ids) for ids in standard] == [10, 10, 5, 2]  # the two failed entries, regrouped into one call after the first round
    assert set(standard[3]) == set(first_call_failures)
    sent = Counter(i for ids in standard for i in ids)
    assert {i for i, n in sent.items() if n > 1} == set(first_call_failures)
    assert len(producer.pauses) == 1 and 0 <= producer.pauses[0] <= BASE_DELAY
    arrived = [json.loads(m["Body"])["order_id"] for m in drain(topology.all_events_url)]
    assert sorted(arrived) == sorted(o["order_id"] for o in orders)


def test_a_persistent_failure_raises_with_the_ids_and_claims_nothing(producer, topology, lambda_context, monkeypatch, capsys):
    orders = [new_request_order(i) for i in range(25)]
    doomed = {}

    def decide(call_number, topic, entry):
        order_id = json.loads(entry["Message"])["order_id"]
        if topic == topology.topic_arn and order_id in ("o-0004", "o-0017"):
            doomed[entry["Id"]] = order_id
            return ("Throttled", False)
        return None

    requests = reject_entries(producer, monkeypatch, decide)
    capsys.readouterr()

    with pytest.raises(producer.PublishError) as raised:
        producer.lambda_handler({"orders": orders}, lambda_context)

    assert set(raised.value.failed) == {topology.topic_arn}
    assert set(raised.value.failed[topology.topic_arn]) == set(doomed)
    for event_id in doomed:
        assert event_id in str(raised.value)
        assert sum(ids.count(event_id) for topic, ids in requests if topic == topology.topic_arn) == 3
    assert raised.value.published == {"published": 23, "fifo_published": 25}
    assert len(producer.pauses) == 2  # two retry rounds, each one call carrying both failing entries
    arrived = [json.loads(m["Body"])["order_id"] for m in drain(topology.all_events_url)]
    assert sorted(arrived) == sorted(o["order_id"] for o in orders if o["order_id"] not in doomed.values())
    emitted = metric_values(capsys.readouterr().out)
    assert emitted["OrderEventsPublished"] == 23
    assert emitted["OrderEventsFailedToPublish"] == 2


def test_a_sender_fault_is_not_retried(producer, topology, lambda_context, monkeypatch):
    def decide(call_number, topic, entry):
        return ("InvalidParameter", True) if json.loads(entry["Message"])["order_id"] == "o-0001" else None

    requests = reject_entries(producer, monkeypatch, decide)

    with pytest.raises(producer.PublishError, match="InvalidParameter: injected"):
        producer.lambda_handler({"orders": [new_request_order(i) for i in range(3)]}, lambda_context)

    assert len(requests) == 2  # one call per topic, no retry
    assert producer.pauses == []


def test_no_retry_round_starts_past_the_time_the_invocation_has_left(producer, topology, lambda_context, monkeypatch):
    def decide(call_number, topic, entry):
        return ("InternalError", False) if json.loads(entry["Message"])["order_id"] == "o-0001" else None

    reject_entries(producer, monkeypatch, decide)
    short = dataclasses.replace(lambda_context, timeout_ms=1_500)  # less than the time kept back to report

    with pytest.raises(producer.PublishError) as raised:
        producer.lambda_handler({"orders": [new_request_order(i) for i in range(3)]}, short)

    event_id = str(producer.default_event_id(short.aws_request_id, 1))
    reason = "InternalError: injected (not retried: no time left for another round)"
    assert raised.value.failed == {topology.topic_arn: {event_id: reason}, topology.fifo_topic_arn: {event_id: reason}}
    assert producer.pauses == []
    assert raised.value.published == {"published": 2, "fifo_published": 2}


def test_a_lost_fifo_event_holds_back_the_rest_of_its_group(producer, topology, lambda_context, monkeypatch):
    orders = [new_request_order(i, customer_id=("c-a", "c-b")[i % 2]) for i in range(6)]

    def decide(call_number, topic, entry):
        if topic == topology.fifo_topic_arn and json.loads(entry["Message"])["order_id"] == "o-0002":
            return ("InternalError", False)
        return None

    reject_entries(producer, monkeypatch, decide)

    with pytest.raises(producer.PublishError) as raised:
        producer.lambda_handler({"orders": orders}, lambda_context)

    reasons = raised.value.failed[topology.fifo_topic_arn]
    assert len(reasons) == 2  # o-0002 and the later c-a event o-0004
    assert sum(reason == "GroupStopped: an earlier message of its group was not sent" for reason in reasons.values()) == 1
    arrived = [json.loads(m["Body"])["order_id"] for m in drain(topology.ledger_url)]
    assert sorted(arrived) == ["o-0000", "o-0001", "o-0003", "o-0005"]
    assert len(drain(topology.all_events_url)) == 6


def test_a_failing_call_stops_publishing_to_that_topic(producer, topology, lambda_context, monkeypatch):
    def refuse(**params):
        raise ClientError({"Error": {"Code": "AuthorizationError", "Message": "denied"}}, "PublishBatch")

    monkeypatch.setattr(producer.sns, "publish_batch", refuse)

    with pytest.raises(producer.PublishError) as raised:
        producer.lambda_handler({"orders": [new_request_order(i) for i in range(15)]}, lambda_context)

    for reasons in raised.value.failed.values():
        assert len(reasons) == 15
        assert Counter(reasons.values()) == {
            "AuthorizationError: denied": 10,
            "NotSent: publishing stopped after AuthorizationError: denied": 5,
        }


def test_without_a_fifo_topic_only_the_standard_topic_is_used(load_producer, topology, lambda_context):
    producer = load_producer(fifo=False)

    result = producer.lambda_handler({"orders": [new_request_order(i) for i in range(11)]}, lambda_context)

    assert result == {"published": 11, "fifo_published": 0}
    assert {topic for topic, _ in producer.calls} == {topology.topic_arn}
    assert drain(topology.ledger_url) == []


def test_the_retry_comes_from_the_environment_and_both_topics_share_it(producer):
    assert producer.standard_topic.fifo is False and producer.fifo_topic.fifo is True
    for topic in (producer.standard_topic, producer.fifo_topic):
        assert (topic.retry.max_attempts, topic.retry.base_delay_seconds, topic.retry.max_delay_seconds) == (3, BASE_DELAY, 5.0)


def metric_values(stdout):
    values = {}
    for line in stdout.splitlines():
        if '"_aws"' not in line:
            continue
        blob = json.loads(line)
        for definition in blob["_aws"]["CloudWatchMetrics"][0]["Metrics"]:
            value = blob[definition["Name"]]
            values[definition["Name"]] = values.get(definition["Name"], 0) + (sum(value) if isinstance(value, list) else value)
    return values


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (nested(990), r'"orders" list'),
        ({"orders": nested(990)}, r"^1 invalid order\(s\), nothing published: orders\[0\]: order: Input should be a valid dictionary"),
        ({"orders": [new_request_order(0, total=nested(990))]}, r"orders\[0\]: total: "),
        ({"orders": [new_request_order(0, notes=nested(990))]}, r"orders\[0\]: notes: Extra inputs are not permitted"),
    ],
    ids=["the request", "the orders", "a field", "an unknown field"],
)
def test_a_deeply_nested_request_is_refused_and_nothing_is_published(producer, lambda_context, event, reason):
    # A direct invocation's payload is JSON the runtime has decoded already: as deep as its decoder allows.
    with pytest.raises(ValueError, match=reason):
        producer.lambda_handler(event, lambda_context)
    assert producer.calls == []
