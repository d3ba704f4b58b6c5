"""A real RabbitMQ on 127.0.0.1 for the AMQP and STOMP handler tests.

``scripts/start_rabbitmq.sh`` starts one (Debian's rabbitmq-server, with the
STOMP plugin on 61613). Every test module gets a virtual host and a user of its
own, made with ``rabbitmqctl`` and deleted afterwards, so the modules share the
server and nothing else. The functions read the user's credentials from a
Secrets Manager secret (in moto), as they do on AWS.

When no broker answers, the tests that need one fail if ``CI`` is set and are
skipped, with the reason, otherwise.

Test modules load this module as a plugin (``pytest_plugins =
("tests.handlers.rabbitmq",)``) and use its fixtures: ``broker_vhost`` (the
virtual host, its user, and what the broker says about them), ``broker_secret``,
``broker_env`` (the functions' connection settings) and ``stomp_relay``.
"""

import json
import os
import secrets
import shutil
import socket
import subprocess
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

import pika
import pytest

HOST = "127.0.0.1"
AMQP_PORT = 5672
STOMP_PORT = 61613


def rabbitmqctl(*args: str, timeout: float = 60) -> str:
    """Run ``rabbitmqctl -q <args>``; raise with its output when it fails."""
    run = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=timeout)
    if run.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed ({run.returncode}): {run.stderr.strip() or run.stdout.strip()}")
    return run.stdout


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=2):
            return True
    except OSError:
        return False


def _broker_problem() -> str | None:
    """Why the local broker cannot be used, or None when it can."""
    if shutil.which("rabbitmqctl") is None:
        return "rabbitmqctl is not installed"
    for port, protocol in ((AMQP_PORT, "AMQP"), (STOMP_PORT, "STOMP")):
        if not _port_open(port):
            return f"nothing listens for {protocol} on {HOST}:{port}"
    try:
        rabbitmqctl("list_vhosts", timeout=30)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        return f"rabbitmqctl cannot manage the node ({exc})"
    return None


def _ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def rabbitmq() -> None:
    """A RabbitMQ node on 127.0.0.1 that rabbitmqctl can manage: fail in CI without one, skip elsewhere."""
    problem = _broker_problem()
    if problem is None:
        return
    if _ci():
        pytest.fail(f"RabbitMQ is required when CI is set: {problem}; run scripts/start_rabbitmq.sh first", pytrace=False)
    pytest.skip(f"no usable RabbitMQ on {HOST}: {problem} (scripts/start_rabbitmq.sh starts one)")


@dataclass
class BrokerVhost:
    """A virtual host of the local broker, with the user the functions connect as."""

    name: str
    user: str
    password: str
    host: str = HOST
    amqp_port: int = AMQP_PORT
    stomp_port: int = STOMP_PORT
    _inspectors: list[pika.BlockingConnection] = field(default_factory=list)

    def connect(self) -> pika.BlockingConnection:
        """A connection of the test's own (as guest), closed at teardown."""
        parameters = pika.ConnectionParameters(
            host=self.host,
            port=self.amqp_port,
            virtual_host=self.name,
            credentials=pika.PlainCredentials("guest", "guest"),
            connection_attempts=1,
            client_properties={"connection_name": "test-inspector"},
        )
        connection = pika.BlockingConnection(parameters)
        self._inspectors.append(connection)
        return connection

    def function_connections(self) -> list[str]:
        """The process ids of the connections the functions' user has open in this virtual host."""
        pids = []
        for line in rabbitmqctl("list_connections", "--no-table-headers", "pid", "user", "vhost").splitlines():
            pid, user, vhost = line.split("\t")
            if user == self.user and vhost == self.name:
                pids.append(pid)
        return pids

    def close_function_connections(self, reason: str = "closed by the test") -> int:
        """Close the functions' connections from the broker's side, as a broker restart or failover does."""
        pids = self.function_connections()
        for pid in pids:
            rabbitmqctl("close_connection", pid, reason)
        return len(pids)

    def set_permissions(self, configure: str, write: str, read: str) -> None:
        """Set the functions' user's permissions in this virtual host (three regular expressions)."""
        rabbitmqctl("set_permissions", "-p", self.name, self.user, configure, write, read)

    def change_password(self, password: str) -> None:
        rabbitmqctl("change_password", self.user, password)

    def function_channels(self) -> list[dict[str, str]]:
        """The channels of the functions' user in this virtual host, with whether each is in confirm mode."""
        columns = ("user", "vhost", "confirm", "number")
        channels = [dict(zip(columns, line.split("\t"), strict=True)) for line in rabbitmqctl("list_channels", "--no-table-headers", *columns).splitlines()]
        return [channel for channel in channels if channel["user"] == self.user and channel["vhost"] == self.name]

    def queue_info(self, queue: str) -> dict[str, str]:
        """The broker's own view of a queue: durable, messages, messages_persistent, arguments."""
        columns = ("name", "durable", "messages", "messages_persistent")
        for line in rabbitmqctl("list_queues", "-p", self.name, "--no-table-headers", *columns).splitlines():
            values = dict(zip(columns, line.split("\t"), strict=True))
            if values["name"] == queue:
                return values
        raise AssertionError(f"no queue {queue!r} in virtual host {self.name!r}")

    def drain(self, queue: str) -> list[tuple[Any, pika.BasicProperties, bytes]]:
        """Every message on the queue, taken off it: (method, properties, body); none when there is no such queue."""
        channel = self.connect().channel()
        messages = []
        while True:
            try:
                method, properties, body = channel.basic_get(queue, auto_ack=True)
            except pika.exceptions.ChannelClosedByBroker as exc:
                if exc.reply_code == 404 and not messages:
                    return []
                raise
            if method is None:
                return messages
            messages.append((method, properties, body))

    def close_inspectors(self) -> None:
        for connection in self._inspectors:
            if connection.is_open:
                try:
                    connection.close()
                except pika.exceptions.AMQPError:
                    pass
        self._inspectors.clear()


