"""The STOMP client against a real ActiveMQ (``tests/local_activemq.py``: Debian's 5.17, plain STOMP on 127.0.0.1).

Sending with receipts, the reuse of one connection across invocations, a new
connection after the old one was cut, an active/standby pair tried in order,
refused credentials followed by a re-read of the secret (in moto's Secrets
Manager) and a SEND the broker refuses run against the broker; a silent
network path and a cut connection through a TCP relay in front of it; what
no broker does on demand (closing at once, never answering) against a
socket of the test's own. One test runs on RabbitMQ's STOMP adapter, which
takes its virtual host in the CONNECT frame.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import queue
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
import pytest
import stomp
from moto import mock_aws

import messaging_runtime.stomp as stomp_module
from messaging_constructs.message_broker import activemq_configuration
from messaging_runtime.amazon_mq import read_broker_credentials
from messaging_runtime.stomp import (
    BrokerCredentials,
    BrokerError,
    BrokerUnreachable,
    CredentialsRefused,
    FrameListener,
    ReceiptsMissing,
    StompClient,
    StompMessage,
    StompSettings,
)

# ``activemq``: a broker of this module's own; ``broker_vhost``/``broker_secret``: the local RabbitMQ, for one test.
pytest_plugins = ("tests.local_activemq", "tests.handlers.rabbitmq")

APP_QUEUE = "runtime.invoices"
ENV = {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing"}


@pytest.fixture(scope="module")
def amazon_mq_configuration() -> str:
    """The application group may write one queue; the administrator may use every queue."""
    return activemq_configuration({APP_QUEUE: {"write"}})


@pytest.fixture(scope="module")
def moto_module():
    with pytest.MonkeyPatch.context() as patch:
        for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL"):
            patch.delenv(name, raising=False)
        for name, value in ENV.items():
            patch.setenv(name, value)
        with mock_aws():
            yield patch


def new_secret(username: str, password: str) -> str:
    return boto3.client("secretsmanager").create_secret(
        Name=f"broker-{uuid.uuid4().hex[:8]}", SecretString=json.dumps({"username": username, "password": password})
    )["ARN"]


@pytest.fixture
def broker(activemq, moto_module):
    return activemq


@pytest.fixture
def settings(broker):
    """Plain STOMP to the local broker as its administrator (who may use any queue)."""
    return StompSettings(hosts=("127.0.0.1",), port=broker.stomp_port, tls=False, secret_arn=new_secret("admin", broker.passwords["admin"]))


@pytest.fixture
def clients():
    made = []

    def make(settings, **options):
        client = StompClient(settings, **options)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def relay(broker):
    """A TCP relay in front of the broker's STOMP port that can stall or cut the connections through it."""
    from tests.handlers.rabbitmq import StallingRelay  # loaded as a plugin by then, so imported once

    relay = StallingRelay(broker.stomp_port)
    yield relay
    relay.close()


@pytest.fixture
def destination():
    """A queue of the test's own."""
    return f"/queue/runtime.{uuid.uuid4().hex[:10]}"


def messages(count: int, start: int = 0) -> list[StompMessage]:
    return [
        StompMessage(
            json.dumps({"invoice_id": f"inv-{n:04d}"}), label=f"inv-{n:04d} issued", headers={"invoice_id": f"inv-{n:04d}"}, content_type="application/json"
        )
        for n in range(start, start + count)
    ]


def labels(count: int, start: int = 0) -> list[str]:
    return [f"inv-{n:04d} issued" for n in range(start, start + count)]


def consume(broker, destination: str, *, expected: int, timeout: float = 10.0) -> list:
    """The MESSAGE frames on the queue (taken off it, as the administrator), once ``expected`` came or the time is up."""
    frames: queue.Queue = queue.Queue()

    class Collect(stomp.ConnectionListener):
        def on_message(self, frame):
            frames.put(frame)

    connection = stomp.Connection12([("127.0.0.1", broker.stomp_port)], reconnect_attempts_max=1)
    connection.set_listener("collect", Collect())
    connection.connect("admin", broker.passwords["admin"], wait=True)
    try:
        connection.subscribe(destination, id="test", ack="auto")
        received, deadline = [], time.monotonic() + timeout
        while len(received) < expected and (left := deadline - time.monotonic()) > 0:
            try:
                received.append(frames.get(timeout=left))
            except queue.Empty:
                break
        time.sleep(0.2)  # anything beyond what was expected
        while not frames.empty():
            received.append(frames.get())
        return received
    finally:
        connection.disconnect()


