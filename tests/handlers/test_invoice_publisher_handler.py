"""The invoice publisher over STOMP, against the local RabbitMQ's STOMP adapter, in a virtual host of this module's own.

The adapter maps ``/queue/<name>`` to a durable queue of that name and sends
the receipt of a persistent SEND only once the broker has confirmed the
message, which is the promise ActiveMQ's receipts make too. Connection loss
and a silent network path are made with a TCP relay in front of the broker.
"""

import dataclasses
import json
import ssl
import time
import uuid

import pytest
import stomp

from tests.handlers.record_shapes import nested

# The broker fixtures: rabbitmq, broker_vhost, broker_secret, broker_env, stomp_relay.
pytest_plugins = ("tests.handlers.rabbitmq",)

QUEUE = "erp-invoices"
LIMITED_QUEUE = "erp-invoices-limited"


@pytest.fixture(scope="module")
def stomp_broker(broker_env, broker_vhost):
    """The STOMP port, the ERP's queue name, and a queue that holds one message and refuses more."""
    broker_env.setenv("BROKER_PORT", str(broker_vhost.stomp_port))
    broker_env.setenv("QUEUE_NAME", QUEUE)
    broker_env.setenv("RECEIPT_TIMEOUT_SECONDS", "5")
    channel = broker_vhost.connect().channel()
    channel.queue_declare(LIMITED_QUEUE, durable=True, arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    return broker_vhost


@pytest.fixture
def load_publisher(stomp_broker, load_handler, monkeypatch):
    """``load_publisher(**env)``: the function, imported with its environment; its connection is dropped after the test."""
    modules = []
    for queue in (QUEUE, LIMITED_QUEUE):
        stomp_broker.drain(queue)

    def load(**env):
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        module = load_handler("invoice_publisher")
        modules.append(module)
        return module

    yield load
    for module in modules:
        module.client.reset()


@pytest.fixture
def publisher(load_publisher):
    return load_publisher()


@pytest.fixture
def relay(stomp_broker, stomp_relay):
    return stomp_relay


def invoice(index, **overrides):
    item = {
        "schema_version": 1,
        "invoice_id": f"inv-{index:04d}",
        "order_id": f"o-{index:04d}",
        "customer_id": f"c-{index % 3:04d}",
        "amount": f"{10 + index * 7.35:.2f}",
        "currency": "EUR",
        "status": "issued",
        "issued_at": "2025-03-14T10:26:53+01:00",
    }
    item.update(overrides)
    return item


def request(count, start=0):
    return {"invoices": [invoice(i) for i in range(start, start + count)]}


def labels(count, start=0):
    """Invoice events as errors name them."""
    return [f"inv-{i:04d} issued" for i in range(start, start + count)]


def on_queue(broker, queue=QUEUE):
    return [f"{properties.headers['invoice_id']} {properties.headers['invoice_status']}" for _, properties, _ in broker.drain(queue)]


def test_every_invoice_is_on_the_queue_as_persistent_json(publisher, stomp_broker, lambda_context):
    sent = request(4)
    sent["invoices"][3]["status"] = "paid"

    result = publisher.lambda_handler(sent, lambda_context)

    assert result == {"published": 4, "invoices": [{"invoice_id": i["invoice_id"], "status": i["status"]} for i in sent["invoices"]]}
    messages = stomp_broker.drain(QUEUE)
    assert len(messages) == 4
    for (_, properties, body), item in zip(messages, sent["invoices"], strict=True):
        assert properties.delivery_mode == 2
        assert properties.content_type == "application/json"
        assert properties.type == "invoice"
        assert (properties.headers["invoice_id"], properties.headers["invoice_status"]) == (item["invoice_id"], item["status"])
        assert json.loads(body) == {**item, "issued_at": "2025-03-14T09:26:53Z"}


@pytest.mark.parametrize(("given", "sent"), [("123.45", "123.45"), (123.45, "123.45"), (7, "7"), ("0.0001", "0.0001"), (1e-4, "0.0001")])
def test_the_amount_goes_on_as_a_decimal_string(publisher, stomp_broker, lambda_context, given, sent):
    publisher.lambda_handler({"invoices": [invoice(1, amount=given)]}, lambda_context)

    [(_, _, body)] = stomp_broker.drain(QUEUE)
    assert json.loads(body)["amount"] == sent


def test_what_is_sent_is_what_the_invoice_consumer_reads(publisher, stomp_broker, load_handler, monkeypatch, lambda_context):
    sent = {"invoices": [invoice(1, amount=99.9), invoice(1, status="paid"), invoice(2, status="voided", amount="0")]}
    publisher.lambda_handler(sent, lambda_context)
    monkeypatch.setenv("EVENT_BUS_NAME", "blueprints")
    monkeypatch.setenv("IDEMPOTENCY_TABLE_NAME", "idempotency")
    consumer = load_handler("invoice_consumer")

    read = [consumer.parse_json(consumer.INVOICE, body) for _, _, body in stomp_broker.drain(QUEUE)]

    assert [(e.invoice_id, e.status, json.loads(consumer.detail(e))["amount"]) for e in read] == [
        ("inv-0001", "issued", "99.9"),
        ("inv-0001", "paid", "17.35"),
        ("inv-0002", "voided", "0"),
    ]


def test_the_queue_is_durable_and_the_broker_holds_every_message_as_persistent(publisher, stomp_broker, lambda_context):
    publisher.lambda_handler(request(6), lambda_context)

    info = stomp_broker.queue_info(QUEUE)
    assert info["durable"] == "true"
    assert (info["messages"], info["messages_persistent"]) == ("6", "6")


def test_an_error_frame_fails_the_invocation_and_nothing_is_reported_as_sent(publisher, stomp_broker, lambda_context):
    stomp_broker.set_permissions(".*", "^$", ".*")
    try:
        with pytest.raises(publisher.ReceiptsMissing) as raised:
            publisher.lambda_handler(request(3), lambda_context)
    finally:
        stomp_broker.set_permissions(".*", ".*", ".*")

    message = str(raised.value)
    assert message.startswith("0 of 3 invoice(s) confirmed by the broker: the broker sent an ERROR frame (access_refused: ACCESS_REFUSED - access to exchange")
    assert raised.value.confirmed == []
    assert on_queue(stomp_broker) == []


def test_a_message_the_broker_refuses_is_not_reported_as_sent(load_publisher, stomp_broker, lambda_context):
    # The queue takes one message and refuses the next; the adapter then closes the connection without a receipt.
    publisher = load_publisher(DESTINATION_PREFIX="/amq/queue/", QUEUE_NAME=LIMITED_QUEUE)

    with pytest.raises(publisher.ReceiptsMissing, match=r"^1 of 3 invoice\(s\) confirmed by the broker: ") as raised:
        publisher.lambda_handler(request(3), lambda_context)

    assert raised.value.confirmed == ["inv-0000 issued"]
    assert "inv-0001 issued" in str(raised.value)
    assert on_queue(stomp_broker, LIMITED_QUEUE) == ["inv-0000 issued"]


def test_a_missing_receipt_fails_the_invocation_after_the_receipt_timeout(load_publisher, stomp_broker, relay, lambda_context):
    publisher = load_publisher(BROKER_PORT=str(relay.port), RECEIPT_TIMEOUT_SECONDS="1")
    assert publisher.lambda_handler(request(2), lambda_context)["published"] == 2
    relay.stall()

    started = time.monotonic()
    with pytest.raises(publisher.ReceiptsMissing) as raised:
        publisher.lambda_handler(request(3, start=2), lambda_context)

    assert 1.0 <= time.monotonic() - started < 4
    assert str(raised.value) == (
        "0 of 3 invoice(s) confirmed by the broker: no receipt for 3 invoice(s) within 1.0 s; "
        "sent without a receipt (may or may not be on the queue): inv-0002 issued, inv-0003 issued, inv-0004 issued"
    )
    # The broker did take them: only their receipts were lost, which is why the error cannot say they are not there.
    assert on_queue(stomp_broker) == labels(5)


def test_the_remaining_time_bounds_the_wait_for_receipts(load_publisher, relay, lambda_context):
    publisher = load_publisher(BROKER_PORT=str(relay.port), RECEIPT_TIMEOUT_SECONDS="30")
    publisher.lambda_handler(request(1), lambda_context)
    relay.stall()

    started = time.monotonic()
    with pytest.raises(publisher.ReceiptsMissing, match=r"no receipt for 2 invoice\(s\) within 1\.\d s"):
        publisher.lambda_handler(request(2, start=1), dataclasses.replace(lambda_context, timeout_ms=2500))

    assert time.monotonic() - started < 3


def test_a_connection_lost_mid_publish_reports_only_what_was_confirmed(load_publisher, stomp_broker, relay, lambda_context, monkeypatch):
    publisher = load_publisher(BROKER_PORT=str(relay.port))
    real_send = stomp.Connection12.send
    sends = []

    def send_then_lose_the_connection(connection, *args, **kwargs):
        if len(sends) == 2:
            relay.cut()
            time.sleep(0.2)
        sends.append(1)
        return real_send(connection, *args, **kwargs)

    monkeypatch.setattr(stomp.Connection12, "send", send_then_lose_the_connection)

    with pytest.raises(publisher.ReceiptsMissing) as raised:
        publisher.lambda_handler(request(5), lambda_context)

    error = raised.value
    confirmed = error.confirmed
    assert str(error).startswith(f"{len(confirmed)} of 5 invoice(s) confirmed by the broker: the connection")
    assert len(confirmed) <= 2
    assert confirmed + error.unconfirmed + error.not_sent == labels(5)
    assert set(confirmed) <= set(on_queue(stomp_broker))


def test_the_next_invocation_connects_again_after_the_connection_was_lost(load_publisher, stomp_broker, relay, lambda_context):
    publisher = load_publisher(BROKER_PORT=str(relay.port))
    publisher.lambda_handler(request(2), lambda_context)
    relay.cut()
    time.sleep(0.2)

    assert publisher.lambda_handler(request(3, start=2), lambda_context)["published"] == 3
    assert relay.connections == 2
    assert on_queue(stomp_broker) == labels(5)


def test_one_connection_serves_every_invocation_of_an_execution_environment(load_publisher, relay, lambda_context):
    publisher = load_publisher(BROKER_PORT=str(relay.port))

    for start in range(0, 6, 2):
        publisher.lambda_handler(request(2, start=start), lambda_context)

    assert relay.connections == 1


def test_a_connection_idle_longer_than_the_limit_is_made_again(load_publisher, relay, lambda_context, monkeypatch):
    publisher = load_publisher(BROKER_PORT=str(relay.port))
    publisher.lambda_handler(request(1), lambda_context)
    monkeypatch.setattr(publisher.client, "settings", dataclasses.replace(publisher.client.settings, idle_reconnect_seconds=0.0))

    publisher.lambda_handler(request(1, start=1), lambda_context)

    assert relay.connections == 2


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"amount": -1}, r"invoices\[2\]: amount: Value error, must be a decimal written as text, such as 123.45"),
        ({"amount": "10.00001"}, r"invoices\[2\]: amount: Value error, must be a decimal written as text"),
        ({"amount": "-1.00"}, r"invoices\[2\]: amount: Value error, must be a decimal written as text"),
        ({"amount": "1e3"}, r"invoices\[2\]: amount: Value error, must be a decimal written as text"),
        ({"amount": "NaN"}, r"invoices\[2\]: amount: Value error, must be a decimal written as text"),
        ({"amount": 1e15}, r"invoices\[2\]: amount: Value error, must be a decimal written as text"),
        ({"amount": True}, r"invoices\[2\]: amount: Value error, must be a decimal written as text"),
        ({"status": "overdue"}, r"invoices\[2\]: status: Input should be 'issued', 'paid' or 'voided'"),
        ({"currency": "eur"}, r"invoices\[2\]: currency: "),
        ({"invoice_id": "INV-1"}, r"invoices\[2\]: invoice_id: "),
        ({"customer_id": "c 1"}, r"invoices\[2\]: customer_id: "),
        ({"schema_version": 2}, r"invoices\[2\]: schema_version: Input should be 1"),
        ({"issued_at": "2025-03-14"}, r"invoices\[2\]: issued_at: "),
        ({"issued_at": 1741944413}, r"invoices\[2\]: issued_at: .*ISO 8601"),
        ({"due_at": "2025-04-14T00:00:00Z"}, r"invoices\[2\]: due_at: Extra inputs are not permitted"),
        ({"invoice_id": "inv-0000"}, r"invoices\[2\]: inv-0000 issued is also invoices\[0\]"),
    ],
)
def test_an_invalid_invoice_names_its_index_and_nothing_is_sent(publisher, stomp_broker, lambda_context, change, reason):
    sent = request(4)
    sent["invoices"][2].update(change)

    with pytest.raises(ValueError, match=reason):
        publisher.lambda_handler(sent, lambda_context)

    assert publisher.client.connection is None
    assert on_queue(stomp_broker) == []


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ({}, r'"invoices" list'),
        ({"invoices": []}, r'non-empty "invoices" list'),
        ({"invoices": [invoice(i) for i in range(101)]}, r"101 invoices in one request, at most 100"),
        ({"invoices": [None]}, r"invoices\[0\]: invoice: "),
    ],
)
def test_a_malformed_request_is_refused(publisher, lambda_context, event, reason):
    with pytest.raises(ValueError, match=reason):
        publisher.lambda_handler(event, lambda_context)


