"""Amazon MQ events decoded as Lambda sends them, the all-or-nothing batch helper, the broker secret and settings.

The two example events are the ones in AWS's Lambda developer guide, "Using
Lambda with Amazon MQ" (https://docs.aws.amazon.com/lambda/latest/dg/with-mq.html,
"Example Amazon MQ record events"); the others come from the builders the
handler tests use (``tests/handlers/mq_events.py``).
"""

from __future__ import annotations

import base64
import json
import logging
import uuid
from collections import Counter

import boto3
import pytest
from aws_lambda_powertools import Logger, Metrics
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from messaging_runtime.amazon_mq import (
    ACTIVEMQ_EVENT_SOURCE,
    MAX_REASON_CHARS,
    RABBITMQ_EVENT_SOURCE,
    BatchFailed,
    BrokerCredentials,
    MalformedMessage,
    MQMessage,
    NotAnAmazonMQEvent,
    SecretError,
    UndecodableMessage,
    decode_activemq_event,
    decode_event,
    decode_header_value,
    decode_rabbitmq_event,
    environment_flag,
    environment_number,
    environment_text,
    process_batch,
    read_broker_credentials,
)
from messaging_runtime.rejection import Rejected
from tests.handlers.mq_events import ActiveMQEvents, RabbitMQEvents

# The guide's examples, as printed there.
GUIDE_ACTIVEMQ_EVENT = {
    "eventSource": "aws:mq",
    "eventSourceArn": "arn:aws:mq:us-east-2:111122223333:broker:test:b-9bcfa592-423a-4942-879d-eb284b418fc8",
    "messages": [
        {
            "messageID": "ID:b-9bcfa592-423a-4942-879d-eb284b418fc8-1.mq.us-east-2.amazonaws.com-37557-1234520418293-4:1:1:1:1",
            "messageType": "jms/text-message",
            "deliveryMode": 1,
            "replyTo": None,
            "type": None,
            "expiration": "60000",
            "priority": 1,
            "correlationId": "myJMSCoID",
            "redelivered": False,
            "destination": {"physicalName": "testQueue"},
            "data": "QUJDOkFBQUE=",
            "timestamp": 1598827811958,
            "brokerInTime": 1598827811958,
            "brokerOutTime": 1598827811959,
            "properties": {"index": "1", "doAlarm": "false", "myCustomProperty": "value"},
        },
        {
            "messageID": "ID:b-9bcfa592-423a-4942-879d-eb284b418fc8-1.mq.us-east-2.amazonaws.com-37557-1234520418293-4:1:1:1:1",
            "messageType": "jms/bytes-message",
            "deliveryMode": 1,
            "replyTo": None,
            "type": None,
            "expiration": "60000",
            "priority": 2,
            "correlationId": "myJMSCoID1",
            "redelivered": False,
            "destination": {"physicalName": "testQueue"},
            "data": "LQaGQ82S48k=",
            "timestamp": 1598827811958,
            "brokerInTime": 1598827811958,
            "brokerOutTime": 1598827811959,
            "properties": {"index": "1", "doAlarm": "false", "myCustomProperty": "value"},
        },
    ],
}
GUIDE_RABBITMQ_EVENT = {
    "eventSource": "aws:rmq",
    "eventSourceArn": "arn:aws:mq:us-east-2:111122223333:broker:pizzaBroker:b-9bcfa592-423a-4942-879d-eb284b418fc8",
    "rmqMessagesByQueue": {
        "pizzaQueue::/": [
            {
                "basicProperties": {
                    "contentType": "text/plain",
                    "contentEncoding": None,
                    "headers": {
                        "header1": {"bytes": [118, 97, 108, 117, 101, 49]},
                        "header2": {"bytes": [118, 97, 108, 117, 101, 50]},
                        "numberInHeader": 10,
                    },
                    "deliveryMode": 1,
                    "priority": 34,
                    "correlationId": None,
                    "replyTo": None,
                    "expiration": "60000",
                    "messageId": None,
                    "timestamp": "Jan 1, 1970, 12:33:41 AM",
                    "type": None,
                    "userId": "AIDACKCEVSQ6C2EXAMPLE",
                    "appId": None,
                    "clusterId": None,
                    "bodySize": 80,
                },
                "redelivered": False,
                "data": "eyJ0aW1lb3V0IjowLCJkYXRhIjoiQ1pybWYwR3c4T3Y0YnFMUXhENEUifQ==",
            }
        ]
    },
}


