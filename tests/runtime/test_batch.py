"""BatchConsumer and the readers: parse, effect, report, with the events Lambda sends."""

from __future__ import annotations

import base64
import json
import logging
import uuid
from collections import Counter

import pytest
from aws_lambda_powertools import Logger, Metrics
from pydantic import BaseModel, ConfigDict, Field

from messaging_runtime import readers
from messaging_runtime.batch import DYNAMODB_STREAMS, KAFKA, SQS, BatchConsumer
from messaging_runtime.rejection import Rejected

DEEP = "[" * 1000 + "]" * 1000


class Order(BaseModel):
    model_config = ConfigDict(extra="ignore")
    order_id: str = Field(pattern=r"^o-\S+$")
    total: int = Field(ge=0)


class Context:
    function_name = "under-test"
    memory_limit_in_mb = 128
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:under-test"
    aws_request_id = "req-1"


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self, level: int | None = None) -> list[str]:
        return [r.getMessage() for r in self.records if level is None or r.levelno == level]


@pytest.fixture
def tools(monkeypatch):
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Test")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "test")
    logger = Logger(service=f"test-{uuid.uuid4().hex[:6]}")
    captured = Captured()
    logger.addHandler(captured)
    metrics = Metrics(namespace="Test", service="test")
    yield logger, metrics, captured
    metrics.clear_metrics()


def emitted(output: str) -> tuple[Counter, int]:
    """Metric totals in the EMF lines, and how many metric datapoints were written (one per add_metric)."""
    totals, datapoints = Counter(), 0
    for line in output.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            blob = json.loads(line)
            for directive in blob["_aws"]["CloudWatchMetrics"]:
                for metric in directive["Metrics"]:
                    value = blob[metric["Name"]]
                    values = value if isinstance(value, list) else [value]
                    totals[metric["Name"]] += sum(values)
                    datapoints += len(values)
    return totals, datapoints


def sqs_record(body, message_id=None, group=None) -> dict:
    record = {
        "messageId": message_id or str(uuid.uuid4()),
        "receiptHandle": "r",
        "body": body,
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1", "SenderId": "x", "ApproximateFirstReceiveTimestamp": "1"},
        "messageAttributes": {},
        "md5OfBody": "x",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:orders" + (".fifo" if group else ""),
        "awsRegion": "us-east-1",
    }
    if group:
        record["attributes"]["MessageGroupId"] = group
    return record


def failed(*records: dict) -> dict:
    return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in records]}


def _run(consumer, event, metrics, capsys, **how):
    capsys.readouterr()

    @metrics.log_metrics
    def handler(event, context):
        return consumer.process(event, context, **how)

    response = handler(event, Context())
    return response, emitted(capsys.readouterr().out)


# --- SQS ------------------------------------------------------------------------------------------


def test_good_records_reach_the_effect_and_bad_ones_fail_with_their_reason(tools, capsys):
    logger, metrics, captured = tools
    consumer = BatchConsumer(SQS, read=readers.sqs_json(Order), logger=logger, metrics=metrics)
    seen = []

    def effect(order, record):
        seen.append(order.order_id)
        consumer.count("OrdersCharged")

    good = [sqs_record(json.dumps({"order_id": f"o-{n}", "total": n})) for n in range(3)]
    bad_field, deep, not_json, no_body = (
        sqs_record(json.dumps({"order_id": "x", "total": 1})),
        sqs_record(DEEP),
        sqs_record("{"),
        sqs_record("x"),
    )
    del no_body["body"]
    records = [good[0], bad_field, good[1], deep, not_json, no_body, good[2]]

    response, (totals, datapoints) = _run(consumer, {"Records": records}, metrics, capsys, effect=effect)

    assert response == failed(bad_field, deep, not_json, no_body)
    assert seen == ["o-0", "o-1", "o-2"]
    assert (totals["OrdersCharged"], totals["RejectedRecords"], totals["FailedRecords"]) == (3, 4, 4)
    reasons = {r.message_id: r.reason for r in captured.records if r.getMessage() == "Rejected record"}
    assert reasons[bad_field["messageId"]].startswith("order_id: String should match pattern")
    assert reasons[no_body["messageId"]] == "the record has no body"
    assert len(reasons) == 4