def on_queue(broker, destination: str, expected: int) -> list[str]:
    return [f"{frame.headers['invoice_id']} issued" for frame in consume(broker, destination, expected=expected)]


# --- a real ActiveMQ ---------------------------------------------------------------------------------------


def test_messages_sent_with_receipts_are_on_the_queue_as_persistent_json(clients, settings, broker, destination):
    client = clients(settings)

    assert client.send_with_receipts(destination, messages(3)) == labels(3)

    frames = consume(broker, destination, expected=3)
    assert [json.loads(frame.body) for frame in frames] == [{"invoice_id": f"inv-{n:04d}"} for n in range(3)]
    assert [(frame.headers["persistent"], frame.headers["content-type"], frame.headers["invoice_id"]) for frame in frames] == [
        ("true", "application/json", f"inv-{n:04d}") for n in range(3)
    ]


def test_one_connection_serves_every_invocation_of_an_environment(clients, settings, broker, relay, destination):
    client = clients(dataclasses.replace(settings, port=relay.port))

    for start in range(0, 6, 2):
        client.send_with_receipts(destination, messages(2, start))

    assert relay.connections == 1 and client.connections_made == 1
    assert on_queue(broker, destination, 6) == labels(6)


def test_the_next_invocation_connects_again_after_the_connection_was_cut(clients, settings, broker, relay, destination):
    client = clients(dataclasses.replace(settings, port=relay.port))
    client.send_with_receipts(destination, messages(2))
    relay.cut()
    time.sleep(0.2)

    assert client.send_with_receipts(destination, messages(3, 2)) == labels(3, 2)
    assert relay.connections == 2 and client.connections_made == 2
    assert on_queue(broker, destination, 5) == labels(5)


def test_a_connection_idle_longer_than_the_limit_is_made_again(clients, settings, relay, destination):
    client = clients(dataclasses.replace(settings, port=relay.port, idle_reconnect_seconds=0.0))

    client.send_with_receipts(destination, messages(1))
    client.send_with_receipts(destination, messages(1, 1))

    assert relay.connections == 2


def test_rotated_credentials_are_read_again_when_the_broker_refuses_the_cached_ones(clients, broker, caplog):
    secret = new_secret("app", "the-old-password")
    read_broker_credentials(secret)  # cached, as a warm environment has it
    boto3.client("secretsmanager").put_secret_value(SecretId=secret, SecretString=json.dumps({"username": "app", "password": broker.passwords["app"]}))
    client = clients(StompSettings(hosts=("127.0.0.1",), port=broker.stomp_port, tls=False, secret_arn=secret))

    with caplog.at_level(logging.WARNING, logger="messaging_runtime.stomp"):
        assert client.send_with_receipts(f"/queue/{APP_QUEUE}", messages(1)) == labels(1)

    assert client.connections_made == 1
    assert "The broker refused the connection; reading the secret again in case it was rotated" in caplog.messages
    assert on_queue(broker, f"/queue/{APP_QUEUE}", 1) == labels(1)


def test_credentials_refused_after_the_re_read_are_a_clear_error_without_the_password(clients, broker):
    client = clients(StompSettings(hosts=("127.0.0.1",), port=broker.stomp_port, tls=False, secret_arn=new_secret("app", "not-the-password")))

    with pytest.raises(CredentialsRefused) as raised:
        client.open()

    assert str(raised.value) == f"stomp://127.0.0.1:{broker.stomp_port} refused the connection for user 'app': User name [app] or password is invalid."
    assert isinstance(raised.value, BrokerError)


def test_a_send_the_broker_refuses_is_reported_as_refused_and_the_next_invocation_connects_again(clients, broker):
    client = clients(StompSettings(hosts=("127.0.0.1",), port=broker.stomp_port, tls=False, secret_arn=new_secret("app", broker.passwords["app"])))

    with pytest.raises(ReceiptsMissing) as raised:
        client.send_with_receipts("/queue/other", messages(2), noun="invoice")

    error = raised.value
    assert (error.confirmed, error.refused, error.unconfirmed, error.not_sent) == ([], labels(2), [], [])
    assert str(error) == (
        "0 of 2 invoice(s) confirmed by the broker: the broker sent an ERROR frame (User app is not authorized to write to: queue://other); "
        "refused by the broker (not on the queue): inv-0000 issued, inv-0001 issued"
    )
    assert client.connection is None
    assert client.send_with_receipts(f"/queue/{APP_QUEUE}", messages(1, 2)) == labels(1, 2)
    assert client.connections_made == 2
    assert on_queue(broker, f"/queue/{APP_QUEUE}", 1) == labels(1, 2)