@pytest.fixture
def rmq():
    return RabbitMQEvents()


@pytest.fixture
def amq():
    return ActiveMQEvents(queue="erp.invoices")


# --- the guide's examples ----------------------------------------------------------------------------


def test_the_guides_rabbitmq_example_decodes_to_its_queue_virtual_host_headers_and_body():
    batch = decode_rabbitmq_event(GUIDE_RABBITMQ_EVENT)

    [message] = batch.messages
    assert (batch.source, batch.event_source_arn) == ("aws:rmq", GUIDE_RABBITMQ_EVENT["eventSourceArn"])
    assert (message.queue, message.virtual_host, message.place, message.index) == ("pizzaQueue", "/", "pizzaQueue::/[0]", 0)
    assert message.properties == {"header1": "value1", "header2": "value2", "numberInHeader": 10}
    assert (message.content_type, message.content_encoding, message.correlation_id, message.reply_to) == ("text/plain", None, None, None)
    assert message.message_id is None and message.redelivered is False
    assert json.loads(message.text()) == {"timeout": 0, "data": "CZrmf0Gw8Ov4bqLQxD4E"}
    assert message.basic_properties["userId"] == "AIDACKCEVSQ6C2EXAMPLE"


def test_the_guides_activemq_example_decodes_text_and_bytes_messages_with_their_jms_properties():
    batch = decode_activemq_event(GUIDE_ACTIVEMQ_EVENT)

    text, binary = batch.messages
    assert (text.queue, text.place, text.message_type, text.correlation_id) == ("testQueue", "messages[0]", "jms/text-message", "myJMSCoID")
    assert text.body == b"ABC:AAAA" and text.text() == "ABC:AAAA"
    assert text.properties == {"index": "1", "doAlarm": "false", "myCustomProperty": "value"}
    assert text.message_id.startswith("ID:b-9bcfa592") and text.reply_to is None and text.virtual_host is None
    assert (binary.place, binary.message_type, binary.body) == ("messages[1]", "jms/bytes-message", base64.b64decode("LQaGQ82S48k="))


def test_decode_event_tells_the_two_brokers_apart_by_event_source_or_by_shape():
    assert decode_event(GUIDE_RABBITMQ_EVENT).source == RABBITMQ_EVENT_SOURCE
    assert decode_event(GUIDE_ACTIVEMQ_EVENT).source == ACTIVEMQ_EVENT_SOURCE
    bare_rabbit = {"rmqMessagesByQueue": GUIDE_RABBITMQ_EVENT["rmqMessagesByQueue"]}
    bare_active = {"messages": GUIDE_ACTIVEMQ_EVENT["messages"]}
    assert [decode_event(bare_rabbit).source, decode_event(bare_active).source] == ["aws:rmq", "aws:mq"]


def test_the_spelling_of_an_older_edition_of_the_guide_is_read_as_activemq():
    old = json.loads(json.dumps(GUIDE_ACTIVEMQ_EVENT).replace('"physicalName"', '"physicalname"').replace('"aws:mq"', '"aws:amq"'))

    batch = decode_event(old)

    assert batch.source == "aws:mq" and [m.queue for m in batch.messages] == ["testQueue", "testQueue"]


# --- RabbitMQ ---------------------------------------------------------------------------------------


def test_rabbitmq_messages_keep_the_events_order_across_queues_and_virtual_hosts(rmq):
    first, second, third = (rmq.message(f"body {n}") for n in range(3))
    event = rmq.event({"shipments::warehouse": [first, second], "shipments::warehouse-us": [third]})

    batch = decode_rabbitmq_event(event)

    assert [(m.place, m.queue, m.virtual_host, m.queue_key, m.body) for m in batch] == [
        ("shipments::warehouse[0]", "shipments", "warehouse", "shipments::warehouse", b"body 0"),
        ("shipments::warehouse[1]", "shipments", "warehouse", "shipments::warehouse", b"body 1"),
        ("shipments::warehouse-us[0]", "shipments", "warehouse-us", "shipments::warehouse-us", b"body 2"),
    ]
    assert [m.message_id for m in batch] == RabbitMQEvents.message_ids(event)


