"""The AMQP client against the local RabbitMQ (``scripts/start_rabbitmq.sh``), in a virtual host of this module's own.

Connecting, confirmed publishing, the reuse of one connection and channel
across invocations, reconnecting after the broker closed the connection, and
refused credentials followed by a re-read of a rotated secret (in moto's
Secrets Manager) run against the real broker; the failures a local broker
cannot produce on demand (a flaky network, a DNS hiccup, a certificate that
does not verify) run against a fake ``pika.BlockingConnection``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import boto3
import pika
import pika.exceptions
import pytest
from moto import mock_aws
from pika.adapters.blocking_connection import BlockingChannel

import messaging_runtime.amqp as amqp
from messaging_runtime.amazon_mq import read_broker_credentials
from messaging_runtime.amqp import (
    DIRECT_REPLY_TO,
    AccessRefused,
    AmqpClient,
    AmqpClients,
    AmqpSettings,
    BrokerCredentials,
    BrokerError,
    BrokerUnreachable,
    ChannelRefused,
    CredentialsRefused,
    PublishNotConfirmed,
    is_direct_reply_to,
)

# The broker fixtures: rabbitmq, broker_vhost, broker_secret, broker_env.
pytest_plugins = ("tests.handlers.rabbitmq",)

EXCHANGE = "runtime.shipments"
QUEUE = "runtime-shipment-updates"
LIMITED_EXCHANGE = "runtime.limited"
LIMITED_QUEUE = "runtime-limited"
REQUEST_QUEUE = "runtime-requests"
ENV = {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing"}


@pytest.fixture(scope="module")
def moto_module():
    """moto's Secrets Manager for the whole module (the broker plugin's ``broker_secret`` lives in it)."""
    with pytest.MonkeyPatch.context() as patch:
        for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL"):
            patch.delenv(name, raising=False)
        for name, value in ENV.items():
            patch.setenv(name, value)
        with mock_aws():
            yield patch


@pytest.fixture(scope="module")
def topology(broker_vhost, broker_secret):
    """An exchange with a durable queue for ``shipment.*``, and one whose only queue holds one message and refuses more."""
    channel = broker_vhost.connect().channel()
    channel.exchange_declare(EXCHANGE, exchange_type="topic", durable=True)
    channel.queue_declare(QUEUE, durable=True)
    channel.queue_bind(QUEUE, EXCHANGE, routing_key="shipment.*")
    channel.exchange_declare(LIMITED_EXCHANGE, exchange_type="topic", durable=True)
    channel.queue_declare(LIMITED_QUEUE, durable=True, arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    channel.queue_bind(LIMITED_QUEUE, LIMITED_EXCHANGE, routing_key="#")
    channel.queue_declare(REQUEST_QUEUE, durable=True)
    return broker_vhost


@pytest.fixture
def settings(topology, broker_secret):
    """The module's virtual host over plain AMQP on 127.0.0.1 (the local broker has no TLS port)."""
    for queue in (QUEUE, LIMITED_QUEUE, REQUEST_QUEUE):
        topology.drain(queue)
    return AmqpSettings(host=topology.host, port=topology.amqp_port, tls=False, virtual_host=topology.name, secret_arn=broker_secret)


@pytest.fixture
def clients():
    """``clients(settings, **options)``: an AmqpClient, closed after the test."""
    made = []

    def make(settings, **options):
        client = AmqpClient(settings, **options)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def persistent(message_id: str) -> pika.BasicProperties:
    return pika.BasicProperties(content_type="application/json", delivery_mode=pika.DeliveryMode.Persistent, message_id=message_id)


def invoke(client: AmqpClient, count: int = 1, routing_key: str = "shipment.picked") -> list[str]:
    """One "invocation" of a publishing function: ``count`` confirmed messages through the kept client."""
    ids = [str(uuid.uuid4()) for _ in range(count)]
    for message_id in ids:
        client.publish(EXCHANGE, routing_key, json.dumps({"id": message_id}).encode(), persistent(message_id))
    return ids


def on_queue(broker, queue: str = QUEUE) -> list[str]:
    return [properties.message_id for _, properties, _ in broker.drain(queue)]


# --- a real broker -------------------------------------------------------------------------------------