@pytest.fixture(scope="module")
def broker_vhost(rabbitmq, request) -> BrokerVhost:
    """A virtual host and a user of this test module's own, deleted after it."""
    module = request.module.__name__.rpartition(".")[2]
    suffix = uuid.uuid4().hex[:8]
    vhost = BrokerVhost(name=f"{module}-{suffix}", user=f"fn-{suffix}", password=secrets.token_hex(16))
    rabbitmqctl("add_vhost", vhost.name)
    try:
        rabbitmqctl("add_user", vhost.user, vhost.password)
        rabbitmqctl("set_permissions", "-p", vhost.name, vhost.user, ".*", ".*", ".*")
        rabbitmqctl("set_permissions", "-p", vhost.name, "guest", ".*", ".*", ".*")
        yield vhost
    finally:
        vhost.close_inspectors()
        rabbitmqctl("delete_vhost", vhost.name)
        try:
            rabbitmqctl("delete_user", vhost.user)
        except RuntimeError:
            pass  # the user was not made


@pytest.fixture(scope="module")
def broker_secret(moto_module, broker_vhost) -> str:
    """The ARN of a secret (in moto) holding the functions' broker credentials, as Amazon MQ users are kept."""
    import boto3

    secret = boto3.client("secretsmanager").create_secret(
        Name=f"exercise05/broker/{broker_vhost.name}",
        SecretString=json.dumps({"username": broker_vhost.user, "password": broker_vhost.password}),
    )
    return secret["ARN"]


@pytest.fixture(scope="module")
def broker_env(moto_module, broker_vhost, broker_secret) -> pytest.MonkeyPatch:
    """The connection settings every broker function reads, pointing at the local AMQP port without TLS."""
    moto_module.setenv("BROKER_SECRET_ARN", broker_secret)
    moto_module.setenv("BROKER_HOST", broker_vhost.host)
    moto_module.setenv("BROKER_PORT", str(broker_vhost.amqp_port))
    moto_module.setenv("BROKER_TLS", "false")
    moto_module.setenv("VIRTUAL_HOST", broker_vhost.name)
    return moto_module


class StallingRelay:
    """A TCP relay to the real broker that can stall or cut the connections through it.

    ``stall()``: what the broker sends is held back, as on a network path that
    has stopped delivering; the client's frames still reach the broker, its
    answers never reach the client. ``cut()``: every connection through the
    relay is closed at once, as when a broker fails over.
    """

    def __init__(self, target_port: int) -> None:
        self.target = (HOST, target_port)
        self._listener = socket.create_server((HOST, 0))
        self.port = self._listener.getsockname()[1]
        self._stalled = threading.Event()
        self._sockets: list[socket.socket] = []
        self.connections = 0  # accepted so far
        threading.Thread(target=self._accept, daemon=True).start()

    def stall(self) -> None:
        self._stalled.set()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            self.connections += 1
            self._sockets += [client, server]
            threading.Thread(target=self._pipe, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, True), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, from_broker: bool) -> None:
        try:
            while data := source.recv(65536):
                if not (from_broker and self._stalled.is_set()):
                    sink.sendall(data)
        except OSError:
            pass

    def cut(self) -> None:
        for sock in self._sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self._listener.close()
        for sock in self._sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()


@pytest.fixture
def stomp_relay(broker_vhost):
    """A StallingRelay to the broker's STOMP port, closed after the test."""
    relay = StallingRelay(broker_vhost.stomp_port)
    yield relay
    relay.close()
