"""Request-reply over AMQP against the local RabbitMQ: the quote requester and the quote responder.

The requester runs in a thread of its own, as its own Lambda invocation would;
the test takes its request off the queue with basic_get, builds the event
Lambda's RabbitMQ event source mapping would pass from it, and invokes the
responder with that. Where a test plays the requester itself, it consumes its
own direct reply-to pseudo-queue, as the function does.
"""

import dataclasses
import json
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from decimal import Decimal

import pika
import pytest

from messaging_runtime.amazon_mq import BatchFailed
from messaging_runtime.contracts.quotes import QuoteRequestV1
from tests.handlers.mq_events import RabbitMQEvents

# The broker fixtures: rabbitmq, broker_vhost, broker_secret, broker_env.
pytest_plugins = ("tests.handlers.rabbitmq",)

REQUEST_QUEUE = "quote-requests"
DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
REQUEST = {"customer_id": "c-0001", "items": [{"sku": "SKU-A1", "quantity": 2}, {"sku": "SKU-B2", "quantity": 15}]}
# The responder's rule, worked out by hand: unit prices 48.74 and 16.07 (5.00 + CRC-32 mod 9,501 cents);
# 15 x 16.07 = 241.05, 10 % off = 24.105, rounded half up to 24.11.
QUOTE = {
    "customer_id": "c-0001",
    "currency": "EUR",
    "lines": [
        {"sku": "SKU-A1", "quantity": 2, "unit_price": "48.74", "discount": "0.00", "amount": "97.48"},
        {"sku": "SKU-B2", "quantity": 15, "unit_price": "16.07", "discount": "24.11", "amount": "216.94"},
    ],
    "total": "314.42",
}


@pytest.fixture(scope="module")
def quote_broker(broker_env, broker_vhost):
    """The request queue as the blueprint declares it (durable, quorum), and the functions' settings."""
    broker_env.setenv("REQUEST_QUEUE", REQUEST_QUEUE)
    broker_env.setenv("REPLY_TIMEOUT_SECONDS", "10")
    broker_vhost.connect().channel().queue_declare(REQUEST_QUEUE, durable=True, arguments={"x-queue-type": "quorum"})
    return broker_vhost


@pytest.fixture
def load_function(quote_broker, load_handler, monkeypatch):
    """``load_function(name, **env)``: a function imported with its environment; its connections are closed after the test."""
    modules = []
    quote_broker.drain(REQUEST_QUEUE)

    def load(name, **env):
        for variable, value in env.items():
            monkeypatch.setenv(variable, value)
        module = load_handler(name)
        modules.append(module)
        return module

    yield load
    for module in modules:
        (module.replies if hasattr(module, "replies") else module.clients).close()


@pytest.fixture
def requester(load_function):
    return load_function("quote_requester")


@pytest.fixture
def responder(load_function):
    return load_function("quote_responder")


@pytest.fixture
def in_thread():
    """``in_thread(function, *args)``: a future for the call, run in a thread of its own."""
    with ThreadPoolExecutor(max_workers=2) as executor:
        yield executor.submit


def fetch_request(broker, timeout=10.0):
    """The next request on the queue, taken off it: (method, properties, body); waits for it to arrive."""
    channel = broker.connect().channel()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        method, properties, body = channel.basic_get(REQUEST_QUEUE, auto_ack=True)
        if method is not None:
            return method, properties, body
        time.sleep(0.05)
    raise AssertionError(f"no request on {REQUEST_QUEUE} within {timeout} s")


def lambda_message(method, properties, body, **overrides):
    """The message as the event source mapping passes it, from what the broker delivered."""
    moment = datetime.fromtimestamp(properties.timestamp, tz=timezone.utc) if properties.timestamp else None
    fields = {
        "content_type": properties.content_type,
        "content_encoding": properties.content_encoding,
        "headers": properties.headers or {},
        "message_id": properties.message_id,
        "redelivered": bool(method.redelivered),
        "deliveryMode": properties.delivery_mode,
        "priority": properties.priority,
        "correlationId": properties.correlation_id,
        "replyTo": properties.reply_to,
        "expiration": properties.expiration,
        "timestamp": moment.strftime("%b %-d, %Y, %-I:%M:%S %p") if moment else None,
        "type": properties.type,
        "userId": properties.user_id,
        "appId": properties.app_id,
        "clusterId": properties.cluster_id,
    }
    fields.update(overrides)
    return RabbitMQEvents().message(body, **fields)