def test_the_hosts_of_an_active_standby_broker_are_tried_in_order(load_publisher, stomp_broker, lambda_context):
    publisher = load_publisher(BROKER_HOST="standby.invalid, 127.0.0.1")

    assert publisher.lambda_handler(request(2), lambda_context)["published"] == 2
    assert on_queue(stomp_broker) == labels(2)


def test_no_reachable_host_is_a_clear_error(load_publisher, lambda_context):
    publisher = load_publisher(BROKER_HOST="active.invalid,standby.invalid")

    with pytest.raises(publisher.BrokerError, match=r"^could not connect to stomp://active.invalid:61613, stomp://standby.invalid:61613 \("):
        publisher.lambda_handler(request(1), lambda_context)


def test_a_broker_that_refuses_the_credentials_is_a_clear_error(load_publisher, moto_module, stomp_broker, lambda_context):
    import boto3

    wrong = boto3.client("secretsmanager").create_secret(
        Name=f"wrong-{uuid.uuid4().hex[:6]}", SecretString=json.dumps({"username": stomp_broker.user, "password": "not-the-password"})
    )
    publisher = load_publisher(BROKER_SECRET_ARN=wrong["ARN"])

    with pytest.raises(publisher.BrokerError, match=rf"stomp://127.0.0.1:61613 refused the connection for user '{stomp_broker.user}': Bad CONNECT"):
        publisher.lambda_handler(request(1), lambda_context)