def test_a_confirmed_message_is_on_the_queue_as_published(clients, settings, topology):
    client = clients(settings)

    [message_id] = invoke(client)

    [(method, properties, body)] = topology.drain(QUEUE)
    assert (method.exchange, method.routing_key, properties.message_id, properties.delivery_mode) == (EXCHANGE, "shipment.picked", message_id, 2)
    assert json.loads(body) == {"id": message_id}
    assert [channel["confirm"] for channel in topology.function_channels()] == ["true"]


def test_one_connection_and_channel_serve_every_invocation_of_an_environment(clients, settings, topology):
    client = clients(settings)

    sent = invoke(client, 2)
    [connection] = topology.function_connections()
    channel = client.channel()
    sent += invoke(client, 3)
    sent += invoke(client, 1)

    assert topology.function_connections() == [connection]
    assert client.channel() is channel and client.connections_made == 1
    assert on_queue(topology) == sent


def test_the_next_invocation_connects_again_after_the_broker_closed_the_connection(clients, settings, topology):
    client = clients(settings)
    sent = invoke(client)
    [before] = topology.function_connections()

    assert topology.close_function_connections("broker restart") == 1
    sent += invoke(client, 2)

    [after] = topology.function_connections()
    assert after != before and client.connections_made == 2
    assert on_queue(topology) == sent


def test_an_unroutable_message_is_not_confirmed_and_the_connection_is_kept(clients, settings, topology):
    client = clients(settings)

    with pytest.raises(PublishNotConfirmed) as raised:
        client.publish(EXCHANGE, "invoice.paid", b"{}", persistent("m-1"))
    with pytest.raises(PublishNotConfirmed) as to_queue:
        client.publish("", "no-such-queue", b"{}", persistent("m-2"))

    assert (raised.value.outcome, raised.value.may_be_queued) == ("unroutable", False)
    assert str(raised.value) == f"unroutable: no queue is bound to exchange {EXCHANGE!r} for routing key 'invoice.paid' (returned by the broker)"
    assert str(to_queue.value) == f"unroutable: there is no queue 'no-such-queue' in virtual host {topology.name!r} (returned by the broker)"
    assert len(invoke(client)) == 1 and client.connections_made == 1


def test_a_message_the_broker_refuses_with_a_nack_is_not_confirmed(clients, settings, topology):
    client = clients(settings)
    client.publish(LIMITED_EXCHANGE, "x", b"first", persistent("m-1"))

    with pytest.raises(PublishNotConfirmed, match=r"^the broker refused it \(nack\)$") as raised:
        client.publish(LIMITED_EXCHANGE, "x", b"second", persistent("m-2"))

    assert raised.value.outcome == "nacked"
    assert on_queue(topology, LIMITED_QUEUE) == ["m-1"]


def test_a_publish_the_broker_closes_the_channel_on_is_refused_and_the_connection_kept(clients, settings, topology):
    client = clients(settings)

    with pytest.raises(PublishNotConfirmed, match=r"^the broker closed the channel: \(404\) NOT_FOUND - no exchange 'nowhere'") as raised:
        client.publish("nowhere", "x", b"{}", persistent("m-1"))

    assert (raised.value.outcome, raised.value.may_be_queued) == ("refused", False)
    assert len(invoke(client)) == 1 and client.connections_made == 1


def test_a_connection_lost_before_the_confirm_may_or_may_not_have_queued_the_message(clients, settings, topology, monkeypatch):
    client = clients(settings)
    invoke(client)
    real_publish = BlockingChannel.basic_publish

    def lose_the_connection_then_publish(channel, *args, **kwargs):
        topology.close_function_connections("broker restart")
        return real_publish(channel, *args, **kwargs)

    monkeypatch.setattr(BlockingChannel, "basic_publish", lose_the_connection_then_publish)
    with pytest.raises(PublishNotConfirmed) as raised:
        invoke(client)
    monkeypatch.undo()

    assert (raised.value.outcome, raised.value.may_be_queued) == ("lost", True)
    assert "CONNECTION_FORCED - broker restart" in str(raised.value) and "may or may not be on a queue" in str(raised.value)
    assert len(invoke(client)) == 1 and client.connections_made == 2


