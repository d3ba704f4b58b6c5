"""The shipment publisher against the local RabbitMQ, in a virtual host of this module's own."""

import json
import ssl
import uuid

import pika
import pytest
from pika.adapters.blocking_connection import BlockingChannel

from messaging_runtime.amazon_mq import decode_rabbitmq_event
from tests.handlers.mq_events import RabbitMQEvents
from tests.handlers.record_shapes import nested

# The broker fixtures: rabbitmq, broker_vhost, broker_secret, broker_env.
pytest_plugins = ("tests.handlers.rabbitmq",)

EXCHANGE = "warehouse.shipments"
QUEUE = "warehouse-shipment-updates"
# The warehouse here takes every status but "delayed", which no queue is bound for.
BOUND_STATUSES = ("picked", "packed", "shipped", "delivered")
LIMITED_EXCHANGE = "warehouse.limited"
LIMITED_QUEUE = "warehouse-limited"


@pytest.fixture(scope="module")
def topology(broker_env, broker_vhost):
    """The warehouse's exchange and durable queue, and an exchange whose only queue holds one message and refuses more."""
    channel = broker_vhost.connect().channel()
    channel.exchange_declare(EXCHANGE, exchange_type="topic", durable=True)
    channel.queue_declare(QUEUE, durable=True)
    for status in BOUND_STATUSES:
        channel.queue_bind(QUEUE, EXCHANGE, routing_key=f"shipment.{status}")
    channel.exchange_declare(LIMITED_EXCHANGE, exchange_type="topic", durable=True)
    channel.queue_declare(LIMITED_QUEUE, durable=True, arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    channel.queue_bind(LIMITED_QUEUE, LIMITED_EXCHANGE, routing_key="shipment.#")
    return broker_vhost


@pytest.fixture
def load_publisher(topology, load_handler, monkeypatch):
    """``load_publisher(**env)``: the function, imported with its environment; its connection is closed after the test."""
    modules = []
    for queue in (QUEUE, LIMITED_QUEUE):
        topology.drain(queue)

    def load(**env):
        monkeypatch.setenv("EXCHANGE_NAME", EXCHANGE)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        module = load_handler("shipment_publisher")
        modules.append(module)
        return module

    yield load
    for module in modules:
        module.broker.close()


@pytest.fixture
def publisher(load_publisher):
    return load_publisher()


def as_lambda_message(delivered):
    """What the broker delivered, as Lambda's RabbitMQ event source mapping passes it."""
    _, properties, body = delivered
    return RabbitMQEvents().message(body, content_type=properties.content_type, message_id=properties.message_id, type=properties.type)


def update(index, status="shipped", **overrides):
    item = {
        "schema_version": 1,
        "shipment_id": f"s-{index:04d}",
        "order_id": f"o-{index:04d}",
        "status": status,
        "occurred_at": f"2025-03-14T09:{index % 60:02d}:53+00:00",
    }
    item.update(overrides)
    return item


def request(count, status="shipped"):
    return {"shipments": [update(i, status) for i in range(count)]}


def test_every_update_is_on_the_queue_as_persistent_json_with_its_message_id(publisher, topology, lambda_context):
    sent = {"shipments": [update(i, status) for i, status in enumerate(BOUND_STATUSES)]}

    result = publisher.lambda_handler(sent, lambda_context)

    messages = topology.drain(QUEUE)
    assert result["published"] == len(BOUND_STATUSES)
    assert [properties.message_id for _, properties, _ in messages] == result["message_ids"]
    for (method, properties, body), item in zip(messages, sent["shipments"], strict=True):
        assert method.exchange == EXCHANGE
        assert method.routing_key == f"shipment.{item['status']}"
        assert properties.delivery_mode == 2
        assert properties.content_type == "application/json"
        assert json.loads(body) == {**item, "occurred_at": item["occurred_at"].replace("+00:00", "Z")}


def test_the_carrier_goes_in_the_body_when_given_and_is_not_part_of_the_message_id(publisher, topology, lambda_context):
    with_carrier = publisher.lambda_handler({"shipments": [update(1, carrier="DHL")]}, lambda_context)
    without = publisher.lambda_handler({"shipments": [update(1)]}, lambda_context)

    bodies = [json.loads(body) for _, _, body in topology.drain(QUEUE)]
    assert [body.get("carrier") for body in bodies] == ["DHL", None]
    assert "carrier" not in bodies[1]
    assert with_carrier["message_ids"] == without["message_ids"]


def test_what_is_published_is_what_the_shipment_consumer_reads(publisher, topology, load_function_module, monkeypatch, lambda_context):
    sent = {"shipments": [update(i, status, carrier="UPS") for i, status in enumerate(BOUND_STATUSES)]}
    sent["shipments"][0]["occurred_at"] = "2025-03-14T11:26:53.250+02:00"
    publisher.lambda_handler(sent, lambda_context)
    monkeypatch.setenv("SHIPMENTS_TABLE", "shipments")
    monkeypatch.setenv("EVENT_BUS_NAME", "blueprints")
    consumer = load_function_module("shipment_consumer")

    read = [
        consumer.read(message) for message in decode_rabbitmq_event(RabbitMQEvents().event({"q::/": [as_lambda_message(m) for m in topology.drain(QUEUE)]}))
    ]

    assert [(u.shipment_id, u.status, u.carrier) for u in read] == [(i["shipment_id"], i["status"], "UPS") for i in sent["shipments"]]
    assert consumer.shipment_table.utc_text(read[0].occurred_at) == "2025-03-14T09:26:53.250000Z"


def test_the_queue_is_durable_and_the_broker_holds_every_message_as_persistent(publisher, topology, lambda_context):
    publisher.lambda_handler(request(7), lambda_context)

    info = topology.queue_info(QUEUE)
    assert info["durable"] == "true"
    assert (info["messages"], info["messages_persistent"]) == ("7", "7")


def test_the_channel_publishes_in_confirm_mode(publisher, topology, lambda_context):
    publisher.lambda_handler(request(1), lambda_context)

    assert [channel["confirm"] for channel in topology.function_channels()] == ["true"]


def test_the_message_id_is_the_same_for_the_same_update_and_differs_otherwise(publisher, topology, lambda_context):
    first = publisher.lambda_handler({"shipments": [update(1)]}, lambda_context)["message_ids"]
    # The same moment written in another time zone is the same update.
    again = publisher.lambda_handler({"shipments": [update(1, occurred_at="2025-03-14T11:01:53+02:00")]}, lambda_context)["message_ids"]
    other_status = publisher.lambda_handler({"shipments": [update(1, status="delivered")]}, lambda_context)["message_ids"]
    other_time = publisher.lambda_handler({"shipments": [update(1, occurred_at="2025-03-14T09:01:54Z")]}, lambda_context)["message_ids"]

    assert first == again
    assert len({first[0], other_status[0], other_time[0]}) == 3
    assert uuid.UUID(first[0]).version == 5


def test_an_unroutable_update_fails_the_invocation_and_is_not_reported_as_sent(publisher, topology, lambda_context):
    sent = request(4)
    sent["shipments"][2]["status"] = "delayed"

    with pytest.raises(publisher.PublishError) as raised:
        publisher.lambda_handler(sent, lambda_context)

    message = str(raised.value)
    assert message.startswith("2 of 4 shipment update(s) confirmed by the broker before shipments[2] (s-0002 delayed) failed: unroutable")
    assert "routing key 'shipment.delayed'" in message
    assert message.endswith("; 1 later update(s) not sent")
    on_queue = [properties.message_id for _, properties, _ in topology.drain(QUEUE)]
    assert raised.value.confirmed_message_ids == on_queue
    assert len(on_queue) == 2


def test_a_nack_fails_the_invocation_and_is_not_reported_as_sent(load_publisher, topology, lambda_context):
    publisher = load_publisher(EXCHANGE_NAME=LIMITED_EXCHANGE)

    with pytest.raises(publisher.PublishError, match=r"^1 of 3 .* shipments\[1\] \(s-0001 shipped\) failed: the broker refused it \(nack\); 1 later"):
        publisher.lambda_handler(request(3), lambda_context)

    assert [properties.message_id for _, properties, _ in topology.drain(LIMITED_QUEUE)] == [update_id(update(0))]


def update_id(item):
    """What the broker has as the message id of an update that went through the function."""
    occurred_at = item["occurred_at"].replace("+00:00", "Z")
    return str(uuid.uuid5(uuid.UUID("8c4f6a0e-5b3d-4f7e-a1c2-3d9e7b6f0a15"), f"{item['shipment_id']}|{item['status']}|{occurred_at}"))


def test_a_connection_closed_by_the_broker_mid_publish_reports_only_what_was_confirmed(publisher, topology, lambda_context, monkeypatch):
    real_publish = BlockingChannel.basic_publish
    published = []

    def publish_then_lose_the_connection(channel, *args, **kwargs):
        if len(published) == 3:
            assert topology.close_function_connections("broker restart") == 1
        real_publish(channel, *args, **kwargs)
        published.append(kwargs.get("properties") or args[3])

    monkeypatch.setattr(BlockingChannel, "basic_publish", publish_then_lose_the_connection)

    with pytest.raises(publisher.PublishError) as raised:
        publisher.lambda_handler(request(6), lambda_context)

    message = str(raised.value)
    assert message.startswith("3 of 6 shipment update(s) confirmed by the broker before shipments[3] (s-0003 shipped) failed: the connection")
    assert "CONNECTION_FORCED - broker restart" in message
    assert message.endswith("2 later update(s) not sent")
    on_queue = [properties.message_id for _, properties, _ in topology.drain(QUEUE)]
    assert raised.value.confirmed_message_ids == on_queue == [update_id(update(i)) for i in range(3)]


def test_the_next_invocation_connects_again_after_the_broker_closed_the_connection(publisher, topology, lambda_context):
    publisher.lambda_handler(request(2), lambda_context)
    [before] = topology.function_connections()
    topology.close_function_connections("broker restart")

    result = publisher.lambda_handler(request(3), lambda_context)

    assert result["published"] == 3
    [after] = topology.function_connections()
    assert after != before
    assert len(topology.drain(QUEUE)) == 5


def test_one_connection_serves_every_invocation_of_an_execution_environment(publisher, topology, lambda_context):
    for _ in range(3):
        publisher.lambda_handler(request(2), lambda_context)
        assert len(topology.function_connections()) == 1
    assert len(topology.drain(QUEUE)) == 6


def test_rotated_credentials_are_read_again_when_the_broker_refuses_the_cached_ones(publisher, topology, broker_secret, lambda_context):
    import boto3

    publisher.lambda_handler(request(1), lambda_context)
    new_password = uuid.uuid4().hex
    topology.change_password(new_password)
    boto3.client("secretsmanager").put_secret_value(SecretId=broker_secret, SecretString=json.dumps({"username": topology.user, "password": new_password}))
    try:
        topology.close_function_connections("password changed")

        assert publisher.lambda_handler(request(2), lambda_context)["published"] == 2
    finally:
        topology.change_password(topology.password)
        boto3.client("secretsmanager").put_secret_value(
            SecretId=broker_secret, SecretString=json.dumps({"username": topology.user, "password": topology.password})
        )


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"status": "dispatched"}, r"shipments\[3\]: status: Input should be 'picked', "),
        ({"carrier": ""}, r"shipments\[3\]: carrier: .*at least 1 character"),
        ({"schema_version": 2}, r"shipments\[3\]: schema_version: Input should be 1"),
        ({"schema_version": "1"}, r"shipments\[3\]: schema_version: "),
        ({"shipment_id": "S-1"}, r"shipments\[3\]: shipment_id: "),
        ({"order_id": "o-"}, r"shipments\[3\]: order_id: "),
        ({"occurred_at": "2025-03-14T09:26:53"}, r"shipments\[3\]: occurred_at: .*timezone"),
        ({"occurred_at": 1741944413}, r"shipments\[3\]: occurred_at: .*ISO 8601"),
        ({"tracking_url": "https://example.com"}, r"shipments\[3\]: tracking_url: Extra inputs are not permitted"),
        ({"shipment_id": "s-0001"}, r"shipments\[3\]: the same update as shipments\[1\]"),
    ],
)
def test_an_invalid_update_names_its_index_and_nothing_is_published(publisher, topology, lambda_context, change, reason):
    sent = request(5)
    sent["shipments"][3].update(change)
    if change.get("shipment_id") == "s-0001":
        sent["shipments"][3]["occurred_at"] = sent["shipments"][1]["occurred_at"]

    with pytest.raises(ValueError, match=reason):
        publisher.lambda_handler(sent, lambda_context)

    assert topology.function_connections() == []
    assert topology.drain(QUEUE) == []


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ({}, r'"shipments" list'),
        ({"shipments": []}, r'non-empty "shipments" list'),
        ([update(0)], r'"shipments" list'),
        ({"shipments": [update(i) for i in range(101)]}, r"101 shipments in one request, at most 100"),
        ({"shipments": ["s-0001"]}, r"shipments\[0\]: shipment: "),
    ],
)
def test_a_malformed_request_is_refused(publisher, topology, lambda_context, event, reason):
    with pytest.raises(ValueError, match=reason):
        publisher.lambda_handler(event, lambda_context)
    assert topology.drain(QUEUE) == []