def test_rabbitmq_properties_and_text_headers_are_decoded(rmq):
    message = rmq.message(
        "x",
        headers={"source": "wms-7", "attempt": 2, "flag": True},
        correlationId="c-1",
        replyTo="amq.rabbitmq.reply-to.g1h2",
        content_encoding="utf-8",
        redelivered=True,
    )

    [decoded] = decode_rabbitmq_event(rmq.event({"q::/": [message]})).messages

    assert decoded.properties == {"source": "wms-7", "attempt": 2, "flag": True}
    assert (decoded.correlation_id, decoded.reply_to, decoded.content_type, decoded.content_encoding) == (
        "c-1",
        "amq.rabbitmq.reply-to.g1h2",
        "application/json",
        "utf-8",
    )
    assert decoded.redelivered is True


def test_header_bytes_that_are_not_utf8_stay_bytes_and_nested_values_are_decoded():
    assert decode_header_value({"bytes": [0xFF, 0x00]}) == b"\xff\x00"
    assert decode_header_value([{"bytes": [104, 105]}, {"inner": {"bytes": [111, 107]}}]) == ["hi", {"inner": "ok"}]
    assert decode_header_value({"bytes": [300]}) == {"bytes": [300]}


def test_a_queue_key_without_a_virtual_host_takes_the_default_given():
    event = {"eventSource": "aws:rmq", "rmqMessagesByQueue": {"requests": [{"basicProperties": {}, "redelivered": False, "data": ""}]}}

    assert decode_rabbitmq_event(event).messages[0].virtual_host is None
    [message] = decode_rabbitmq_event(event, default_virtual_host="/").messages
    assert (message.queue, message.virtual_host, message.place) == ("requests", "/", "requests[0]")


def test_a_message_without_basic_properties_or_headers_has_empty_properties():
    event = {"eventSource": "aws:rmq", "rmqMessagesByQueue": {"q::/": [{"basicProperties": None, "data": "eA=="}, {"basicProperties": {"headers": None}}]}}

    first, second = decode_rabbitmq_event(event).messages

    assert first.properties == {} and first.basic_properties == {} and first.body == b"x"
    assert second.properties == {} and second.redelivered is False


@pytest.mark.parametrize(
    ("shape", "place", "reason"),
    [
        ("text", "q::/[1]", "not a message object (str)"),
        ("null", "q::/[1]", "not a message object (NoneType)"),
        ("properties not an object", "q::/[1]", "basicProperties is list, expected an object"),
        ("headers not an object", "q::/[1]", "basicProperties.headers is list, expected an object"),
        ("messages not a list", "q::/", "the messages are dict, expected a list"),
    ],
)
def test_a_rabbitmq_message_lambda_never_sends_is_a_malformed_entry_at_its_place(rmq, shape, place, reason):
    good = rmq.message("fine")
    odd = {
        "text": "a shipment",
        "null": None,
        "properties not an object": dict(good, basicProperties=[["messageId", "m-1"]]),
        "headers not an object": dict(good, basicProperties={"headers": [1]}),
    }.get(shape)
    by_queue = {"q::/": {"0": good}} if shape == "messages not a list" else {"q::/": [good, odd]}

    batch = decode_rabbitmq_event(rmq.event({**by_queue, "other::/": [rmq.message("also fine")]}))

    [malformed] = batch.malformed
    assert (malformed.place, malformed.reason, malformed.queue, malformed.virtual_host, malformed.queue_key) == (place, reason, "q", "/", "q::/")
    assert [entry.place for entry in batch][-1] == "other::/[0]"
    assert len(batch) == (2 if shape == "messages not a list" else 3)


# --- ActiveMQ ---------------------------------------------------------------------------------------


def test_activemq_messages_carry_their_jms_headers_and_properties(amq):
    sent = amq.message("text body", properties={"erp_system": "legacy-erp"}, correlation_id="corr-9", redelivered=True)

    [message] = decode_activemq_event(amq.event([sent])).messages

    assert (message.queue, message.message_id, message.correlation_id, message.redelivered) == ("erp.invoices", sent["messageID"], "corr-9", True)
    assert message.reply_to is None  # ActiveMQ sends the text "null"
    assert message.properties == {"erp_system": "legacy-erp"}
    assert message.text() == "text body"


