"""A real ActiveMQ on 127.0.0.1, running a configuration that Amazon MQ would run.

``scripts/start_activemq.sh`` installs Debian's ``activemq`` package (5.17 on
bookworm); Debian's service is not used. Each test module that loads this
module as a plugin (``pytest_plugins = ("tests.local_activemq",)``) gets a
broker process of its own: the ``activemq`` fixture writes a Spring
``activemq.xml`` into a temporary directory (the module's
``amazon_mq_configuration`` fixture, i.e. the ``<broker>`` content Amazon MQ
receives, plus what Amazon MQ adds itself: users, a transport connector and a
data directory), starts ``org.apache.activemq.console.Main`` from
``/usr/share/activemq/bin/activemq.jar``, waits for its STOMP port and stops
the broker after the module. ``broker_for(configuration)`` starts one for a
single test or fixture the same way.

Users (as on Amazon MQ): ``admin`` (group ``admin``), ``app`` (group
``application``) and ``console`` (group ``activemq-webconsole``, the group
Amazon MQ's web console acts as). Connect with ``activemq.connect("app")``.

When ActiveMQ or Java is not installed, or the broker does not come up in
time, the tests that need it fail if ``CI`` is set and are skipped, with the
reason, otherwise. A broker that starts and exits (it rejected the
configuration) always fails the tests, with the broker's log.

PYTEST_DONT_REWRITE: test modules import this module as well as loading it
as a plugin, and it has no assert for pytest to rewrite.
"""

from __future__ import annotations

import os
import queue
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

HOST = "127.0.0.1"
ACTIVEMQ_HOME = Path("/usr/share/activemq")
ACTIVEMQ_JAR = ACTIVEMQ_HOME / "bin" / "activemq.jar"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
#: How long a client waits for the broker's answer (RECEIPT, ERROR, MESSAGE).
ANSWER_TIMEOUT = 10.0

CORE = "http://activemq.apache.org/schema/core"
BEANS = "http://www.springframework.org/schema/beans"
#: user -> groups, as the broker's users are set up on Amazon MQ (the console's group is Amazon MQ's own).
USERS: Mapping[str, tuple[str, ...]] = {"admin": ("admin",), "app": ("application",), "console": ("activemq-webconsole",)}

# log4j 1.2 is what Debian's ActiveMQ logs through; everything goes to the process's stdout, kept in activemq.log.
_LOG4J = """\
log4j.rootLogger=INFO, out
log4j.logger.org.springframework=WARN
log4j.logger.org.apache.xbean=WARN
log4j.appender.out=org.apache.log4j.ConsoleAppender
log4j.appender.out.layout=org.apache.log4j.PatternLayout
log4j.appender.out.layout.ConversionPattern=%d{HH:mm:ss,SSS} %-5p %c{1} - %m%n
"""


class BrokerUnavailable(Exception):
    """ActiveMQ cannot run here (not installed, no Java, no start in time): skip, or fail under CI."""


class BrokerRejected(Exception):
    """The broker process started and exited: it refused the configuration. Always a failure."""


class Refused(Exception):
    """The broker answered a frame with ERROR; ``str(exc)`` is the ERROR frame's ``message`` header."""

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.details = details


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _core(name: str) -> str:
    return f"{{{CORE}}}{name}"


def render_activemq_xml(amazon_mq_configuration: str, *, stomp_port: int, data_dir: Path, passwords: Mapping[str, str]) -> str:
    """The complete Spring ``activemq.xml``: the ``<broker>`` of ``amazon_mq_configuration`` plus users, STOMP and storage.

    The children of the given ``<broker>`` are kept as they are; the
    ``simpleAuthenticationPlugin`` goes first into its ``<plugins>`` (one
    ``<plugins>`` element: a second one would replace the first). The broker's
    children are emitted in alphabetical order: ActiveMQ 5.17's schema accepts
    them in any order (checked), older releases' schemas did not, and
    alphabetical order suits both. Every element must be in the core namespace.
    """
    source = ElementTree.fromstring(amazon_mq_configuration.encode())
    if source.tag != _core("broker"):
        raise ValueError(f"expected a <broker> element in namespace {CORE}, got {source.tag}")
    children = list(source)
    foreign = sorted({element.tag for element in source.iter() if not element.tag.startswith(f"{{{CORE}}}")})
    if foreign:
        raise ValueError(f"only elements in namespace {CORE} are supported, got {foreign}")
    if any(child.tag == _core("transportConnectors") for child in children):
        raise ValueError("the Amazon MQ configuration must not have transportConnectors: Amazon MQ sets them")

    broker = ElementTree.Element(source.tag, source.attrib)
    broker.set("brokerName", "local-activemq")
    broker.set("dataDirectory", str(data_dir))
    broker.set("persistent", "false")
    broker.set("useJmx", "false")

    plugins = next((child for child in children if child.tag == _core("plugins")), None)
    if plugins is None:
        plugins = ElementTree.Element(_core("plugins"))
        children.append(plugins)
    authentication = ElementTree.Element(_core("simpleAuthenticationPlugin"))
    users = ElementTree.SubElement(authentication, _core("users"))
    for user, groups in USERS.items():
        ElementTree.SubElement(users, _core("authenticationUser"), username=user, password=passwords[user], groups=",".join(groups))
    plugins.insert(0, authentication)

    connectors = ElementTree.Element(_core("transportConnectors"))
    ElementTree.SubElement(connectors, _core("transportConnector"), name="stomp", uri=f"stomp://{HOST}:{stomp_port}")
    children.append(connectors)

    broker.extend(sorted(children, key=lambda child: _local(child.tag)))
    # ElementTree's default_namespace refuses unqualified attributes: write the core namespace as the default by hand.
    for element in broker.iter():
        element.tag = _local(element.tag)
    broker.set("xmlns", CORE)
    ElementTree.indent(broker, space="  ", level=1)
    body = ElementTree.tostring(broker, encoding="unicode")
    schemas = f"{BEANS} http://www.springframework.org/schema/beans/spring-beans.xsd {CORE} http://activemq.apache.org/schema/core/activemq-core.xsd"
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<beans xmlns="{BEANS}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="{schemas}">\n'
        f"  {body}\n"
        "</beans>\n"
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1):
            return True
    except OSError:
        return False