def test_a_missing_exchange_is_a_clear_error(load_publisher, lambda_context):
    publisher = load_publisher(EXCHANGE_NAME="no-such-exchange")

    with pytest.raises(publisher.BrokerError, match=r"exchange 'no-such-exchange' is not usable in virtual host .*NOT_FOUND"):
        publisher.lambda_handler(request(1), lambda_context)


def test_a_broker_that_refuses_the_credentials_is_a_clear_error(load_publisher, moto_module, topology, lambda_context):
    import boto3

    wrong = boto3.client("secretsmanager").create_secret(
        Name=f"wrong-{uuid.uuid4().hex[:6]}", SecretString=json.dumps({"username": topology.user, "password": "not-the-password"})
    )
    publisher = load_publisher(BROKER_SECRET_ARN=wrong["ARN"])

    with pytest.raises(publisher.BrokerError, match=rf"amqp://127.0.0.1:5672/{topology.name} refused the credentials in {wrong['ARN']}"):
        publisher.lambda_handler(request(1), lambda_context)


def test_a_secret_without_a_username_and_password_is_a_clear_error(load_publisher, moto_module, lambda_context):
    import boto3

    bad = boto3.client("secretsmanager").create_secret(Name=f"bad-{uuid.uuid4().hex[:6]}", SecretString=json.dumps({"user": "x"}))
    publisher = load_publisher(BROKER_SECRET_ARN=bad["ARN"])

    with pytest.raises(publisher.BrokerError, match=r'must be a JSON object with string "username" and "password"'):
        publisher.lambda_handler(request(1), lambda_context)