def test_null_jms_properties_are_empty(amq):
    [message] = decode_activemq_event(amq.event([amq.message("x", properties=None)])).messages

    assert message.properties == {}


@pytest.mark.parametrize(
    ("odd", "reason"),
    [
        ("an invoice", "not a message object (str)"),
        (None, "not a message object (NoneType)"),
        (["messageID", "ID:1"], "not a message object (list)"),
        ({"messageID": "ID:1", "properties": ["a"]}, "properties is list, expected an object"),
        ({"messageID": "ID:1", "destination": "erp.invoices"}, "destination is str, expected an object"),
    ],
    ids=["text", "null", "list", "properties", "destination"],
)
def test_an_activemq_message_lambda_never_sends_is_a_malformed_entry_at_its_place(amq, odd, reason):
    batch = decode_activemq_event(amq.event([amq.message("fine"), odd]))

    assert [type(entry) for entry in batch] == [MQMessage, MalformedMessage]
    assert (batch.malformed[0].place, batch.malformed[0].reason) == ("messages[1]", reason)


# --- bodies -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"data": None}, "message has no base64 data"),
        ({"data": "not base64 at all"}, "data is not base64: "),
        ({"messageType": "jms/map-message"}, "message type 'jms/map-message' is not supported, expected one of jms/text-message, jms/bytes-message"),
        ({"messageType": None}, "message type None is not supported"),
    ],
)
def test_a_body_that_cannot_be_had_is_that_messages_rejection(amq, change, reason):
    [message] = decode_activemq_event(amq.event([{**amq.message("x"), **change}])).messages

    with pytest.raises(UndecodableMessage) as raised:
        _ = message.body
    assert raised.value.reason.startswith(reason)
    assert isinstance(raised.value, Rejected)


def test_a_rabbitmq_message_without_data_has_no_body(rmq):
    message = rmq.message("x")
    del message["data"]

    [decoded] = decode_rabbitmq_event(rmq.event({"q::/": [message]})).messages

    with pytest.raises(UndecodableMessage, match="^message has no base64 data$"):
        _ = decoded.body


def test_a_body_that_is_not_utf8_has_no_text(rmq):
    [message] = decode_rabbitmq_event(rmq.event({"q::/": [rmq.message(b"\xff\xfe{}")]})).messages

    assert message.body == b"\xff\xfe{}"
    with pytest.raises(UndecodableMessage, match="^body is not UTF-8 text: 'utf-8' codec can't decode byte 0xff"):
        message.text()


# --- ids --------------------------------------------------------------------------------------------


def test_the_id_is_the_message_id_when_the_publisher_set_one(rmq, amq):
    [rabbit] = decode_rabbitmq_event(rmq.event({"q::/": [rmq.message("x", message_id="m-42")]})).messages
    [active] = decode_activemq_event(amq.event([amq.message("x", message_id="ID:abc:1:1:1:1")])).messages

    assert (rabbit.id, rabbit.label) == ("m-42", "m-42")
    assert (active.id, active.label) == ("ID:abc:1:1:1:1", "ID:abc:1:1:1:1")


def test_without_a_message_id_the_id_is_a_digest_of_the_content_the_same_on_redelivery(rmq):
    event = rmq.event({"q::/": [rmq.message("same", message_id=None), rmq.message("other", message_id=None)]})
    again = RabbitMQEvents.redelivery(event)
    # The batch comes back with a message in front of it: places change, ids do not.
    again["rmqMessagesByQueue"]["q::/"].insert(0, rmq.message("new", message_id=None))

    first = decode_rabbitmq_event(event).messages
    second = decode_rabbitmq_event(again).messages

    assert [m.id for m in first] == [m.id for m in second[1:]]
    assert first[0].id != first[1].id and first[0].id.startswith("sha256:")
    assert [m.label for m in first] == ["q::/[0]", "q::/[1]"]
    assert all(m.redelivered for m in second[1:])


def test_the_digest_ignores_the_broker_times_and_the_redelivered_flag(amq):
    message = amq.message("x", message_id=None)
    del message["messageID"]
    event = amq.event([message])

    [first] = decode_activemq_event(event).messages
    [again] = decode_activemq_event(ActiveMQEvents.redelivery(event)).messages

    assert first.message_id is None and first.id == again.id and first.label == "messages[0]"