def rmq_event(broker, *messages):
    return RabbitMQEvents().event({f"{REQUEST_QUEUE}::{broker.name}": list(messages)})


class TestRequester:
    """The test in the requester's place: publishes requests with its own direct reply-to address and collects the replies."""

    __test__ = False

    def __init__(self, broker):
        self.broker = broker
        self.connection = broker.connect()
        self.channel = self.connection.channel()
        self.replies = []
        self.channel.basic_consume(DIRECT_REPLY_TO, lambda _channel, _method, properties, body: self.replies.append((properties, body)), auto_ack=True)
        self.channel.confirm_delivery()

    def publish(self, body, *, correlation_id="", reply_to=DIRECT_REPLY_TO):
        """Publish a request; ``correlation_id=""`` makes a fresh one, None leaves it out. Returns the correlation id."""
        correlation_id = str(uuid.uuid4()) if correlation_id == "" else correlation_id
        properties = pika.BasicProperties(content_type="application/json", delivery_mode=2, correlation_id=correlation_id, reply_to=reply_to)
        self.channel.basic_publish("", REQUEST_QUEUE, body if isinstance(body, bytes) else json.dumps(body).encode(), properties, mandatory=True)
        return correlation_id

    def wait_for_replies(self, count, timeout=5.0):
        deadline = time.monotonic() + timeout
        while len(self.replies) < count and time.monotonic() < deadline:
            self.connection.process_data_events(time_limit=0.1)
        return [(properties.correlation_id, json.loads(body)) for properties, body in self.replies]


@pytest.fixture
def test_requester(quote_broker):
    return TestRequester(quote_broker)


def metric_totals(output):
    """{metric name: sum of values} over the EMF lines printed."""
    totals = {}
    for line in output.splitlines():
        if '"_aws"' in line:
            blob = json.loads(line)
            for metric in (m for directive in blob["_aws"]["CloudWatchMetrics"] for m in directive["Metrics"]):
                values = blob[metric["Name"]]
                totals[metric["Name"]] = totals.get(metric["Name"], 0) + sum(values if isinstance(values, list) else [values])
    return totals


def wire_request(**overrides):
    request = {"schema_version": 1, **REQUEST}
    request.update(overrides)
    return request


# --- end to end ---------------------------------------------------------------


def test_a_quote_request_is_answered_end_to_end(requester, responder, quote_broker, lambda_context, in_thread):
    asked = in_thread(requester.lambda_handler, REQUEST, lambda_context)
    method, properties, body = fetch_request(quote_broker)

    answered = responder.lambda_handler(rmq_event(quote_broker, lambda_message(method, properties, body)), lambda_context)

    assert answered == {"requests": 1, "answered": 1}
    assert asked.result(timeout=10) == {"correlation_id": properties.correlation_id, "quote": QUOTE}


def test_the_request_is_persistent_json_with_a_fresh_correlation_id_and_a_direct_reply_to_address(
    requester, load_function, quote_broker, lambda_context, in_thread
):
    # Two invocations at once run in two execution environments: two imports of the function.
    other = load_function("quote_requester")
    in_thread(requester.lambda_handler, REQUEST, dataclasses.replace(lambda_context, timeout_ms=3000))
    _, first, body = fetch_request(quote_broker)
    in_thread(other.lambda_handler, REQUEST, dataclasses.replace(lambda_context, timeout_ms=3000))
    _, second, _ = fetch_request(quote_broker)

    assert first.delivery_mode == 2
    assert first.content_type == "application/json"
    assert json.loads(body) == {"schema_version": 1, **REQUEST}
    # The broker replaces amq.rabbitmq.reply-to with the requesting channel's own address.
    assert first.reply_to.startswith(f"{DIRECT_REPLY_TO}.")
    assert uuid.UUID(first.correlation_id) != uuid.UUID(second.correlation_id)
    assert first.expiration == "2000"  # the wait: 3 s left, less the 1 s kept back
    assert quote_broker.queue_info(REQUEST_QUEUE)["durable"] == "true"
    assert [channel["confirm"] for channel in quote_broker.function_channels()] == ["true", "true"]