def test_tls_is_the_default_and_a_plain_amqp_port_is_refused(load_publisher, monkeypatch, lambda_context):
    monkeypatch.delenv("BROKER_TLS")
    publisher = load_publisher()

    with pytest.raises(publisher.BrokerError, match=r"could not connect to amqps://127.0.0.1:5672/"):
        publisher.lambda_handler(request(1), lambda_context)


def test_tls_verifies_the_certificate_and_the_host_name(load_publisher, monkeypatch):
    monkeypatch.setenv("BROKER_TLS", "true")
    publisher = load_publisher(BROKER_HOST="b-1234.mq.us-east-1.on.aws")

    options = publisher.broker.settings.connection_parameters(pika.PlainCredentials("u", "p")).ssl_options

    assert options.server_hostname == "b-1234.mq.us-east-1.on.aws"
    assert options.context.verify_mode == ssl.CERT_REQUIRED
    assert options.context.check_hostname is True
    assert options.context.minimum_version >= ssl.TLSVersion.TLSv1_2


def test_broker_tls_must_be_true_or_false(load_publisher):
    with pytest.raises(ValueError, match=r"BROKER_TLS must be true or false, got 'yes'"):
        load_publisher(BROKER_TLS="yes")


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (nested(990), r'"shipments" list'),
        ({"shipments": nested(990)}, r"^1 invalid shipment update\(s\), nothing published: shipments\[0\]: shipment: Input should be a valid dictionary"),
        ({"shipments": [update(0, carrier=nested(990))]}, r"shipments\[0\]: carrier: "),
        ({"shipments": [update(0, dock=nested(990))]}, r"shipments\[0\]: dock: Extra inputs are not permitted"),
    ],
    ids=["the request", "the shipments", "a field", "an unknown field"],
)
def test_a_deeply_nested_request_is_refused_and_nothing_is_published(publisher, topology, lambda_context, event, reason):
    # A direct invocation's payload is JSON the runtime has decoded already: as deep as its decoder allows.
    with pytest.raises(ValueError, match=reason):
        publisher.lambda_handler(event, lambda_context)
    assert topology.drain(QUEUE) == []