def test_metrics_and_logs_are_per_batch_not_per_record(tools, capsys):
    logger, metrics, captured = tools
    consumer = BatchConsumer(SQS, read=readers.sqs_json(Order), logger=logger, metrics=metrics)
    records = [sqs_record(json.dumps({"order_id": f"o-{n}", "total": n})) for n in range(50)]

    _, (totals, datapoints) = _run(consumer, {"Records": records}, metrics, capsys, effect=lambda o, r: consumer.count("OrdersCharged"))

    assert totals["OrdersCharged"] == 50
    assert datapoints == 3  # OrdersCharged, FailedRecords, RejectedRecords: once each for the batch
    assert captured.messages(logging.INFO) == ["Batch processed"]


def test_an_effect_that_raises_fails_its_record_and_is_logged_with_the_error(tools, capsys):
    logger, metrics, captured = tools
    consumer = BatchConsumer(SQS, read=readers.sqs_json(Order), logger=logger, metrics=metrics)
    records = [sqs_record(json.dumps({"order_id": f"o-{n}", "total": n})) for n in range(3)]

    def effect(order, record):
        if order.order_id == "o-1":
            raise ConnectionError("table unreachable")

    response, (totals, _) = _run(consumer, {"Records": records}, metrics, capsys, effect=effect)

    assert response == failed(records[1])
    (failure,) = [r for r in captured.records if r.getMessage() == "Record failed"]
    assert failure.message_id == records[1]["messageId"] and failure.exc_info[0] is ConnectionError
    assert (totals["FailedRecords"], totals["RejectedRecords"]) == (1, 0)


def test_a_fifo_group_stops_at_its_first_failure_and_other_groups_go_on(tools, capsys):
    logger, metrics, _ = tools
    consumer = BatchConsumer(SQS, read=readers.sqs_json(Order), logger=logger, metrics=metrics, fifo=True)
    a1, a2, b1 = (
        sqs_record("{", group="a"),
        sqs_record(json.dumps({"order_id": "o-a2", "total": 1}), group="a"),
        sqs_record(json.dumps({"order_id": "o-b1", "total": 1}), group="b"),
    )
    seen = []

    response, _ = _run(consumer, {"Records": [a1, a2, b1]}, metrics, capsys, effect=lambda o, r: seen.append(o.order_id))

    assert response == failed(a1, a2)
    assert seen == ["o-b1"]


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({}, 'not an SQS event: expected "Records", a list of records'),
        ({"Records": ["x"]}, r"not an SQS event: Records\[0\] is str, expected a record object"),
        ({"Records": [{"body": "{}"}]}, r"Records\[0\] has no messageId, which names a record in the partial batch response"),
    ],
)
def test_fails_when_an_sqs_record_cannot_be_named(tools, event, message):
    logger, metrics, _ = tools
    with pytest.raises(ValueError, match=message):
        BatchConsumer(SQS, read=readers.sqs_json(Order), logger=logger, metrics=metrics).process(event, Context(), effect=lambda o, r: None)


def test_an_eventbridge_event_in_sqs_is_read_by_its_detail(tools, capsys):
    logger, metrics, captured = tools
    read = readers.eventbridge_in_sqs(Order, detail_types={"OrderPlaced"}, sources={"blueprints.orders"})
    consumer = BatchConsumer(SQS, read=read, logger=logger, metrics=metrics)

    def event(detail, detail_type="OrderPlaced", source="blueprints.orders"):
        return sqs_record(json.dumps({"version": "0", "id": str(uuid.uuid4()), "detail-type": detail_type, "source": source, "detail": detail}))

    good, wrong_type, no_detail = event({"order_id": "o-1", "total": 1}), event({"order_id": "o-1", "total": 1}, "OrderShipped"), sqs_record("[]")
    seen = []
    response, _ = _run(consumer, {"Records": [good, wrong_type, no_detail]}, metrics, capsys, effect=lambda o, r: seen.append(o.order_id))

    assert response == failed(wrong_type, no_detail) and seen == ["o-1"]
    reasons = [r.reason for r in captured.records if r.getMessage() == "Rejected record"]
    assert reasons == [
        "detail-type 'OrderShipped' is not one of ['OrderPlaced']",
        "the body is not an EventBridge event: expected an object with a 'detail' object",
    ]


# --- DynamoDB streams -----------------------------------------------------------------------------


def stream_record(image, sequence, event_name="INSERT") -> dict:
    return {
        "eventID": uuid.uuid4().hex,
        "eventName": event_name,
        "eventSource": "aws:dynamodb",
        "dynamodb": {"Keys": {"pk": {"S": "a"}}, "NewImage": image, "SequenceNumber": sequence, "StreamViewType": "NEW_IMAGE"},
    }