def test_a_missing_receipt_fails_after_the_receipt_timeout(clients, settings, broker, relay, destination):
    client = clients(dataclasses.replace(settings, port=relay.port))
    client.send_with_receipts(destination, messages(2))
    relay.stall()

    started = time.monotonic()
    with pytest.raises(ReceiptsMissing) as raised:
        client.send_with_receipts(destination, messages(3, 2), receipt_timeout_seconds=1.0, noun="invoice")

    assert 1.0 <= time.monotonic() - started < 4
    assert str(raised.value) == (
        "0 of 3 invoice(s) confirmed by the broker: no receipt for 3 invoice(s) within 1.0 s; "
        "sent without a receipt (may or may not be on the queue): inv-0002 issued, inv-0003 issued, inv-0004 issued"
    )
    # The broker did take them: only their receipts were lost, which is why the error cannot say they are not there.
    assert on_queue(broker, destination, 5) == labels(5)


def test_the_deadline_bounds_the_wait_for_receipts(clients, settings, relay, destination):
    client = clients(dataclasses.replace(settings, port=relay.port))
    client.send_with_receipts(destination, messages(1))
    relay.stall()

    started = time.monotonic()
    with pytest.raises(ReceiptsMissing, match=r"no receipt for 2 message\(s\) within 1\.\d s"):
        client.send_with_receipts(destination, messages(2, 1), receipt_timeout_seconds=30, deadline=time.monotonic() + 1.5)

    assert time.monotonic() - started < 3


def test_a_connection_lost_mid_send_reports_only_what_was_confirmed(clients, settings, broker, relay, destination, monkeypatch):
    client = clients(dataclasses.replace(settings, port=relay.port))
    real_send = stomp.Connection12.send
    sends = []

    def send_then_lose_the_connection(connection, *args, **kwargs):
        if len(sends) == 2:
            relay.cut()
            time.sleep(0.2)
        sends.append(1)
        return real_send(connection, *args, **kwargs)

    monkeypatch.setattr(stomp.Connection12, "send", send_then_lose_the_connection)

    with pytest.raises(ReceiptsMissing) as raised:
        client.send_with_receipts(destination, messages(5))

    error = raised.value
    assert str(error).startswith(f"{len(error.confirmed)} of 5 message(s) confirmed by the broker: the connection")
    assert len(error.confirmed) <= 2 and error.refused == []
    assert error.confirmed + error.unconfirmed + error.not_sent == labels(5)
    assert set(error.confirmed) <= set(on_queue(broker, destination, len(error.confirmed)))


def test_the_hosts_of_an_active_standby_broker_are_tried_in_order(clients, settings, broker, destination):
    # The broker listens on 127.0.0.1 only: 127.0.0.2 refuses, as a standby does until it takes over.
    standby_first = clients(dataclasses.replace(settings, hosts=("127.0.0.2", "127.0.0.1")))
    active_first = clients(dataclasses.replace(settings, hosts=("127.0.0.1", "127.0.0.2")))

    assert standby_first.send_with_receipts(destination, messages(1)) == labels(1)
    assert active_first.send_with_receipts(destination, messages(1, 1)) == labels(1, 1)

    assert standby_first.connected_host == active_first.connected_host == ("127.0.0.1", broker.stomp_port)
    assert on_queue(broker, destination, 2) == labels(2)


def test_tls_is_the_default_and_a_plain_stomp_port_is_refused(settings, broker):
    client = StompClient(dataclasses.replace(settings, tls=True, connect_attempts=1, connect_timeout_seconds=1.0))

    with pytest.raises(BrokerUnreachable, match=rf"^could not connect to stomp\+ssl://127.0.0.1:{broker.stomp_port} \(ConnectFailedException"):
        client.open()


# --- RabbitMQ's STOMP adapter: the virtual host in the CONNECT frame --------------------------------------