# --- events that are not Amazon MQ events ------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "got"),
    [
        ({}, "an object with keys no keys"),
        ({"Records": []}, "an object with keys 'Records'"),
        ({"eventSource": "aws:mq", "messages": []}, "eventSource 'aws:mq' with keys 'eventSource', 'messages'"),
        ({"rmqMessagesByQueue": []}, "an object with keys 'rmqMessagesByQueue'"),
        (None, "NoneType"),
        ([{"basicProperties": {}}], "list"),
    ],
)
def test_an_event_that_is_not_from_rabbitmq_is_refused_naming_what_was_expected(event, got):
    with pytest.raises(NotAnAmazonMQEvent) as raised:
        decode_rabbitmq_event(event)

    assert str(raised.value) == (
        'not an Amazon MQ for RabbitMQ event: expected an object with "eventSource": "aws:rmq" and "rmqMessagesByQueue", '
        f'an object mapping "<queue>::<virtual host>" to a list of messages; got {got}'
    )
    assert isinstance(raised.value, ValueError)


@pytest.mark.parametrize(
    "event",
    [{}, {"Records": []}, {"eventSource": "aws:rmq", "rmqMessagesByQueue": {}}, {"messages": {}}, {"eventSource": "aws:sqs", "messages": []}, "messages"],
)
def test_an_event_that_is_not_from_activemq_is_refused_naming_what_was_expected(event):
    expected = r'^not an Amazon MQ for ActiveMQ event: expected an object with "eventSource": "aws:mq" and "messages", a list'
    with pytest.raises(NotAnAmazonMQEvent, match=expected):
        decode_activemq_event(event)


def test_an_event_of_neither_broker_names_both_shapes():
    expected = r'^not an Amazon MQ event: expected .*"rmqMessagesByQueue".*, or .*"messages", a list of messages; got eventSource'
    with pytest.raises(NotAnAmazonMQEvent, match=expected):
        decode_event({"eventSource": "aws:sqs", "Records": []})


def test_the_secrets_of_an_event_are_never_in_its_refusal():
    with pytest.raises(NotAnAmazonMQEvent) as raised:
        decode_rabbitmq_event({"password": "hunter2", "rmqMessagesByQueue": "hunter2"})

    assert "hunter2" not in str(raised.value)


# --- all-or-nothing batches ---------------------------------------------------------------------------


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def tools(monkeypatch):
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Test")
    logger = Logger(service=f"test-{uuid.uuid4().hex[:6]}")
    captured = Captured()
    logger.addHandler(captured)
    metrics = Metrics(namespace="Test", service="test")
    yield logger, metrics, captured
    metrics.clear_metrics()


def emitted(output: str) -> Counter:
    totals: Counter = Counter()
    for line in output.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            blob = json.loads(line)
            for directive in blob["_aws"]["CloudWatchMetrics"]:
                for metric in directive["Metrics"]:
                    value = blob[metric["Name"]]
                    totals[metric["Name"]] += sum(value if isinstance(value, list) else [value])
    return totals


def test_every_good_message_is_handled_and_the_results_come_back_in_order(rmq):
    event = rmq.event({"a::/": [rmq.message("1"), rmq.message("2")], "b::/": [rmq.message("3")]})

    assert process_batch(decode_rabbitmq_event(event), lambda message: message.text()) == ["1", "2", "3"]


def test_an_empty_batch_does_nothing(rmq):
    assert process_batch(decode_rabbitmq_event(rmq.event({})), lambda message: pytest.fail("no message to handle")) == []