def test_replies_with_another_correlation_id_are_ignored(requester, responder, quote_broker, test_requester, lambda_context, in_thread):
    asked = in_thread(requester.lambda_handler, REQUEST, lambda_context)
    method, properties, body = fetch_request(quote_broker)
    decoy = {"status": "ok", "quote": {"total": "0.01"}}
    for correlation_id in ("someone-else", None):
        test_requester.channel.basic_publish("", properties.reply_to, json.dumps(decoy).encode(), pika.BasicProperties(correlation_id=correlation_id))
    time.sleep(0.3)

    responder.lambda_handler(rmq_event(quote_broker, lambda_message(method, properties, body)), lambda_context)

    assert asked.result(timeout=10)["quote"] == QUOTE


def test_a_late_reply_to_an_earlier_request_is_dropped_and_the_next_request_is_answered(
    load_function, responder, quote_broker, lambda_context, in_thread, monkeypatch
):
    requester = load_function("quote_requester", REPLY_TIMEOUT_SECONDS="1")
    first = in_thread(requester.lambda_handler, REQUEST, lambda_context)
    late = fetch_request(quote_broker)
    with pytest.raises(requester.ReplyTimeout):
        first.result(timeout=10)
    responder.lambda_handler(rmq_event(quote_broker, lambda_message(*late)), lambda_context)

    monkeypatch.setattr(requester, "REPLY_TIMEOUT_SECONDS", 10.0)
    second = in_thread(requester.lambda_handler, {"customer_id": "c-0002", "items": [{"sku": "SKU-A1", "quantity": 1}]}, lambda_context)
    method, properties, body = fetch_request(quote_broker)
    responder.lambda_handler(rmq_event(quote_broker, lambda_message(method, properties, body)), lambda_context)

    result = second.result(timeout=10)
    assert result["correlation_id"] == properties.correlation_id != late[1].correlation_id
    assert (result["quote"]["customer_id"], result["quote"]["total"]) == ("c-0002", "48.74")


# --- the requester's failures ------------------------------------------------------


def test_no_reply_in_time_is_a_clear_error_and_the_request_expires(load_function, quote_broker, lambda_context):
    requester = load_function("quote_requester", REPLY_TIMEOUT_SECONDS="1")

    started = time.monotonic()
    with pytest.raises(requester.ReplyTimeout) as raised:
        requester.lambda_handler(REQUEST, lambda_context)

    assert 1.0 <= time.monotonic() - started < 3
    assert str(raised.value).startswith("no reply to quote request ")
    assert "within 1.0 s; the broker confirmed the request, which leaves queue 'quote-requests' unanswered when its 1.0 s expiration passes" in str(
        raised.value
    )
    time.sleep(0.5)
    assert quote_broker.drain(REQUEST_QUEUE) == []


def test_the_wait_is_bounded_by_the_remaining_time(load_function, quote_broker, lambda_context):
    requester = load_function("quote_requester", REPLY_TIMEOUT_SECONDS="30")

    started = time.monotonic()
    with pytest.raises(requester.ReplyTimeout, match=r"within 1\.5 s"):
        requester.lambda_handler(REQUEST, dataclasses.replace(lambda_context, timeout_ms=2500))

    assert time.monotonic() - started < 3