def test_the_virtual_host_goes_in_the_connect_frame(clients, broker_vhost, broker_secret):
    broker_vhost.connect().channel().queue_declare("runtime-stomp", durable=True)
    client = clients(
        StompSettings(hosts=(broker_vhost.host,), port=broker_vhost.stomp_port, tls=False, virtual_host=broker_vhost.name, secret_arn=broker_secret)
    )

    assert client.send_with_receipts("/amq/queue/runtime-stomp", messages(2)) == labels(2)

    assert [properties.headers["invoice_id"] for _, properties, _ in broker_vhost.drain("runtime-stomp")] == ["inv-0000", "inv-0001"]


# --- sockets of the test's own: what no broker does on demand ----------------------------------------------


class FakeServer:
    """A TCP server on 127.0.0.1 that closes every connection at once (``close``) or never answers (``silent``)."""

    def __init__(self, behaviour: str) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.accepted = 0
        self._held: list[socket.socket] = []
        self._behaviour = behaviour
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.accepted += 1
            if self._behaviour == "close":
                conn.close()
            else:
                self._held.append(conn)

    def stop(self) -> None:
        self._listener.close()
        for conn in self._held:
            conn.close()


@pytest.fixture
def fake_server():
    made = []

    def start(behaviour):
        server = FakeServer(behaviour)
        made.append(server)
        return server

    yield start
    for server in made:
        server.stop()


@pytest.fixture
def fake_secret(monkeypatch):
    reads = []

    def credentials(secret_arn, *, max_age_seconds=300, force_fetch=False):
        reads.append(force_fetch)
        return BrokerCredentials("app", "password")

    monkeypatch.setattr(stomp_module, "read_broker_credentials", credentials)
    return reads


def test_no_reachable_host_is_a_clear_error_after_every_attempt(fake_server, fake_secret):
    # The port is taken on 127.0.0.1 only: 127.0.0.2 and 127.0.0.3 refuse, as a broker being replaced and its standby do.
    port = fake_server("close").port
    sleeps = []
    client = StompClient(StompSettings(hosts=("127.0.0.2", "127.0.0.3"), port=port, tls=False, secret_arn="arn"), sleep=sleeps.append)

    with pytest.raises(BrokerUnreachable) as raised:
        client.open()

    assert str(raised.value) == (
        f"could not connect to stomp://127.0.0.2:{port}, stomp://127.0.0.3:{port} (ConnectFailedException after 3 attempt(s); the log has the socket error)"
    )
    assert len(sleeps) == 2 and 0.25 <= sleeps[0] <= 0.5 and 0.5 <= sleeps[1] <= 1.0
    assert fake_secret == [False, False, False]


def test_a_broker_that_closes_before_connected_is_tried_again_then_a_clear_error(fake_server, fake_secret):
    server = fake_server("close")
    sleeps = []
    client = StompClient(StompSettings(hosts=("127.0.0.1",), port=server.port, tls=False, secret_arn="arn"), sleep=sleeps.append)

    with pytest.raises(BrokerUnreachable, match=rf"^stomp://127.0.0.1:{server.port} closed the connection before it was established \(3 attempt\(s\)\)$"):
        client.open()

    assert server.accepted == 3 and len(sleeps) == 2 and fake_secret == [False, False, False]


def test_a_broker_that_never_answers_connect_is_not_waited_for_twice(fake_server, fake_secret):
    server = fake_server("silent")
    client = StompClient(StompSettings(hosts=("127.0.0.1",), port=server.port, tls=False, secret_arn="arn", connect_timeout_seconds=0.5))

    started = time.monotonic()
    with pytest.raises(BrokerUnreachable, match=rf"^stomp://127.0.0.1:{server.port} sent no CONNECTED frame within 0.5 s$"):
        client.open()

    assert server.accepted == 1 and time.monotonic() - started < 3


def test_the_deadline_shortens_the_wait_for_connected(fake_server, fake_secret):
    server = fake_server("silent")
    client = StompClient(StompSettings(hosts=("127.0.0.1",), port=server.port, tls=False, secret_arn="arn"))

    with pytest.raises(BrokerUnreachable, match=r"sent no CONNECTED frame within 0\.[0-9] s$"):
        client.open(deadline=time.monotonic() + 0.8)