def test_rotated_credentials_are_read_again_when_the_broker_refuses_the_cached_ones(clients, settings, topology, broker_secret, caplog):
    secrets = boto3.client("secretsmanager")
    client = clients(settings)
    invoke(client)
    new_password = uuid.uuid4().hex
    topology.change_password(new_password)
    secrets.put_secret_value(SecretId=broker_secret, SecretString=json.dumps({"username": topology.user, "password": new_password}))
    try:
        topology.close_function_connections("password changed")

        with caplog.at_level(logging.WARNING, logger="messaging_runtime.amqp"):
            assert len(invoke(client, 2)) == 2

        assert client.connections_made == 2
        assert "The broker refused the credentials; reading the secret again in case it was rotated" in caplog.messages
    finally:
        topology.change_password(topology.password)
        secrets.put_secret_value(SecretId=broker_secret, SecretString=json.dumps({"username": topology.user, "password": topology.password}))
        read_broker_credentials(broker_secret, force_fetch=True)


def test_credentials_refused_after_the_re_read_name_the_secret_and_the_user_but_not_the_password(clients, settings, topology):
    wrong = boto3.client("secretsmanager").create_secret(
        Name=f"wrong-{uuid.uuid4().hex[:6]}", SecretString=json.dumps({"username": topology.user, "password": "not-the-password"})
    )
    client = clients(dataclasses.replace(settings, secret_arn=wrong["ARN"]))

    with pytest.raises(CredentialsRefused) as raised:
        invoke(client)

    message = str(raised.value)
    assert message.startswith(f"amqp://127.0.0.1:5672/{topology.name} refused the credentials in {wrong['ARN']} (user {topology.user!r}): ")
    assert "ACCESS_REFUSED" in message and "not-the-password" not in message
    assert isinstance(raised.value, BrokerError)


def test_a_virtual_host_the_user_may_not_use_is_a_clear_error(clients, settings, topology):
    client = clients(settings.with_virtual_host("no-such-vhost"))

    with pytest.raises(AccessRefused, match=rf"^amqp://127.0.0.1:5672/no-such-vhost: user {topology.user!r} may not use virtual host 'no-such-vhost': "):
        client.channel()


def test_tls_is_the_default_and_a_plain_port_fails_at_once_without_retrying(clients, settings):
    sleeps = []
    default_tls = AmqpSettings(host=settings.host, port=settings.port, virtual_host=settings.virtual_host, secret_arn=settings.secret_arn)
    client = clients(default_tls, sleep=sleeps.append)

    with pytest.raises(BrokerUnreachable, match=r"^could not connect to amqps://127.0.0.1:5672/.*SSLError.*\(1 attempt\(s\)\)$"):
        client.channel()

    assert sleeps == []


def test_the_new_channel_hook_runs_once_per_channel_and_its_refusal_keeps_the_connection(clients, settings, topology):
    declared = []
    exchange = {"name": EXCHANGE}

    def check_exchange(channel):
        channel.exchange_declare(exchange["name"], passive=True)
        declared.append(exchange["name"])

    client = clients(settings, on_new_channel=check_exchange)
    invoke(client, 2)
    invoke(client, 1)
    assert declared == [EXCHANGE]

    exchange["name"] = "missing-exchange"
    topology.close_function_connections("failover")
    with pytest.raises(ChannelRefused, match=r"^the broker closed a new channel on amqp://.*: \(404\) NOT_FOUND - no exchange 'missing-exchange'") as raised:
        client.channel()

    assert raised.value.reply_code == 404 and client.connection is not None and client.connection.is_open
    exchange["name"] = EXCHANGE
    invoke(client)
    assert client.connections_made == 2 and declared == [EXCHANGE, EXCHANGE]


def test_a_requester_keeps_its_direct_reply_to_consumer_on_the_kept_channel(clients, settings, topology):
    replies = {}

    def consume_replies(channel):
        channel.basic_consume(DIRECT_REPLY_TO, lambda _ch, _method, properties, body: replies.update({properties.correlation_id: body}), auto_ack=True)

    requester = clients(settings, on_new_channel=consume_replies)
    responder = topology.connect().channel()
    for round_trip in range(2):
        correlation_id = f"c-{round_trip}"
        requester.publish("", REQUEST_QUEUE, b"quote?", pika.BasicProperties(correlation_id=correlation_id, reply_to=DIRECT_REPLY_TO))
        _, request, _ = responder.basic_get(REQUEST_QUEUE, auto_ack=True)
        assert is_direct_reply_to(request.reply_to) and not is_direct_reply_to(REQUEST_QUEUE)
        responder.basic_publish("", request.reply_to, b"42.00", pika.BasicProperties(correlation_id=request.correlation_id))
        deadline = time.monotonic() + 5
        while correlation_id not in replies and time.monotonic() < deadline:
            requester.process_events(0.1)

    assert replies == {"c-0": b"42.00", "c-1": b"42.00"}
    assert requester.connections_made == 1