def test_too_little_time_left_sends_nothing(requester, quote_broker, lambda_context):
    with pytest.raises(ValueError, match=r"only 0\.2 s would be left to wait for a reply .* nothing sent"):
        requester.lambda_handler(REQUEST, dataclasses.replace(lambda_context, timeout_ms=1200))

    assert quote_broker.drain(REQUEST_QUEUE) == []


def test_an_error_reply_raises_quote_refused_with_the_reason(requester, quote_broker, test_requester, lambda_context, in_thread):
    asked = in_thread(requester.lambda_handler, REQUEST, lambda_context)
    _, properties, _ = fetch_request(quote_broker)
    refusal = {"status": "error", "error": "no price list for customer c-0001"}
    test_requester.channel.basic_publish("", properties.reply_to, json.dumps(refusal).encode(), pika.BasicProperties(correlation_id=properties.correlation_id))

    with pytest.raises(requester.QuoteRefused, match=rf"^the quote service refused request {properties.correlation_id}: no price list for customer c-0001$"):
        asked.result(timeout=10)


def test_a_missing_request_queue_is_a_clear_error(load_function, lambda_context):
    requester = load_function("quote_requester", REQUEST_QUEUE="no-such-queue")

    with pytest.raises(requester.BrokerError, match=r"unroutable: there is no queue 'no-such-queue' in virtual host"):
        requester.lambda_handler(REQUEST, lambda_context)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"items": []}, r"items: .*at least 1 item"),
        ({"items": [{"sku": "SKU-A1", "quantity": 0}]}, r"items.0.quantity: .*greater than or equal to 1"),
        ({"items": [{"sku": "sku-a1", "quantity": 1}]}, r"items.0.sku: "),
        ({"customer_id": "0001"}, r"customer_id: "),
        ({"currency": "EUR"}, r"currency: Extra inputs are not permitted"),
    ],
)
def test_an_invalid_request_sends_nothing(requester, quote_broker, lambda_context, change, reason):
    with pytest.raises(ValueError, match=rf"^invalid quote request, nothing sent: .*{reason}"):
        requester.lambda_handler({**REQUEST, **change}, lambda_context)

    assert quote_broker.drain(REQUEST_QUEUE) == []


DEEPLY_NESTED = "[" * 1000 + "]" * 1000


def nested(depth):
    """``depth`` lists one inside the other, built without recursion."""
    value = []
    for _ in range(depth - 1):
        value = [value]
    return value


def test_a_reply_too_deeply_nested_to_decode_is_a_quote_refused_not_a_crash(requester, quote_broker, test_requester, lambda_context, in_thread):
    asked = in_thread(requester.lambda_handler, REQUEST, lambda_context)
    _, properties, _ = fetch_request(quote_broker)
    test_requester.channel.basic_publish("", properties.reply_to, DEEPLY_NESTED.encode(), pika.BasicProperties(correlation_id=properties.correlation_id))

    with pytest.raises(
        requester.QuoteRefused,
        match=rf"^the reply to quote request {properties.correlation_id} is not a quote answer: reply: Invalid JSON: recursion limit exceeded",
    ):
        asked.result(timeout=10)


@pytest.mark.parametrize("field", ["items", "customer_id", "extra"])
def test_a_deeply_nested_request_is_refused_and_sends_nothing(requester, quote_broker, lambda_context, field):
    # A direct invocation's payload is JSON that the runtime has decoded already: as deep as its decoder allows.
    with pytest.raises(ValueError, match=r"^invalid quote request, nothing sent: "):
        requester.lambda_handler({**REQUEST, field: nested(990)}, lambda_context)

    assert quote_broker.drain(REQUEST_QUEUE) == []


# --- the responder ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("quantity", "discount", "amount"),
    [(9, "0.00", "144.63"), (10, "16.07", "144.63"), (15, "24.11", "216.94")],
)
def test_lines_of_ten_or_more_get_ten_percent_off_rounded_half_up(responder, quantity, discount, amount):
    request = QuoteRequestV1.model_validate({"schema_version": 1, "customer_id": "c-1", "items": [{"sku": "SKU-B2", "quantity": quantity}]})

    [line] = responder.price(request).model_dump(mode="json")["lines"]

    assert (line["unit_price"], line["discount"], line["amount"]) == ("16.07", discount, amount)