def test_every_message_is_handled_and_one_exception_names_every_failure_by_place_and_id(amq, tools, capsys):
    logger, metrics, captured = tools
    good = [amq.message(json.dumps({"n": n})) for n in range(3)]
    not_base64 = amq.message(data="%%%")
    boom = amq.message(json.dumps({"n": "boom"}))
    anonymous = amq.message(json.dumps({"n": "reject"}))
    del anonymous["messageID"]
    batch = decode_activemq_event(amq.event([good[0], not_base64, good[1], "not a message", boom, anonymous, good[2]]))
    handled = []

    def handle(message):
        document = json.loads(message.text())
        if document["n"] == "boom":
            raise RuntimeError("the downstream service is down")
        if document["n"] == "reject":
            raise Rejected("n must be a number")
        handled.append(document["n"])
        return document["n"]

    @metrics.log_metrics
    def run(event, context):
        process_batch(batch, handle, logger=logger, metrics=metrics)

    capsys.readouterr()
    with pytest.raises(BatchFailed) as raised:
        run({}, None)

    error = raised.value
    assert handled == [0, 1, 2]
    assert [(f.place, f.message_id, f.rejected) for f in error.failures] == [
        ("messages[1]", not_base64["messageID"], True),
        ("messages[3]", None, True),
        ("messages[4]", boom["messageID"], False),
        ("messages[5]", None, True),
    ]
    assert error.failed_message_ids == [not_base64["messageID"], "messages[3]", boom["messageID"], "messages[5]"]
    assert error.total == 7
    assert str(error) == (
        "4 of 7 messages failed; the broker redelivers the batch: "
        f"messages[1] ({not_base64['messageID']}): data is not base64: Only base64 data is allowed; "
        "messages[3]: not a message object (str); "
        f"messages[4] ({boom['messageID']}): RuntimeError: the downstream service is down; "
        "messages[5]: n must be a number"
    )
    assert emitted(capsys.readouterr().out) == Counter({"RejectedMessages": 3, "FailedMessages": 4})
    logged = [r for r in captured.records if r.getMessage() == "Message failed"]
    assert [(r.levelname, r.message_id, r.place, r.reason) for r in logged] == [("ERROR", f.label, f.place, f.reason) for f in error.failures]
    assert [bool(r.exc_info) for r in logged] == [False, False, True, False]
    assert logged[2].queue == "erp.invoices" and logged[2].redelivered is False


def test_with_log_keys_while_a_message_is_handled_the_logger_carries_its_id_queue_and_redelivered_flag(rmq, tools):
    logger, _, _ = tools
    seen = []

    def handle(message):
        keys = logger.get_current_keys()
        seen.append((keys["message_id"], keys["queue"], keys["redelivered"]))

    message = rmq.message("x", message_id="m-7", redelivered=True)
    process_batch(decode_rabbitmq_event(rmq.event({"q::/": [message]})), handle, logger=logger, log_keys=True)

    assert seen == [("m-7", "q::/", True)]
    assert "message_id" not in logger.get_current_keys()


def test_a_failure_is_logged_with_a_standard_logger_too(rmq, caplog):
    batch = decode_rabbitmq_event(rmq.event({"q::/": [rmq.message("x", message_id="m-1")]}))

    with caplog.at_level(logging.ERROR, logger="messaging_runtime.amazon_mq"), pytest.raises(BatchFailed):
        process_batch(batch, lambda message: 1 / 0)

    [record] = caplog.records
    assert (record.getMessage(), record.message_id, record.reason) == ("Message failed", "m-1", "ZeroDivisionError: division by zero")


def test_the_exception_keeps_each_reason_whole_and_its_message_short(rmq):
    batch = decode_rabbitmq_event(rmq.event({"q::/": [rmq.message("x", message_id="m-1")]}))

    with pytest.raises(BatchFailed) as raised:
        process_batch(batch, lambda message: (_ for _ in ()).throw(Rejected("x" * 2000)))

    assert raised.value.failures[0].reason == "x" * 2000
    assert str(raised.value).endswith("q::/[0] (m-1): " + "x" * MAX_REASON_CHARS)