def test_settings_from_the_environment_reach_the_broker(clients, broker_env, topology):
    settings = AmqpSettings.from_environment()

    assert (settings.host, settings.port, settings.tls, settings.virtual_host) == (topology.host, topology.amqp_port, False, topology.name)
    assert len(invoke(clients(settings))) == 1


# --- fakes: what a local broker cannot produce on demand --------------------------------------------------


class FakeConnection:
    def __init__(self) -> None:
        self.is_open = True
        self.closed = False

    def close(self) -> None:
        self.is_open, self.closed = False, True


@pytest.fixture
def fake_broker(monkeypatch):
    """``fake_broker(*outcomes)``: each connection attempt raises the next outcome, or connects when it is None."""
    reads: list[bool] = []
    attempts: list[pika.ConnectionParameters] = []

    def credentials(secret_arn, *, max_age_seconds=300, force_fetch=False):
        reads.append(force_fetch)
        return BrokerCredentials("app", f"password-{len(reads)}")

    monkeypatch.setattr(amqp, "read_broker_credentials", credentials)

    def install(*outcomes):
        pending = list(outcomes)

        def connect(parameters):
            attempts.append(parameters)
            outcome = pending.pop(0) if pending else None
            if outcome is not None:
                raise outcome
            return FakeConnection()

        monkeypatch.setattr(amqp.pika, "BlockingConnection", connect)
        return reads, attempts

    return install


FAKE = AmqpSettings(host="b-1234.mq.us-east-1.on.aws", secret_arn="arn:aws:secretsmanager:us-east-1:123456789012:secret:broker-AbCdEf")
REFUSED = pika.exceptions.AMQPConnectionError("AMQPConnectorSocketConnectError: ConnectionRefusedError(111, 'Connection refused')")


def test_connection_failures_are_tried_again_with_growing_backoff(fake_broker):
    reads, attempts = fake_broker(REFUSED, pika.exceptions.StreamLostError("Transport indicated EOF"), None)
    sleeps = []

    connection = AmqpClient(FAKE, sleep=sleeps.append).connect()

    assert isinstance(connection, FakeConnection) and len(attempts) == 3
    assert 0.25 <= sleeps[0] <= 0.5 and 0.5 <= sleeps[1] <= 1.0
    assert reads == [False, False, False]


def test_after_every_attempt_failed_the_error_says_how_many_were_made(fake_broker):
    fake_broker(REFUSED, REFUSED, REFUSED, REFUSED)
    sleeps = []

    with pytest.raises(
        BrokerUnreachable,
        match=r"^could not connect to amqps://b-1234.mq.us-east-1.on.aws:5671//: AMQPConnectionError: .*Connection refused.*\(3 attempt\(s\)\)$",
    ):
        AmqpClient(FAKE, sleep=sleeps.append).connect()

    assert len(sleeps) == 2


def test_no_backoff_runs_past_the_deadline(fake_broker):
    _, attempts = fake_broker(REFUSED, None)
    sleeps = []

    with pytest.raises(BrokerUnreachable, match=r"\(1 attempt\(s\)\)$"):
        AmqpClient(FAKE, sleep=sleeps.append).connect(deadline=time.monotonic() + 0.1)

    assert sleeps == [] and len(attempts) == 1


@pytest.mark.parametrize(
    "failure",
    [
        ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: Hostname mismatch"),
        ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"),
        socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
        pika.exceptions.IncompatibleProtocolError("StreamLostError: ('Transport indicated EOF',)"),
    ],
    ids=["certificate", "tls-to-plain", "unknown-host", "not-amqp"],
)
def test_a_failure_another_attempt_cannot_mend_is_not_repeated(fake_broker, failure):
    _, attempts = fake_broker(failure, None)
    sleeps = []

    with pytest.raises(BrokerUnreachable, match=rf"{type(failure).__name__}.*\(1 attempt\(s\)\)$"):
        AmqpClient(FAKE, sleep=sleeps.append).connect()

    assert sleeps == [] and len(attempts) == 1