def test_every_unit_price_is_between_5_and_100(responder):
    prices = {responder.unit_price(f"SKU-{n}") for n in range(2000)}

    assert min(prices) >= Decimal("5.00") and max(prices) <= Decimal("100.00")
    assert len(prices) > 1000


@pytest.mark.parametrize(
    ("body", "data", "reason"),
    [
        (None, "%%% not base64 %%%", r"^not a valid quote request: data is not base64: "),
        (b'{"schema_version": 1, ', None, r"^not a valid quote request: body: Invalid JSON: EOF while parsing a value at line 1 column 22$"),
        (b"\xff\xfe{}", None, r"^not a valid quote request: body is not UTF-8 text: "),
        (wire_request(items=[]), None, r"^not a valid quote request: items: .*at least 1 item"),
        (wire_request(schema_version=2), None, r"^not a valid quote request: schema_version: Input should be 1$"),
        (wire_request(customer_id=7), None, r"^not a valid quote request: customer_id: Input should be a valid string"),
        ([1, 2], None, r"^not a valid quote request: body: "),
    ],
)
def test_a_bad_request_gets_an_error_reply(responder, quote_broker, test_requester, lambda_context, body, data, reason):
    correlation_id = test_requester.publish(body if body is not None else wire_request())
    method, properties, raw = fetch_request(quote_broker)
    message = lambda_message(method, properties, raw)
    if data is not None:
        message["data"] = data

    assert responder.lambda_handler(rmq_event(quote_broker, message), lambda_context) == {"requests": 1, "answered": 1}

    [(replied_to, reply)] = test_requester.wait_for_replies(1)
    assert replied_to == correlation_id
    assert reply["status"] == "error"
    assert reply.keys() == {"status", "error"}
    assert re.search(reason, reply["error"]), reply["error"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (DEEPLY_NESTED.encode(), r"^not a valid quote request: body: Invalid JSON: recursion limit exceeded"),
        (b'{"schema_version": 1, "items": ' + DEEPLY_NESTED.encode() + b"}", r"^not a valid quote request: body: Invalid JSON: recursion limit exceeded"),
        (b"42", r"^not a valid quote request: body: Input should be an object$"),
        (b"null", r"^not a valid quote request: body: Input should be an object$"),
        (b'"a quote please"', r"^not a valid quote request: body: Input should be an object$"),
    ],
    ids=["nested arrays", "nested in a field", "number", "null", "string"],
)
def test_a_deeply_nested_or_non_object_request_gets_an_error_reply_and_the_rest_of_the_batch_is_answered(
    responder, quote_broker, test_requester, lambda_context, body, reason
):
    bad = test_requester.publish(body)
    good = test_requester.publish(wire_request())
    messages = [lambda_message(*fetch_request(quote_broker)) for _ in range(2)]

    assert responder.lambda_handler(rmq_event(quote_broker, *messages), lambda_context) == {"requests": 2, "answered": 2}

    [(first, error), (second, quote)] = test_requester.wait_for_replies(2)
    assert (first, second) == (bad, good)
    assert error["status"] == "error" and re.search(reason, error["error"]), error
    assert quote == {"status": "ok", "quote": QUOTE}


def test_any_exception_while_reading_a_request_gets_an_error_reply(responder, quote_broker, test_requester, lambda_context, monkeypatch):
    def validate(*_args, **_kwargs):
        raise TypeError("unhashable type: 'list'")

    monkeypatch.setattr(QuoteRequestV1.Consumer, "model_validate", validate)
    monkeypatch.setattr(QuoteRequestV1.Consumer, "model_validate_json", validate)  # the one-pass read of JSON text
    correlation_id = test_requester.publish(wire_request())

    assert responder.lambda_handler(rmq_event(quote_broker, lambda_message(*fetch_request(quote_broker))), lambda_context) == {"requests": 1, "answered": 1}

    assert test_requester.wait_for_replies(1) == [
        (correlation_id, {"status": "error", "error": "not a valid quote request: the body cannot be read: TypeError: unhashable type: 'list'"})
    ]