def test_tls_is_the_default_and_a_plain_stomp_port_is_refused(load_publisher, monkeypatch, lambda_context):
    monkeypatch.delenv("BROKER_TLS")
    publisher = load_publisher()

    with pytest.raises(publisher.BrokerError, match=r"could not connect to stomp\+ssl://127.0.0.1:61613"):
        publisher.lambda_handler(request(1), lambda_context)


def test_tls_verifies_the_certificate_against_the_system_store_and_the_host_name(load_publisher, monkeypatch):
    monkeypatch.setenv("BROKER_TLS", "true")
    publisher = load_publisher(BROKER_HOST="b-1234-1.mq.us-east-1.on.aws", BROKER_PORT="61614")

    settings = publisher.client.settings.new_connection().transport.get_ssl(("b-1234-1.mq.us-east-1.on.aws", 61614))

    assert settings["verify"] is True
    assert settings["ca_certs"] is None
    assert settings["ssl_version"] == ssl.PROTOCOL_TLS_CLIENT
    assert ssl.SSLContext(settings["ssl_version"]).check_hostname is True


def test_tls_covers_every_host(load_publisher, monkeypatch):
    monkeypatch.setenv("BROKER_TLS", "true")
    publisher = load_publisher(BROKER_HOST="b-1234-1.mq.us-east-1.on.aws,b-1234-2.mq.us-east-1.on.aws", BROKER_PORT="61614")

    transport = publisher.client.settings.new_connection().transport

    assert [transport.get_ssl((f"b-1234-{n}.mq.us-east-1.on.aws", 61614))["verify"] for n in (1, 2)] == [True, True]


def test_broker_tls_must_be_true_or_false(load_publisher):
    with pytest.raises(ValueError, match=r"BROKER_TLS must be true or false, got 'on'"):
        load_publisher(BROKER_TLS="on")


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (nested(990), r'"invoices" list'),
        ({"invoices": nested(990)}, r"^1 invalid invoice\(s\), nothing sent: invoices\[0\]: invoice: Input should be a valid dictionary"),
        ({"invoices": [invoice(0, amount=nested(990))]}, r"invoices\[0\]: amount: "),
        ({"invoices": [invoice(0, lines=nested(990))]}, r"invoices\[0\]: lines: Extra inputs are not permitted"),
    ],
    ids=["the request", "the invoices", "a field", "an unknown field"],
)
def test_a_deeply_nested_request_is_refused_and_nothing_is_sent(publisher, stomp_broker, lambda_context, event, reason):
    # A direct invocation's payload is JSON the runtime has decoded already: as deep as its decoder allows.
    with pytest.raises(ValueError, match=reason):
        publisher.lambda_handler(event, lambda_context)