def test_stream_images_are_read_with_binaries_decoded_and_others_rejected(tools, capsys):
    logger, metrics, captured = tools
    consumer = BatchConsumer(DYNAMODB_STREAMS, read=readers.new_image, logger=logger, metrics=metrics)
    b64 = base64.b64encode(b"hello").decode()
    good = stream_record({"pk": {"S": "a"}, "blob": {"B": b64}, "nested": {"M": {"set": {"BS": [b64]}}}}, "100")
    modify = stream_record({"pk": {"S": "a"}}, "101", "MODIFY")
    not_base64 = stream_record({"pk": {"S": "a"}, "blob": {"B": "%%%"}}, "102")
    seen = []

    response, _ = _run(consumer, {"Records": [good, modify, not_base64]}, metrics, capsys, effect=lambda image, r: seen.append(image))

    assert response == {"batchItemFailures": [{"itemIdentifier": "101"}, {"itemIdentifier": "102"}]}
    assert seen == [{"pk": "a", "blob": b"hello", "nested": {"set": {b"hello"}}}]
    reasons = {r.sequence_number: r.reason for r in captured.records if r.getMessage() == "Rejected record"}
    assert reasons["101"] == "eventName is 'MODIFY': only INSERT records are read"
    assert reasons["102"].startswith("NewImage is not DynamoDB JSON: blob: B is not base64")


def test_a_stream_image_deeper_than_dynamodb_allows_is_rejected(tools, capsys):
    logger, metrics, captured = tools
    consumer = BatchConsumer(DYNAMODB_STREAMS, read=readers.new_image, logger=logger, metrics=metrics)
    deep = {"S": "x"}
    for _ in range(40):
        deep = {"L": [deep]}
    response, _ = _run(consumer, {"Records": [stream_record({"pk": {"S": "a"}, "tree": deep}, "7")]}, metrics, capsys, effect=lambda i, r: None)
    assert response == {"batchItemFailures": [{"itemIdentifier": "7"}]}
    assert "nested deeper than the 32 levels DynamoDB allows" in captured.records[0].reason


def test_fails_when_a_stream_record_has_no_sequence_number(tools):
    logger, metrics, _ = tools
    record = stream_record({"pk": {"S": "a"}}, "1")
    del record["dynamodb"]["SequenceNumber"]
    with pytest.raises(ValueError, match=r"Records\[0\] has no dynamodb.SequenceNumber"):
        BatchConsumer(DYNAMODB_STREAMS, read=readers.new_image, logger=logger, metrics=metrics).process({"Records": [record]}, Context(), effect=print)


# --- Kafka ----------------------------------------------------------------------------------------


def kafka_event(*values, topic="clicks", partition=0) -> dict:
    records = []
    for offset, value in enumerate(values):
        record = {"topic": topic, "partition": partition, "offset": offset, "timestamp": 1, "timestampType": "CREATE_TIME", "headers": []}
        if value is not None:
            record["value"] = base64.b64encode(value.encode()).decode()
        records.append(record)
    return {"eventSource": "aws:kafka", "records": {f"{topic}-{partition}": records}}


def kafka_failed(*offsets, topic="clicks", partition=0) -> dict:
    return {"batchItemFailures": [{"itemIdentifier": {"partition": f"{topic}-{partition}", "offset": offset}} for offset in offsets]}


def test_a_kafka_tombstone_is_skipped_and_counted_never_failed(tools, capsys):
    logger, metrics, captured = tools
    consumer = BatchConsumer(KAFKA, read=readers.kafka_json(Order), logger=logger, metrics=metrics)
    seen = []
    event = kafka_event(json.dumps({"order_id": "o-1", "total": 1}), None, DEEP)

    response, (totals, _) = _run(consumer, event, metrics, capsys, effect=lambda o, r: seen.append(o.order_id))

    assert response == kafka_failed(2)
    assert seen == ["o-1"] and totals["TombstonesSkipped"] == 1
    assert "Record skipped: a tombstone (no value) carries no event" in captured.messages(logging.WARNING)


def test_a_batch_effect_gets_every_readable_record_and_decides_their_outcomes(tools, capsys):
    logger, metrics, _ = tools
    consumer = BatchConsumer(KAFKA, read=readers.kafka_json(Order), logger=logger, metrics=metrics)
    event = kafka_event(*(json.dumps({"order_id": f"o-{n}", "total": n}) for n in range(4)), "not json")
    given = []

    def write_groups(items):
        given.extend(order.order_id for _, order in items)
        return {id(record.raw_event): RuntimeError("group write failed") for record, order in items if order.total % 2}

    response, (totals, _) = _run(consumer, event, metrics, capsys, batch_effect=write_groups)

    assert given == ["o-0", "o-1", "o-2", "o-3"]
    assert response == kafka_failed(1, 3, 4)
    assert (totals["FailedRecords"], totals["RejectedRecords"]) == (3, 1)