@pytest.mark.parametrize(
    ("shape", "place", "reason"),
    [
        ("not an object", "[1]", "not a message object (str)"),
        ("properties not an object", "[1]", "basicProperties is list, expected an object"),
        ("messages not a list", "", "the messages are dict, expected a list"),
    ],
)
def test_a_message_lambda_would_never_send_fails_the_batch_with_a_clear_reason(
    responder, quote_broker, test_requester, lambda_context, caplog, capsys, shape, place, reason
):
    answered = test_requester.publish(wire_request())
    good = lambda_message(*fetch_request(quote_broker))
    key = f"{REQUEST_QUEUE}::{quote_broker.name}"
    if shape == "messages not a list":
        event = RabbitMQEvents().event({key: {"0": good}})
    else:
        odd = "a request" if shape == "not an object" else dict(good, basicProperties=[["replyTo", "x"]])
        event = rmq_event(quote_broker, good, odd)
    capsys.readouterr()

    with pytest.raises(BatchFailed) as raised:
        responder.lambda_handler(event, lambda_context)

    total = 1 if shape == "messages not a list" else 2
    assert str(raised.value) == f"1 of {total} messages failed; the broker redelivers the batch: {key}{place}: {reason}"
    [logged] = [r for r in caplog.records if r.getMessage() == "Message failed"]
    assert (logged.levelname, logged.place, logged.reason) == ("ERROR", f"{key}{place}", reason)
    assert metric_totals(capsys.readouterr().out)["UnanswerableRequests"] == 1
    if shape != "messages not a list":
        assert test_requester.wait_for_replies(1) == [(answered, {"status": "ok", "quote": QUOTE})]


def test_a_request_without_correlation_id_gets_an_error_reply(responder, quote_broker, test_requester, lambda_context):
    test_requester.publish(wire_request(), correlation_id=None)
    message = lambda_message(*fetch_request(quote_broker))

    responder.lambda_handler(rmq_event(quote_broker, message), lambda_context)

    [(replied_to, reply)] = test_requester.wait_for_replies(1)
    assert replied_to is None
    assert reply == {"status": "error", "error": "no correlationId: the requester could not match a reply to its request"}


@pytest.mark.parametrize("body", [wire_request(), b"not json"], ids=["valid", "bad"])
def test_a_request_without_reply_to_fails_the_batch_with_its_reason(responder, quote_broker, test_requester, lambda_context, caplog, capsys, body):
    test_requester.publish(body, reply_to=None)
    message = lambda_message(*fetch_request(quote_broker))
    capsys.readouterr()

    with pytest.raises(BatchFailed) as raised:
        responder.lambda_handler(rmq_event(quote_broker, message), lambda_context)

    why = "no replyTo" if isinstance(body, dict) else "not a valid quote request: body: Invalid JSON: expected ident at line 1 column 2"
    [failure] = raised.value.failures
    assert (failure.place, failure.reason) == (f"{REQUEST_QUEUE}::{quote_broker.name}[0]", f"a request without replyTo ({why})")
    [record] = [r for r in caplog.records if r.getMessage() == "Message failed"]
    assert (record.levelname, record.reason, record.redelivered) == ("ERROR", failure.reason, False)
    totals = metric_totals(capsys.readouterr().out)
    assert (totals["UnanswerableRequests"], totals["RejectedMessages"], totals["FailedMessages"]) == (1, 1, 1)
    assert test_requester.wait_for_replies(1, timeout=0.5) == []