def test_a_dns_hiccup_is_tried_again(fake_broker):
    _, attempts = fake_broker(socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"), None)

    AmqpClient(FAKE, sleep=lambda seconds: None).connect()

    assert len(attempts) == 2


def test_refused_credentials_are_read_again_once_and_do_not_count_as_attempts(fake_broker):
    refused = pika.exceptions.ProbableAuthenticationError("ConnectionClosedByBroker: (403) 'ACCESS_REFUSED - Login was refused'")
    reads, attempts = fake_broker(refused, None)

    AmqpClient(dataclasses.replace(FAKE, connect_attempts=1)).connect()

    assert reads == [False, True]
    assert [a.credentials.password for a in attempts] == ["password-1", "password-2"]


def test_credentials_refused_twice_are_not_read_a_third_time(fake_broker):
    refused = pika.exceptions.AuthenticationError("PLAIN")
    reads, _ = fake_broker(refused, refused, None)

    with pytest.raises(CredentialsRefused, match=rf"^amqps://b-1234.mq.us-east-1.on.aws:5671// refused the credentials in {FAKE.secret_arn} \(user 'app'\)"):
        AmqpClient(FAKE).connect()

    assert reads == [False, True]


def test_a_connection_found_broken_at_the_start_of_an_invocation_is_let_go():
    client = AmqpClient(FAKE)

    class Broken(FakeConnection):
        def process_data_events(self, time_limit=None):
            raise pika.exceptions.StreamLostError("Transport indicated EOF")

    class Channel:
        is_open = True

    client.connection, client._channel = Broken(), Channel()
    connection = client.connection

    assert client.is_alive() is False
    assert client.connection is None and connection.closed


def test_a_channel_that_cannot_be_opened_is_a_broker_error_and_a_closed_connection_is_let_go():
    client = AmqpClient(FAKE)

    class Dying(FakeConnection):
        def channel(self):
            self.is_open = False
            raise pika.exceptions.ConnectionWrongStateError("Channel allocation requires an open connection")

    client.connection = Dying()

    with pytest.raises(BrokerError, match=r"^could not open a channel on amqps://.*ConnectionWrongStateError"):
        client.channel()
    assert client.connection is None


@pytest.fixture(scope="module")
def untrusted_tls_port(tmp_path_factory):
    """A TLS server on 127.0.0.1 with a self-signed certificate (made with openssl) that no system store trusts."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    directory = tmp_path_factory.mktemp("tls")
    key, cert = directory / "key.pem", directory / "cert.pem"
    command = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"]
    subprocess.run(command, check=True, capture_output=True, timeout=60)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))

    def serve():
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            try:
                context.wrap_socket(connection, server_side=True).close()
            except OSError:  # the client refuses the certificate mid-handshake
                connection.close()

    threading.Thread(target=serve, daemon=True).start()
    yield listener.getsockname()[1]
    listener.close()


def test_a_certificate_the_system_store_does_not_trust_is_refused_at_once(untrusted_tls_port, monkeypatch):
    monkeypatch.setattr(amqp, "read_broker_credentials", lambda *args, **kwargs: BrokerCredentials("app", "password"))
    sleeps = []

    with pytest.raises(BrokerUnreachable, match=r"SSLCertVerificationError.*CERTIFICATE_VERIFY_FAILED.*\(1 attempt\(s\)\)$"):
        AmqpClient(AmqpSettings(host="127.0.0.1", port=untrusted_tls_port, secret_arn="arn"), sleep=sleeps.append).connect()

    assert sleeps == []


def test_tls_verifies_the_certificate_against_the_system_store_and_the_host_name():
    parameters = FAKE.connection_parameters(BrokerCredentials("u", "p"))

    options = parameters.ssl_options
    assert options.server_hostname == "b-1234.mq.us-east-1.on.aws"
    assert options.context.verify_mode == ssl.CERT_REQUIRED and options.context.check_hostname is True
    assert options.context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert (parameters.port, parameters.virtual_host, parameters.connection_attempts) == (5671, "/", 1)
    assert (parameters.heartbeat, parameters.blocked_connection_timeout) == (60, 10.0)


def test_plain_amqp_is_only_what_is_asked_for_and_pika_credentials_are_taken_too():
    parameters = AmqpSettings(host="127.0.0.1", port=5672, tls=False, secret_arn="arn").connection_parameters(pika.PlainCredentials("u", "p"))

    assert parameters.ssl_options is None and parameters.credentials.username == "u"


def test_a_deadline_shortens_the_timeouts_of_an_attempt():
    parameters = FAKE.connection_parameters(BrokerCredentials("u", "p"), deadline=time.monotonic() + 2)

    assert 1 < parameters.socket_timeout <= 2 and 1 < parameters.stack_timeout <= 2


def test_the_connection_is_named_after_the_function(monkeypatch):
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "shipment-publisher")

    assert FAKE.connection_parameters(BrokerCredentials("u", "p")).client_properties["connection_name"] == "shipment-publisher"
    assert AmqpSettings.from_environment({"BROKER_HOST": "h", "BROKER_SECRET_ARN": "a"}).connection_name is None


def test_plain_amqp_to_a_host_that_is_not_local_is_logged(fake_broker, caplog):
    fake_broker(None)

    with caplog.at_level(logging.WARNING, logger="messaging_runtime.amqp"):
        AmqpClient(dataclasses.replace(FAKE, tls=False)).connect()

    assert caplog.messages == ["Connecting without TLS to a broker that is not on this machine"]


def test_settings_from_the_environment_default_to_tls_on_5671():
    settings = AmqpSettings.from_environment({"BROKER_HOST": "b-1.mq.on.aws", "BROKER_SECRET_ARN": "arn:secret", "AWS_LAMBDA_FUNCTION_NAME": "fn"})

    assert (settings.port, settings.tls, settings.virtual_host, settings.secret_max_age_seconds, settings.connection_name) == (5671, True, "/", 300, "fn")
    assert settings.url == "amqps://b-1.mq.on.aws:5671//"
    assert AmqpSettings.from_environment({"BROKER_HOST": "h", "BROKER_SECRET_ARN": "a"}, connect_attempts=5).connect_attempts == 5


@pytest.mark.parametrize(
    ("environ", "reason"),
    [
        ({"BROKER_SECRET_ARN": "a"}, r"^BROKER_HOST is not set$"),
        ({"BROKER_HOST": "h"}, r"^BROKER_SECRET_ARN is not set$"),
        ({"BROKER_HOST": "h", "BROKER_SECRET_ARN": "a", "BROKER_TLS": "yes"}, r"^BROKER_TLS must be true or false, got 'yes'$"),
        ({"BROKER_HOST": "h", "BROKER_SECRET_ARN": "a", "BROKER_PORT": "70000"}, r"^BROKER_PORT must be a whole number from 1 to 65535, got '70000'$"),
    ],
)
def test_settings_from_a_wrong_environment_name_the_variable(environ, reason):
    with pytest.raises(ValueError, match=reason):
        AmqpSettings.from_environment(environ)


def test_one_client_per_virtual_host():
    clients = AmqpClients(FAKE, confirm_delivery=False)

    first, again, other = clients.for_virtual_host("orders"), clients.for_virtual_host("orders"), clients.for_virtual_host("billing")

    assert first is again and first is not other
    assert (first.url, other.url) == ("amqps://b-1234.mq.us-east-1.on.aws:5671/orders", "amqps://b-1234.mq.us-east-1.on.aws:5671/billing")
    assert first.confirm_delivery is False
    assert list(clients) == [first, other]


def test_without_pika_the_module_imports_and_fails_clearly_when_used(monkeypatch):
    for name in [name for name in sys.modules if name == "pika" or name.startswith("pika.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "pika", None)
    path = Path(amqp.__file__)
    spec = importlib.util.spec_from_file_location("messaging_runtime._amqp_without_pika", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)

    settings = module.AmqpSettings(host="h", secret_arn="a")
    with pytest.raises(ImportError, match=r"^messaging_runtime.amqp needs pika, which the mq_clients layer provides"):
        settings.connection_parameters(BrokerCredentials("u", "p"))
    with pytest.raises(ImportError, match=r"needs pika"):
        module.AmqpClient(settings).channel()