def test_fails_when_a_kafka_record_has_no_offset(tools):
    logger, metrics, _ = tools
    event = kafka_event("{}")
    del event["records"]["clicks-0"][0]["offset"]
    with pytest.raises(ValueError, match=r"has no offset \(an integer\), which every record needs to be reported as failed"):
        BatchConsumer(KAFKA, read=readers.kafka_json(Order), logger=logger, metrics=metrics).process(event, Context(), effect=print)


def test_fails_when_both_or_neither_effect_is_given(tools):
    logger, metrics, _ = tools
    consumer = BatchConsumer(SQS, read=readers.sqs_json(Order), logger=logger, metrics=metrics)
    with pytest.raises(ValueError, match="give exactly one of effect and batch_effect"):
        consumer.process({"Records": []}, Context())


def test_rejected_carries_its_reason():
    assert Rejected("why").reason == "why" and str(Rejected("why")) == "why"


def test_a_fifo_batch_whose_every_record_fails_is_reported_not_raised(tools, capsys):
    """Powertools' FIFO processor raises when every record fails by default; the consumer reports them like any batch."""
    logger, metrics, _ = tools
    consumer = BatchConsumer(SQS, read=readers.sqs_json(Order), logger=logger, metrics=metrics, fifo=True)
    a1, b1 = sqs_record("{", group="a"), sqs_record("[]", group="b")
    response, (totals, _) = _run(consumer, {"Records": [a1, b1]}, metrics, capsys, effect=lambda o, r: None)
    assert response == failed(a1, b1) and totals["RejectedRecords"] == 2


def test_a_batch_effect_that_raises_fails_every_record_it_was_given_and_logs_each(tools, capsys):
    logger, metrics, captured = tools
    consumer = BatchConsumer(KAFKA, read=readers.kafka_json(Order), logger=logger, metrics=metrics)
    event = kafka_event(json.dumps({"order_id": "o-1", "total": 1}), "not json", json.dumps({"order_id": "o-2", "total": 2}))

    def broken(items):
        raise ConnectionError("table unreachable")

    response, (totals, _) = _run(consumer, event, metrics, capsys, batch_effect=broken)

    assert response == kafka_failed(0, 1, 2)
    failures = [r for r in captured.records if r.getMessage() == "Record failed"]
    assert [r.offset for r in failures] == [0, 2] and {r.reason for r in failures} == {"ConnectionError: table unreachable"}
    assert (totals["FailedRecords"], totals["RejectedRecords"]) == (3, 1)


def test_a_kafka_value_that_breaks_the_model_is_rejected_naming_the_value(tools, capsys):
    logger, metrics, captured = tools
    consumer = BatchConsumer(KAFKA, read=readers.kafka_json(Order), logger=logger, metrics=metrics)
    _run(consumer, kafka_event(DEEP), metrics, capsys, effect=lambda o, r: None)
    (rejected,) = [r for r in captured.records if r.getMessage() == "Rejected record"]
    assert rejected.reason.startswith("value:")


def test_a_kafka_record_whose_key_is_not_the_events_field_fails_alone_with_the_reason(tools, capsys):
    logger, metrics, captured = tools
    consumer = BatchConsumer(KAFKA, read=readers.kafka_json(Order, key_field="order_id"), logger=logger, metrics=metrics)
    event = kafka_event(*(json.dumps({"order_id": f"o-{n}", "total": n}) for n in range(4)))
    records = event["records"]["clicks-0"]
    records[0]["key"] = base64.b64encode(b"o-0").decode()  # the producer's key
    records[1]["key"] = base64.b64encode(b"o-9").decode()  # another's
    records[2]["key"] = "not base64!"
    seen = []  # records[3]: no key

    response, _ = _run(consumer, event, metrics, capsys, effect=lambda o, r: seen.append(o.order_id))

    assert response == kafka_failed(1, 2, 3) and seen == ["o-0"]
    reasons = [r.reason for r in captured.records if r.getMessage() == "Rejected record"]
    assert reasons[0] == "key 'o-9' is not the event's order_id 'o-1'"
    assert reasons[1].startswith("the key is not base64") and reasons[2] == "the record has no key"