def test_nothing_to_send_opens_no_connection(fake_secret):
    client = StompClient(StompSettings(hosts=("127.0.0.1",), port=1, tls=False, secret_arn="arn"))

    assert client.send_with_receipts("/queue/x", []) == [] and client.connection is None and fake_secret == []


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


def test_a_certificate_the_system_store_does_not_trust_is_refused(fake_secret, untrusted_tls_port, caplog):
    client = StompClient(StompSettings(hosts=("127.0.0.1",), port=untrusted_tls_port, secret_arn="arn", connect_attempts=1))

    with caplog.at_level(logging.WARNING, logger="stomp.py"), pytest.raises(BrokerUnreachable, match=r"^could not connect to stomp\+ssl://127.0.0.1:"):
        client.open()

    assert any("CERTIFICATE_VERIFY_FAILED" in message for message in caplog.messages)


def test_tls_verifies_the_certificate_against_the_system_store_and_the_host_name_for_every_host():
    settings = StompSettings(hosts=("b-1234-1.mq.us-east-1.on.aws", "b-1234-2.mq.us-east-1.on.aws"), secret_arn="arn")

    transport = settings.new_connection().transport

    for host in settings.hosts:
        ssl_settings = transport.get_ssl((host, 61614))
        assert (ssl_settings["verify"], ssl_settings["ca_certs"], ssl_settings["ssl_version"]) == (True, None, ssl.PROTOCOL_TLS_CLIENT)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    assert context.check_hostname is True and context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert settings.url == "stomp+ssl://b-1234-1.mq.us-east-1.on.aws:61614, stomp+ssl://b-1234-2.mq.us-east-1.on.aws:61614"


def test_settings_from_the_environment():
    settings = StompSettings.from_environment({"BROKER_HOST": " b-1-1.mq.on.aws , b-1-2.mq.on.aws ,", "BROKER_SECRET_ARN": "arn:secret"})

    assert (settings.hosts, settings.port, settings.tls, settings.virtual_host) == (("b-1-1.mq.on.aws", "b-1-2.mq.on.aws"), 61614, True, None)
    assert StompSettings.from_environment({"BROKER_HOST": "h", "BROKER_SECRET_ARN": "a", "VIRTUAL_HOST": "/"}).virtual_host == "/"
    assert StompSettings(hosts="one-host", secret_arn="a").hosts == ("one-host",)


@pytest.mark.parametrize(
    ("environ", "reason"),
    [
        ({"BROKER_HOST": " , ", "BROKER_SECRET_ARN": "a"}, r"^BROKER_HOST must name at least one host$"),
        ({"BROKER_HOST": "h"}, r"^BROKER_SECRET_ARN is not set$"),
        ({"BROKER_HOST": "h", "BROKER_SECRET_ARN": "a", "BROKER_TLS": "on"}, r"^BROKER_TLS must be true or false, got 'on'$"),
    ],
)
def test_settings_from_a_wrong_environment_name_the_variable(environ, reason):
    with pytest.raises(ValueError, match=reason):
        StompSettings.from_environment(environ)


def test_an_error_frame_is_read_once_with_its_receipt():
    listener = FrameListener()
    frame = type("Frame", (), {})

    refusal, fatal = frame(), frame()
    refusal.headers, refusal.body = {"message": "User app is not authorized", "receipt-id": "r-1"}, "User app is not authorized"
    fatal.headers, fatal.body = {"message": "Bad CONNECT"}, b"Access refused for user 'app'\n"
    listener.on_error(refusal)
    listener.on_error(fatal)

    assert listener.refused == {"r-1": "User app is not authorized"}
    assert (listener.error, listener.fatal_error) == ("User app is not authorized", "Bad CONNECT: Access refused for user 'app'")
    assert listener.answered("r-1") and not listener.answered("r-2")


def test_without_stomp_the_module_imports_and_fails_clearly_when_used(monkeypatch):
    for name in [name for name in sys.modules if name == "stomp" or name.startswith("stomp.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "stomp", None)
    spec = importlib.util.spec_from_file_location("messaging_runtime._stomp_without_stomp", Path(stomp_module.__file__))
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)

    settings = module.StompSettings(hosts=("h",), secret_arn="a")
    with pytest.raises(ImportError, match=r"^messaging_runtime.stomp needs stomp.py, which the mq_clients layer provides"):
        settings.new_connection()
    with pytest.raises(ImportError, match=r"needs stomp.py"):
        module.StompClient(settings).open()