def test_a_redelivered_batch_fails_the_same_messages_again(rmq):
    event = rmq.event({"q::/": [rmq.message("ok"), rmq.message("bad"), rmq.message("ok too")]})

    def handle(message):
        if message.text() == "bad":
            raise Rejected("bad body")

    failures = []
    for delivery in (event, RabbitMQEvents.redelivery(event)):
        with pytest.raises(BatchFailed) as raised:
            process_batch(decode_rabbitmq_event(delivery), handle)
        failures.append(raised.value.failed_message_ids)

    assert failures[0] == failures[1] == [event["rmqMessagesByQueue"]["q::/"][1]["basicProperties"]["messageId"]]


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(odd=JSON, where=st.sampled_from(["message", "basicProperties", "headers", "data", "queue", "properties", "destination", "messageType"]))
def test_no_shape_inside_an_event_fails_more_than_its_own_message(odd, where):
    rmq, amq = RabbitMQEvents(), ActiveMQEvents()
    rabbit_odd, active_odd = rmq.message("odd"), amq.message("odd")
    if where == "message":
        rabbit_odd = active_odd = odd
    elif where in ("basicProperties", "data"):
        rabbit_odd[where] = odd
        active_odd["data"] = odd
    elif where == "headers":
        rabbit_odd["basicProperties"]["headers"] = odd
    else:
        active_odd[where] = odd
    by_queue = {"q::/": [rmq.message("good"), rabbit_odd], "r::/": odd if where == "queue" else [rmq.message("good")]}

    for batch in (decode_rabbitmq_event(rmq.event(by_queue)), decode_activemq_event(amq.event([amq.message("good"), active_odd]))):
        good = {entry.place for entry in batch if isinstance(entry, MQMessage) and entry.data == base64.b64encode(b"good").decode()}
        handled = []
        try:
            handled = process_batch(batch, lambda message: message.text())
        except BatchFailed as failed:
            assert good and not good & {failure.place for failure in failed.failures}
        else:
            assert len(handled) == len(batch)


# --- the broker secret and settings -------------------------------------------------------------------


@pytest.fixture
def secrets(monkeypatch):
    for name, value in {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        yield boto3.client("secretsmanager")


def test_the_credentials_are_read_from_the_secret_and_cached_until_read_again(secrets):
    arn = secrets.create_secret(Name=f"broker-{uuid.uuid4().hex[:6]}", SecretString=json.dumps({"username": "app", "password": "first"}))["ARN"]

    assert read_broker_credentials(arn) == BrokerCredentials("app", "first")
    secrets.put_secret_value(SecretId=arn, SecretString=json.dumps({"username": "app", "password": "rotated"}))
    assert read_broker_credentials(arn).password == "first"
    assert read_broker_credentials(arn, force_fetch=True).password == "rotated"
    assert "rotated" not in repr(read_broker_credentials(arn))


@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        ({"user": "x"}, r'must be a JSON object with string "username" and "password"$'),
        ({"username": "x", "password": 7}, r'must be a JSON object with string "username" and "password"$'),
        (["x"], r'must be a JSON object with string "username" and "password"$'),
        ("not json", r"^could not read the broker credentials from arn:"),
    ],
)
def test_a_secret_without_a_username_and_password_is_a_clear_error_without_its_value(secrets, secret, reason):
    text = secret if isinstance(secret, str) else json.dumps(secret)
    arn = secrets.create_secret(Name=f"bad-{uuid.uuid4().hex[:6]}", SecretString=text)["ARN"]

    with pytest.raises(SecretError, match=reason) as raised:
        read_broker_credentials(arn)

    assert "not json" not in str(raised.value).replace("not JSON", "")


def test_a_secret_that_does_not_exist_is_a_clear_error(secrets):
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:nowhere-AbCdEf"

    with pytest.raises(SecretError, match=rf"^could not read the broker credentials from {arn}: "):
        read_broker_credentials(arn)


def test_settings_are_read_from_the_environment_with_clear_errors():
    assert environment_flag("BROKER_TLS", True, environ={}) is True
    assert environment_flag("BROKER_TLS", True, environ={"BROKER_TLS": " FALSE "}) is False
    assert environment_number("BROKER_PORT", 5671, low=1, high=65535, environ={"BROKER_PORT": "5672"}) == 5672
    assert environment_text("VIRTUAL_HOST", "/", environ={"VIRTUAL_HOST": " "}) == "/"
    with pytest.raises(ValueError, match=r"^BROKER_TLS must be true or false, got 'yes'$"):
        environment_flag("BROKER_TLS", True, environ={"BROKER_TLS": "yes"})
    with pytest.raises(ValueError, match=r"^BROKER_PORT must be a whole number from 1 to 65535, got '5671.5'$"):
        environment_number("BROKER_PORT", 5671, low=1, high=65535, environ={"BROKER_PORT": "5671.5"})
    with pytest.raises(ValueError, match=r"^BROKER_PORT must be a whole number from 1 to 65535, got 'amqps'$"):
        environment_number("BROKER_PORT", 5671, low=1, high=65535, environ={"BROKER_PORT": "amqps"})
    with pytest.raises(ValueError, match=r"^BROKER_HOST is not set$"):
        environment_text("BROKER_HOST", environ={})