def test_a_reply_that_cannot_be_sent_fails_the_batch_after_the_rest_are_answered(responder, quote_broker, test_requester, lambda_context):
    lost = test_requester.publish(wire_request(), reply_to="no-such-reply-queue")
    answered = test_requester.publish(wire_request())
    messages = [lambda_message(*fetch_request(quote_broker)) for _ in range(2)]

    with pytest.raises(BatchFailed) as raised:
        responder.lambda_handler(rmq_event(quote_broker, *messages), lambda_context)

    assert str(raised.value) == (
        f"1 of 2 messages failed; the broker redelivers the batch: {REQUEST_QUEUE}::{quote_broker.name}[0]: ReplyNotSent: "
        f"correlationId {lost}: unroutable: there is no queue 'no-such-reply-queue' in virtual host '{quote_broker.name}' (returned by the broker)"
    )
    assert test_requester.wait_for_replies(1) == [(answered, {"status": "ok", "quote": QUOTE})]


def test_a_connection_lost_mid_batch_fails_it_and_the_redelivery_is_answered(responder, quote_broker, test_requester, lambda_context, monkeypatch):
    first, second = test_requester.publish(wire_request()), test_requester.publish(wire_request())
    event = rmq_event(quote_broker, *[lambda_message(*fetch_request(quote_broker)) for _ in range(2)])
    real_publish = pika.adapters.blocking_connection.BlockingChannel.basic_publish
    published = []

    def publish_then_lose_the_connection(channel, *args, **kwargs):
        if len(published) == 1:
            assert quote_broker.close_function_connections("broker restart") == 1
        published.append(1)
        return real_publish(channel, *args, **kwargs)

    monkeypatch.setattr(pika.adapters.blocking_connection.BlockingChannel, "basic_publish", publish_then_lose_the_connection)
    with pytest.raises(BatchFailed, match=rf"^1 of 2 messages failed; .*\[1\]: ReplyNotSent: correlationId {second}: the connection or channel was lost"):
        responder.lambda_handler(event, lambda_context)
    monkeypatch.undo()

    assert responder.lambda_handler(RabbitMQEvents.redelivery(event), lambda_context) == {"requests": 2, "answered": 2}
    # The first request was answered twice: requesters drop the replies they are not waiting for.
    assert [correlation_id for correlation_id, _ in test_requester.wait_for_replies(3)] == [first, first, second]


def test_a_redelivered_request_gets_the_same_quote(responder, quote_broker, test_requester, lambda_context):
    test_requester.publish(wire_request())
    event = rmq_event(quote_broker, lambda_message(*fetch_request(quote_broker)))

    responder.lambda_handler(event, lambda_context)
    responder.lambda_handler(RabbitMQEvents.redelivery(event), lambda_context)

    [(_, once), (_, again)] = test_requester.wait_for_replies(2)
    assert once == again == {"status": "ok", "quote": QUOTE}


def test_the_reply_goes_out_on_the_virtual_host_the_event_names(load_function, quote_broker, test_requester, lambda_context):
    # The functions' user has no access to "/": only the event's virtual host can work.
    responder = load_function("quote_responder", VIRTUAL_HOST="/")
    correlation_id = test_requester.publish(wire_request())

    responder.lambda_handler(rmq_event(quote_broker, lambda_message(*fetch_request(quote_broker))), lambda_context)

    assert test_requester.wait_for_replies(1) == [(correlation_id, {"status": "ok", "quote": QUOTE})]


def test_an_event_that_is_not_from_rabbitmq_is_refused(responder, lambda_context):
    with pytest.raises(ValueError, match=r'^not an Amazon MQ for RabbitMQ event: expected an object with "eventSource": "aws:rmq" and "rmqMessagesByQueue"'):
        responder.lambda_handler({"Records": []}, lambda_context)


def test_requester_and_responder_keep_one_connection_each_between_invocations(requester, responder, quote_broker, lambda_context, in_thread):
    for _ in range(3):
        asked = in_thread(requester.lambda_handler, REQUEST, lambda_context)
        responder.lambda_handler(rmq_event(quote_broker, lambda_message(*fetch_request(quote_broker))), lambda_context)
        asked.result(timeout=10)

    assert len(quote_broker.function_connections()) == 2