def _ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _installation_problem() -> str | None:
    if not ACTIVEMQ_JAR.is_file():
        return f"ActiveMQ is not installed ({ACTIVEMQ_JAR} is missing)"
    if shutil.which("java") is None:
        return "java is not on PATH"
    return None


class StompSession:
    """One STOMP 1.2 connection as one user. Every frame asks for a receipt, so the broker's ERROR answer surfaces as :class:`Refused`."""

    def __init__(self, port: int, user: str, password: str) -> None:
        import stomp

        self.user = user
        self._answers: queue.Queue = queue.Queue()  # (command, frame): CONNECTED, RECEIPT or ERROR
        self._messages: queue.Queue = queue.Queue()
        answers, messages = self._answers, self._messages

        class Listener(stomp.ConnectionListener):
            def on_connected(self, frame):
                answers.put(("CONNECTED", frame))

            def on_receipt(self, frame):
                answers.put(("RECEIPT", frame))

            def on_error(self, frame):
                answers.put(("ERROR", frame))

            def on_message(self, frame):
                messages.put(frame)

        self._connection = stomp.Connection12([(HOST, port)], heartbeats=(0, 0), reconnect_attempts_max=1, auto_content_length=True)
        self._connection.set_listener("session", Listener())
        self._connection.connect(user, password, wait=False)
        try:
            self._await("CONNECTED", None)
        except BaseException:
            self.close()
            raise

    def _await(self, wanted: str, receipt: str | None) -> None:
        deadline = time.monotonic() + ANSWER_TIMEOUT
        while (left := deadline - time.monotonic()) > 0:
            try:
                command, frame = self._answers.get(timeout=left)
            except queue.Empty:
                break
            if receipt is not None and frame.headers.get("receipt-id") not in (receipt, None):
                continue  # the answer to an earlier frame
            if command == "ERROR":
                raise Refused(frame.headers.get("message", ""), frame.body or "")
            if command == wanted:
                return
        raise TimeoutError(f"no {wanted} from the broker for {self.user} within {ANSWER_TIMEOUT:.0f} s")

    def _send(self, destination: str, body: str) -> None:
        receipt = uuid.uuid4().hex
        self._connection.send(destination, body, headers={"persistent": "true", "receipt": receipt})
        self._await("RECEIPT", receipt)

    def send(self, queue_name: str, body: str) -> None:
        """Send a persistent message to the queue; return once the broker has taken it, raise Refused if it does not."""
        self._send(f"/queue/{queue_name}", body)

    def publish(self, topic: str, body: str) -> None:
        """Send a message to the topic; return once the broker has taken it, raise Refused if it does not."""
        self._send(f"/topic/{topic}", body)

    def subscribe(self, queue_name: str) -> None:
        """Consume the queue (auto acknowledgement); raise Refused if the broker does not let this user."""
        receipt = uuid.uuid4().hex
        self._connection.subscribe(f"/queue/{queue_name}", id=receipt, ack="auto", headers={"receipt": receipt})
        self._await("RECEIPT", receipt)

    def receive(self, timeout: float = ANSWER_TIMEOUT) -> str:
        """The body of the next message delivered to this session's subscriptions."""
        try:
            return self._messages.get(timeout=timeout).body
        except queue.Empty:
            raise TimeoutError(f"no message for {self.user} within {timeout:.0f} s") from None

    def close(self) -> None:
        if self._connection.is_connected():
            self._connection.disconnect()


@dataclass
class LocalActiveMQ:
    """A running broker: its STOMP port, its users' passwords, its directory (activemq.xml, activemq.log)."""

    stomp_port: int
    passwords: Mapping[str, str]
    directory: Path
    process: subprocess.Popen

    @property
    def log(self) -> str:
        return (self.directory / "activemq.log").read_text(errors="replace")

    @contextmanager
    def connect(self, user: str) -> Iterator[StompSession]:
        """A STOMP session as ``user`` (``admin``, ``app`` or ``console``), closed afterwards."""
        session = StompSession(self.stomp_port, user, self.passwords[user])
        try:
            yield session
        finally:
            session.close()


def _numbered(text: str) -> str:
    """The broker's errors give line numbers in activemq.xml."""
    return "\n".join(f"{number:4} {line}" for number, line in enumerate(text.splitlines(), 1))


def _tail(path: Path, lines: int = 30) -> str:
    """The last lines of the broker's log, without the stack frames of its exceptions."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    kept = [line for line in text.splitlines() if not line.lstrip().startswith(("at ", "... "))]
    return "\n".join(kept[-lines:])


@contextmanager
def run_broker(amazon_mq_configuration: str, *, timeout: float = START_TIMEOUT) -> Iterator[LocalActiveMQ]:
    """Start a broker with ``amazon_mq_configuration``, wait for STOMP, yield it, and stop it."""
    problem = _installation_problem()
    if problem is not None:
        raise BrokerUnavailable(f"{problem} (scripts/start_activemq.sh installs it)")
    with tempfile.TemporaryDirectory(prefix="activemq-") as name:
        directory = Path(name)
        stomp_port = _free_port()
        passwords = {user: secrets.token_hex(12) for user in USERS}
        config = directory / "activemq.xml"
        config.write_text(render_activemq_xml(amazon_mq_configuration, stomp_port=stomp_port, data_dir=directory / "data", passwords=passwords))
        (directory / "log4j.properties").write_text(_LOG4J)
        command = [
            "java",
            "-Xms64m",
            "-Xmx256m",
            "-Djava.awt.headless=true",
            f"-Dactivemq.home={ACTIVEMQ_HOME}",
            f"-Dactivemq.base={directory}",
            f"-Dactivemq.conf={directory}",
            f"-Dactivemq.data={directory / 'data'}",
            f"-Dlog4j.configuration=file:{directory / 'log4j.properties'}",
            "-jar",
            str(ACTIVEMQ_JAR),
            "start",
            f"xbean:file:{config}",
        ]
        log_path = directory / "activemq.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(command, cwd=directory, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + timeout
            while not _port_open(stomp_port):
                if process.poll() is not None:
                    raise BrokerRejected(
                        f"ActiveMQ exited ({process.returncode}) before listening on {HOST}:{stomp_port}; "
                        f"activemq.xml:\n{_numbered(config.read_text())}\nlog:\n{_tail(log_path)}"
                    )
                if time.monotonic() > deadline:
                    raise BrokerUnavailable(f"ActiveMQ did not listen on {HOST}:{stomp_port} within {timeout:.0f} s; log:\n{_tail(log_path)}")
                time.sleep(0.2)
            # The transport connectors listen before the broker logs that it has started: wait for that line too, so
            # that a loaded machine does not see a half-written log.
            while ") started" not in log_path.read_text(errors="replace"):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise BrokerUnavailable(f"ActiveMQ listened on {HOST}:{stomp_port} logged no start within {timeout:.0f} s; log:\n{_tail(log_path)}")
                time.sleep(0.2)
            yield LocalActiveMQ(stomp_port=stomp_port, passwords=passwords, directory=directory, process=process)
        finally:
            _stop(process)


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM (the broker's shutdown hook stops it cleanly), SIGKILL if it is still there after STOP_TIMEOUT."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def broker_for(amazon_mq_configuration: str) -> Iterator[LocalActiveMQ]:
    """:func:`run_broker` for a test: skipped when ActiveMQ cannot run here (failed when CI is set); failed when it rejects the configuration."""
    unavailable = rejected = None
    try:
        with run_broker(amazon_mq_configuration) as broker:
            yield broker
    except BrokerUnavailable as exc:
        unavailable = str(exc)
    except BrokerRejected as exc:
        rejected = str(exc)
    # Outside the except clauses, so that the report does not repeat the exception.
    if rejected is not None:
        pytest.fail(rejected, pytrace=False)
    if unavailable is not None:
        if _ci():
            pytest.fail(f"ActiveMQ is required when CI is set: {unavailable}; run scripts/start_activemq.sh first", pytrace=False)
        pytest.skip(f"no usable ActiveMQ: {unavailable}")


@pytest.fixture(scope="module")
def amazon_mq_configuration() -> str:
    """The ``<broker>`` document under test; test modules override this fixture."""
    from messaging_constructs.message_broker import activemq_configuration

    return activemq_configuration()


@pytest.fixture(scope="module")
def activemq(amazon_mq_configuration) -> Iterator[LocalActiveMQ]:
    """A broker of the test module's own, running ``amazon_mq_configuration``; stopped after the module."""
    with broker_for(amazon_mq_configuration) as broker:
        yield broker
