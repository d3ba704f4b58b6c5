"""Device events over MQTT into the analytics lake: a real Mosquitto, the topic rule read from its SQL, the real transform.

CapstoneAnalytics devices (AWS IoT things) publish their events on ``analytics/devices/<thing name>/events``; a topic
rule (read from the synthesized template) puts each one on the events stream with the rule's partition key and sends what its
Kinesis action fails on to an error queue; Firehose hands the stream's records to ``lambdas/lake_transform``, which
makes each one an ``events`` row or a ``quarantine`` row. Here:

- a real Mosquitto on 127.0.0.1 (a process of this module's own, on a free port, persistence off) carries the
  messages. Its ACL stands for the devices' IoT policy: a client may publish only on
  ``analytics/devices/<its client id>/events``, and a device's client id is its thing name;
- devices are paho clients (MQTT 5, QoS 1) whose client ids are their thing names;
- a subscriber on the rule's topic filter stands for the rules engine: every message it receives goes through the rule
  as ``tests/handlers/iot_rule.py`` reads it from the rule's SQL and becomes a stream record (its partition key from the
  template), an error action message on the error queue (when Kinesis refuses the record), or, for a payload the
  SQL cannot add fields to, no more than an entry in the AWS IoT logs;
- a witness subscribed to ``#`` shows that the messages outside the filter did go through the broker;
- the stream's records go, in the shape Firehose passes them to a transformation function, to the real handler.

Not reproduced: X.509 authentication and the IoT policy engine (the ACL stands only for the policy's publish
statement), the rules engine itself (``iot_rule.py`` reads just this rule's SQL), its retries, the Kinesis action's
throttling, AWS IoT Core's limits (128 KB payloads, publish rates) and QoS 1 redeliveries.

Without /usr/sbin/mosquitto (``scripts/install_mosquitto.sh`` installs it) or the paho-mqtt package the device path
tests are skipped, with the reason, and fail when CI is set. The tests of the rule interpreter need neither.
"""

from __future__ import annotations

import base64
import json
import os
import pwd
import re
import socket
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.handlers.iot_rule import TopicRule, error_action_message, filter_matches, kinesis_refusal, to_json

try:
    import paho.mqtt.client as mqtt
    from paho.mqtt.reasoncodes import ReasonCode

    MISSING_PACKAGE = None
except ImportError as missing:  # the dev extra installs it
    MISSING_PACKAGE = f"the Python package {missing.name} is not installed (pip install -e '.[dev]')"

# The rule is read from the synthesized CapstoneAnalytics template (the ``rule`` fixture): its AWS::IoT::TopicRule's Sql
# and AwsIotSqlVersion and its Kinesis action's PartitionKey. CloudFormation names the rule and the stream at deploy time;
# these stand-ins only appear in error action messages.
RULE_NAME = "CapstoneAnalyticsDeviceEvents"
# The interpreter's own tests (at the end) use the blueprint's rule written out; test_the_blueprints_rule_is_the_one_written_out
# keeps the two equal.
RULE_SQL = "SELECT *, topic(3) AS device_id, 'device' AS platform FROM 'analytics/devices/+/events'"
PARTITION_KEY = "${user_id}"
STREAM_NAME = "capstone-analytics-events"

MOSQUITTO = Path("/usr/sbin/mosquitto")
HOST = "127.0.0.1"
START_TIMEOUT = 10.0
WAIT = 5.0  # seconds for any answer of the broker
REGION, ACCOUNT_ID = "us-east-1", "123456789012"

# Client ids: the devices' thing names (a thing name may hold ':'), and the test's own clients.
SENSOR_1, SENSOR_2, PROBE = "sensor-0001", "sensor-0002", "greenhouse-7:probe-2"
THINGS = (SENSOR_1, SENSOR_2, PROBE)
OTHER_PUBLISHER = "other-publisher"  # another principal of the account, publishing outside the rule's filter
RULES_ENGINE, WITNESS = "rules-engine", "witness"

# The devices' IoT policy lets a device publish only on analytics/devices/${iot:Connection.Thing.ThingName}/events,
# and a device connects with its thing name as client id: %c is the client id. The test's own clients connect with a
# user name (no password file: allow_anonymous takes it as given) and get what their part needs.
ACL = f"""\
pattern write analytics/devices/%c/events

user {RULES_ENGINE}
topic read analytics/devices/+/events

user {WITNESS}
topic read #

user {OTHER_PUBLISHER}
topic write #
"""

# What becomes of a message: a row in either table, a message on the error queue, an entry in the AWS IoT logs only
# (the rule's SQL cannot run on it), nothing because the rule does not see it, or nothing because the policy refused it.
EVENTS, QUARANTINE, ERROR_QUEUE, IOT_LOG, OUTSIDE, REFUSED = "events", "quarantine", "error queue", "IoT log", "outside", "refused"
MATCHING = (EVENTS, QUARANTINE, ERROR_QUEUE, IOT_LOG)


def _ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _unavailable(problem: str) -> None:
    """No usable broker: fail when CI is set, skip otherwise (as the RabbitMQ, ActiveMQ and Chromium tests do)."""
    if _ci():
        pytest.fail(f"Mosquitto is required when CI is set: {problem}; run scripts/install_mosquitto.sh first", pytrace=False)
    pytest.skip(f"no usable Mosquitto: {problem} (scripts/install_mosquitto.sh installs it)")


def eventually(condition: Callable[[], Any], what: Callable[[], str], timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what()}")
        time.sleep(0.02)
    return value


# --- the broker and its clients -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Broker:
    host: str
    port: int
    log: Path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def _start(folder: Path) -> tuple[subprocess.Popen[bytes], Broker]:
    """Mosquitto on a free port, listening; ``Address already in use`` (the port taken meanwhile) is retried."""
    (folder / "acl").write_text(ACL)
    for _attempt in range(3):
        port = _free_port()
        configuration = folder / "mosquitto.conf"
        configuration.write_text(
            f"listener {port} {HOST}\n"
            # Started as root, mosquitto would switch to the mosquitto user, who cannot read the test's files.
            f"user {pwd.getpwuid(os.geteuid()).pw_name}\n"
            "allow_anonymous true\n"
            "persistence false\n"
            f"acl_file {folder / 'acl'}\n"
            "log_dest stdout\n"
            "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
        )
        log = folder / "mosquitto.log"
        with log.open("wb") as output:
            process = subprocess.Popen([str(MOSQUITTO), "-c", str(configuration)], stdout=output, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while process.poll() is None:
            try:
                socket.create_connection((HOST, port), timeout=0.5).close()
            except OSError:
                if time.monotonic() > deadline:
                    process.kill()
                    process.wait()
                    _unavailable(f"mosquitto did not listen on {HOST}:{port} within {START_TIMEOUT} s")
                time.sleep(0.02)
            else:
                return process, Broker(HOST, port, log)
        if "Address already in use" not in log.read_text(errors="replace"):
            break
    pytest.fail(f"mosquitto exited with {process.returncode} at start (it refused the configuration):\n{log.read_text(errors='replace')}", pytrace=False)


@pytest.fixture(scope="module")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A Mosquitto process of this module's own on 127.0.0.1, stopped after the module."""
    if MISSING_PACKAGE:
        _unavailable(MISSING_PACKAGE)
    if not (MOSQUITTO.is_file() and os.access(MOSQUITTO, os.X_OK)):
        _unavailable(f"{MOSQUITTO} is missing (Debian package mosquitto)")
    folder = tmp_path_factory.mktemp("mosquitto")
    process, broker = _start(folder)
    try:
        yield broker
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Client:
    """A paho MQTT 5 client on its own network thread that waits for the broker's answers (CONNACK, SUBACK, PUBACK)."""

    def __init__(self, broker: Broker, client_id: str, *, user_name: str | None = None) -> None:
        self.client_id = client_id
        self.received: list[tuple[str, bytes]] = []
        self._acks: dict[int, ReasonCode] = {}
        self._granted: dict[int, list[ReasonCode]] = {}
        self._connected = threading.Event()
        self._connack: ReasonCode | None = None
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        if user_name:
            self._client.username_pw_set(user_name)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = lambda _c, _u, mid, codes, _p: self._granted.__setitem__(mid, list(codes))
        self._client.on_publish = lambda _c, _u, mid, code, _p: self._acks.__setitem__(mid, code)
        self._client.on_message = lambda _c, _u, message: self.received.append((message.topic, bytes(message.payload)))
        self._client.connect(broker.host, broker.port, keepalive=30, clean_start=True)
        self._client.loop_start()
        if not self._connected.wait(WAIT) or self._connack is None or self._connack.is_failure:
            self.close()
            raise AssertionError(f"{client_id} could not connect to {broker.host}:{broker.port}: {self._connack}")

    def _on_connect(self, _client: Any, _userdata: Any, _flags: Any, code: ReasonCode, _properties: Any) -> None:
        self._connack = code
        self._connected.set()

    def subscribe(self, topic_filter: str) -> None:
        _, mid = self._client.subscribe(topic_filter, qos=1)
        granted = eventually(lambda: self._granted.get(mid), lambda: f"SUBACK to {self.client_id} for {topic_filter}")
        assert [code.value for code in granted] == [1], f"{self.client_id} was not granted QoS 1 on {topic_filter}: {granted}"

    def publish(self, topic: str, payload: bytes) -> ReasonCode:
        """Publish at QoS 1; the broker's PUBACK reason code (Success, or Not authorized when the ACL refuses)."""
        info = self._client.publish(topic, payload, qos=1)
        info.wait_for_publish(WAIT)
        return eventually(lambda: self._acks.get(info.mid), lambda: f"PUBACK to {self.client_id} on {topic}")

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


# --- what the devices send ------------------------------------------------------------------------------------------

_ABSENT = object()


@dataclass(frozen=True)
class Message:
    """One publish: who, where, what, and what must become of it (``says``: in the quarantine reason or error)."""

    name: str
    publisher: str
    topic: str
    payload: bytes
    outcome: str
    says: str = ""

    @property
    def document(self) -> dict[str, Any]:
        return json.loads(self.payload)


def events_topic(thing: str) -> str:
    return f"analytics/devices/{thing}/events"


def reading(now: datetime, **changes: Any) -> bytes:
    """A device's event (AnalyticsEventV1's fields; no platform, which the rule sets) with ``changes``."""
    event: dict[str, Any] = {
        "schema_version": 1,
        "event_id": str(uuid.uuid4()),
        "event_type": "reading",
        "event_time": (now - timedelta(seconds=3)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "user_id": "u-1001",
        "properties": {"temperature_c": 21.5, "humidity_pct": 40, "door_open": False},
    }
    event.update(changes)
    return json.dumps({name: value for name, value in event.items() if value is not _ABSENT}).encode()


def device_traffic(now: datetime) -> list[Message]:
    """Everything published, in order (the refused publish comes before others of the same device)."""
    return [
        Message("reading without platform", SENSOR_1, events_topic(SENSOR_1), reading(now), EVENTS),
        Message("publish on another device's topic", SENSOR_2, events_topic(SENSOR_1), reading(now, user_id="u-1002"), REFUSED),
        Message("reading that names its platform", SENSOR_2, events_topic(SENSOR_2), reading(now, user_id="u-1002", platform="device"), EVENTS),
        Message(
            "reading from a thing name with ':'",
            PROBE,
            events_topic(PROBE),
            reading(now, user_id="u-1003", properties={"soil_moisture": 0.31, "channel": "stable"}),
            EVENTS,
        ),
        Message(
            "reading that claims another device and platform",
            SENSOR_2,
            events_topic(SENSOR_2),
            reading(now, user_id="u-1002", device_id=SENSOR_1, platform="web"),
            EVENTS,
        ),
        Message("reading with a field the contract does not know", SENSOR_1, events_topic(SENSOR_1), reading(now, firmware="1.4.2"), EVENTS),
        Message("no user_id", SENSOR_1, events_topic(SENSOR_1), reading(now, user_id=_ABSENT), ERROR_QUEUE, "greater than or equal to 1"),
        Message("user_id null", SENSOR_2, events_topic(SENSOR_2), reading(now, user_id=None), ERROR_QUEUE, "greater than or equal to 1"),
        Message("empty payload", PROBE, events_topic(PROBE), b"", ERROR_QUEUE, "greater than or equal to 1"),
        Message(
            "user_id longer than a partition key",
            SENSOR_1,
            events_topic(SENSOR_1),
            reading(now, user_id="u-" + "x" * 300),
            ERROR_QUEUE,
            "less than or equal to 256",
        ),
        Message("event_time not a time", SENSOR_1, events_topic(SENSOR_1), reading(now, event_time="yesterday"), QUARANTINE, "event_time"),
        Message("event_time in epoch seconds", SENSOR_2, events_topic(SENSOR_2), reading(now, event_time=1767225600), QUARANTINE, "event_time"),
        Message(
            "a property that is a list",
            PROBE,
            events_topic(PROBE),
            reading(now, properties={"samples": [21.4, 21.6]}),
            QUARANTINE,
            "properties.samples",
        ),
        Message("event_type a number", SENSOR_1, events_topic(SENSOR_1), reading(now, event_type=42), QUARANTINE, "event_type"),
        # Kinesis takes "42" as a partition key: the contract is what refuses it.
        Message("user_id a number", SENSOR_2, events_topic(SENSOR_2), reading(now, user_id=42), QUARANTINE, "user_id"),
        Message("schema_version 2", PROBE, events_topic(PROBE), reading(now, schema_version=2), QUARANTINE, "schema_version"),
        Message("text, not JSON", SENSOR_1, events_topic(SENSOR_1), b"temperature_c=21.5;humidity_pct=40", IOT_LOG),
        Message("bytes, not UTF-8", PROBE, events_topic(PROBE), b"\x00\x01\xfe\xff", IOT_LOG),
        Message("status topic", OTHER_PUBLISHER, f"analytics/devices/{SENSOR_1}/status", reading(now), OUTSIDE),
        Message("a level below events", OTHER_PUBLISHER, f"analytics/devices/{SENSOR_1}/events/raw", reading(now), OUTSIDE),
        Message("no thing level", OTHER_PUBLISHER, "analytics/devices/events", reading(now), OUTSIDE),
        Message("other case", OTHER_PUBLISHER, f"Analytics/devices/{SENSOR_1}/events", reading(now), OUTSIDE),
        Message("trailing '/' (one more, empty, level)", OTHER_PUBLISHER, f"analytics/devices/{SENSOR_1}/events/", reading(now), OUTSIDE),
    ]


# --- the rules engine stand-in, the stream, Firehose ----------------------------------------------------------------


@dataclass(frozen=True)
class StreamRecord:
    message: Message
    data: bytes
    partition_key: str
    sequence_number: str


@dataclass
class DevicePath:
    """What one run of the device traffic produced, for the tests to look at."""

    messages: list[Message]
    pubacks: dict[str, ReasonCode]
    witnessed: list[tuple[str, bytes]]
    rule_received: list[tuple[str, bytes]]
    stream: list[StreamRecord] = field(default_factory=list)
    error_queue: list[str] = field(default_factory=list)  # SQS message bodies
    iot_log: list[Message] = field(default_factory=list)
    rows: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)  # message name -> (table, row)
    results: Counter[str] = field(default_factory=Counter)

    def named(self, outcome: str) -> list[Message]:
        return [message for message in self.messages if message.outcome == outcome]

    def row(self, message: Message, table: str) -> dict[str, Any]:
        assert message.name in self.rows, f"{message.name!r} has no row; rows: {sorted(self.rows)}"
        found_table, row = self.rows[message.name]
        assert found_table == table, f"{message.name!r} is a {found_table} row, expected {table}: {row}"
        return row

    def error_messages(self) -> dict[bytes, dict[str, Any]]:
        """The error queue's messages by the original payload they carry."""
        messages = [json.loads(body) for body in self.error_queue]
        return {base64.b64decode(message["base64OriginalPayload"]): message for message in messages}


def publisher_of(topic: str) -> str:
    """The client id of whoever published on an events topic.

    MQTT does not tell a subscriber who published; the rules engine knows (its ``clientid()``). Under the devices'
    policy (the broker's ACL here), only the client whose id is the topic's thing name can publish on it.
    """
    return topic.split("/")[2]


def run_rules_engine(rule: TopicRule, path: DevicePath) -> None:
    """Each message the rule's subscription received, as the rules engine handles it: stream, error queue or log."""
    by_content = {(message.topic, message.payload): message for message in path.messages}
    assert len(by_content) == len(path.messages), "every publish must be told apart by its topic and payload"
    for number, (topic, payload) in enumerate(path.rule_received):
        message = by_content[(topic, payload)]
        assert rule.matches(topic), f"the broker delivered {topic!r} on {rule.topic_filter!r}, which the rule does not match"
        document = rule.apply(topic, payload)
        if document is None:
            path.iot_log.append(message)
            continue
        key = rule.partition_key(payload)
        refusal = kinesis_refusal(key)
        if refusal is not None:
            error = error_action_message(RULE_NAME, topic, publisher_of(topic), payload, refusal, failed_resource=STREAM_NAME)
            path.error_queue.append(json.dumps(error))
            continue
        path.stream.append(StreamRecord(message, to_json(document), key, f"4960{number:052d}"))


def firehose_event(records: list[StreamRecord], arrived: datetime) -> dict[str, Any]:
    """The stream's records as Firehose passes a buffer of a Kinesis source to its transformation function."""
    milliseconds = int(arrived.timestamp() * 1000)
    return {
        "invocationId": str(uuid.uuid4()),
        "sourceKinesisStreamArn": f"arn:aws:kinesis:{REGION}:{ACCOUNT_ID}:stream/{STREAM_NAME}",
        "deliveryStreamArn": f"arn:aws:firehose:{REGION}:{ACCOUNT_ID}:deliverystream/capstone-analytics-lake",
        "region": REGION,
        "records": [
            {
                "recordId": f"{record.sequence_number}00000000",
                "approximateArrivalTimestamp": milliseconds,
                "data": base64.b64encode(record.data).decode(),
                "kinesisRecordMetadata": {
                    "shardId": "shardId-000000000000",
                    "partitionKey": record.partition_key,
                    "approximateArrivalTimestamp": milliseconds,
                    "sequenceNumber": record.sequence_number,
                    "subsequenceNumber": 0,
                },
            }
            for record in records
        ],
    }


@pytest.fixture(scope="module")
def rule(template_json: Callable[[str, str], dict[str, Any]]) -> TopicRule:
    """The blueprint's device rule, as synthesized: its SQL, SQL version and the Kinesis action's partition key."""
    resources = template_json("sandbox", "CapstoneAnalytics")["Resources"]
    (payload,) = [r["Properties"]["TopicRulePayload"] for r in resources.values() if r["Type"] == "AWS::IoT::TopicRule"]
    (action,) = payload["Actions"]
    return TopicRule.parse(payload["Sql"], action["Kinesis"]["PartitionKey"], sql_version=payload["AwsIotSqlVersion"])


@pytest.fixture(scope="module")
def lake_transform(handler_env: pytest.MonkeyPatch, load_handler: Callable[[str], ModuleType]) -> ModuleType:
    for name, value in {
        "LAKE_DATABASE": "analytics",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "test",
        "POWERTOOLS_SERVICE_NAME": "test",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        handler_env.setenv(name, value)
    return load_handler("lake_transform")


@pytest.fixture(scope="module")
def device_path(mosquitto: Broker, rule: TopicRule, lake_transform: ModuleType, lambda_context: Any) -> Iterator[DevicePath]:
    """The device traffic through the broker, the rule, the stream and the transform, once for the module."""
    messages = device_traffic(datetime.now(UTC))
    clients: list[Client] = []
    try:
        rules_engine = Client(mosquitto, "iot-rules-engine", user_name=RULES_ENGINE)
        witness = Client(mosquitto, "witness", user_name=WITNESS)
        clients += [rules_engine, witness]
        rules_engine.subscribe(rule.topic_filter)
        witness.subscribe("#")
        publishers = {thing: Client(mosquitto, thing) for thing in THINGS}
        publishers[OTHER_PUBLISHER] = Client(mosquitto, OTHER_PUBLISHER, user_name=OTHER_PUBLISHER)
        clients += publishers.values()

        pubacks = {message.name: publishers[message.publisher].publish(message.topic, message.payload) for message in messages}
        accepted = [message for message in messages if not pubacks[message.name].is_failure]
        matching = [message for message in accepted if message.outcome in MATCHING]
        eventually(lambda: len(witness.received) >= len(accepted), lambda: f"{len(accepted)} messages at the witness, got {len(witness.received)}")
        eventually(lambda: len(rules_engine.received) >= len(matching), lambda: f"{len(matching)} messages at the rule, got {len(rules_engine.received)}")
        time.sleep(0.2)  # anything the broker should not have delivered would arrive by now
        path = DevicePath(messages, pubacks, list(witness.received), list(rules_engine.received))
    finally:
        for client in clients:
            client.close()

    run_rules_engine(rule, path)
    answer = lake_transform.lambda_handler(firehose_event(path.stream, datetime.now(UTC)), lambda_context)
    by_record_id = {f"{record.sequence_number}00000000": record.message for record in path.stream}
    for result in answer["records"]:
        path.results[result["result"]] += 1
        table = result["metadata"]["otfMetadata"]["destinationTableName"]
        row = json.loads(base64.b64decode(result["data"]))
        path.rows[by_record_id[result["recordId"]].name] = (table, row)
    yield path


# --- the device path ------------------------------------------------------------------------------------------------


def test_every_valid_device_event_is_an_events_row_with_the_device_from_its_topic(device_path: DevicePath) -> None:
    for message in device_path.named(EVENTS):
        row = device_path.row(message, "events")
        sent = message.document
        assert row["event_id"] == sent["event_id"], message.name
        assert row["device_id"] == publisher_of(message.topic), message.name
        assert row["platform"] == "device", message.name
        assert (row["event_type"], row["user_id"]) == ("reading", sent["user_id"]), message.name
        assert json.loads(row["properties"]) == sent["properties"], message.name
    (from_probe,) = [message for message in device_path.named(EVENTS) if message.publisher == PROBE]
    assert device_path.row(from_probe, "events")["device_id"] == PROBE  # ':' kept from the topic


def test_a_device_cannot_claim_another_device_id_or_platform(device_path: DevicePath) -> None:
    (claim,) = [message for message in device_path.named(EVENTS) if "device_id" in message.document]
    assert (claim.document["device_id"], claim.document["platform"]) == (SENSOR_1, "web")
    row = device_path.row(claim, "events")
    assert (row["device_id"], row["platform"]) == (SENSOR_2, "device")


def test_every_invalid_event_is_quarantined_with_its_reason_and_its_device(device_path: DevicePath) -> None:
    for message in device_path.named(QUARANTINE):
        row = device_path.row(message, "quarantine")
        assert message.says in row["reason"], f"{message.name}: {row['reason']}"
        quarantined = json.loads(row["payload"])  # the record on the stream: the rule's output
        assert (quarantined["device_id"], quarantined["platform"]) == (publisher_of(message.topic), "device"), message.name
        sent_user = message.document["user_id"]
        assert row["user_id"] == (sent_user if isinstance(sent_user, str) else None), message.name


def test_an_event_kinesis_refuses_is_on_the_error_queue_with_its_payload_and_reason(device_path: DevicePath) -> None:
    errors = device_path.error_messages()
    assert len(errors) == len(device_path.error_queue)
    for message in device_path.named(ERROR_QUEUE):
        assert message.payload in errors, f"{message.name!r} is not on the error queue"
        error = errors[message.payload]
        assert (error["ruleName"], error["topic"], error["clientId"]) == (RULE_NAME, message.topic, message.publisher)
        uuid.UUID(error["cloudwatchTraceId"])
        (failure,) = error["failures"]
        assert (failure["failedAction"], failure["failedResource"]) == ("KinesisAction", STREAM_NAME)
        assert "'partitionKey'" in failure["errorMessage"] and message.says in failure["errorMessage"], message.name
    assert not {message.name for message in device_path.named(ERROR_QUEUE)} & set(device_path.rows)


def test_a_payload_the_rule_cannot_add_fields_to_reaches_neither_the_stream_nor_the_error_queue(device_path: DevicePath) -> None:
    """Not JSON: the SQL's ``topic(3) AS device_id`` cannot be added to it, so the rule's actions never run.

    AWS IoT does not send SQL failures to the error action: they are in the AWS IoT logs only (when logging is on);
    the lake never sees such a payload. See ``TopicRule.apply``.
    """
    assert [message.name for message in device_path.iot_log] == [message.name for message in device_path.named(IOT_LOG)]
    for message in device_path.iot_log:
        assert message.name not in device_path.rows
        assert message.payload not in device_path.error_messages()


def test_messages_outside_the_rule_filter_go_through_the_broker_but_never_reach_the_stream(device_path: DevicePath, rule: TopicRule) -> None:
    received = {topic for topic, _ in device_path.rule_received}
    witnessed = Counter(device_path.witnessed)
    for message in device_path.named(OUTSIDE):
        assert witnessed[(message.topic, message.payload)] == 1, f"{message.name}: the broker did not carry it"
        assert not rule.matches(message.topic), message.name
        assert message.topic not in received, message.name
        assert message.name not in device_path.rows


def test_a_device_cannot_publish_on_another_devices_topic(device_path: DevicePath) -> None:
    (refused,) = device_path.named(REFUSED)
    assert str(device_path.pubacks[refused.name]) == "Not authorized"
    assert (refused.topic, refused.payload) not in device_path.witnessed
    assert (refused.topic, refused.payload) not in device_path.rule_received


def test_nothing_published_on_a_matching_topic_is_lost(device_path: DevicePath) -> None:
    accepted = [message for message in device_path.messages if message.outcome != REFUSED]
    assert all(not device_path.pubacks[message.name].is_failure for message in accepted)
    assert Counter(device_path.witnessed) == Counter((message.topic, message.payload) for message in accepted)
    matching = [message for message in accepted if message.outcome in MATCHING]
    assert Counter(device_path.rule_received) == Counter((message.topic, message.payload) for message in matching)
    tables = Counter(table for table, _ in device_path.rows.values())
    accounted = tables["events"] + tables["quarantine"] + len(device_path.error_queue) + len(device_path.iot_log)
    assert accounted == len(matching) == len(device_path.rule_received)
    assert device_path.results == {"Ok": len(device_path.stream)}
    assert tables == {"events": len(device_path.named(EVENTS)), "quarantine": len(device_path.named(QUARANTINE))}
    assert len(device_path.error_queue) == len(device_path.named(ERROR_QUEUE))


# --- the rule interpreter -------------------------------------------------------------------------------------------


def test_the_blueprints_rule_is_the_one_written_out(rule: TopicRule) -> None:
    assert rule == TopicRule.parse(RULE_SQL, PARTITION_KEY)


def test_the_rule_is_read_from_its_sql(rule: TopicRule) -> None:
    assert rule.topic_filter == "analytics/devices/+/events"
    assert rule.select_all
    assert [name for name, _ in rule.items] == ["device_id", "platform"]
    document = rule.apply(events_topic("t-1"), b'{"user_id": "u-1", "reading": 21.50, "huge": 1e400}')
    assert document == {"user_id": "u-1", "reading": Decimal("21.50"), "huge": Decimal("1e400"), "device_id": "t-1", "platform": "device"}
    assert to_json(document) == b'{"user_id":"u-1","reading":21.50,"huge":1E+400,"device_id":"t-1","platform":"device"}'
    assert rule.apply(events_topic("t-1"), b"") == {"device_id": "t-1", "platform": "device"}
    for payload in (b"not json", b"\xff", b"[1, 2]", b'"text"', b"42", b"NaN"):
        assert rule.apply(events_topic("t-1"), payload) is None, payload
    with pytest.raises(ValueError, match="does not activate the rule"):
        rule.apply("analytics/devices/t-1/status", b"{}")


@pytest.mark.parametrize(
    ("sql", "named"),
    [
        ("SELECT *, topic(3) AS device_id FROM 'analytics/devices/+/events' WHERE user_id <> ''", "the WHERE clause"),
        ("SELECT *, timestamp() AS received_at FROM 'a/+'", "the function timestamp()"),
        ("SELECT *, clientid() AS client FROM 'a/+'", "the function clientid()"),
        ("SELECT *, (SELECT VALUE x FROM y) AS nested FROM 'a/+'", "a nested SELECT"),
        ("SELECT VALUE user_id FROM 'a/+'", "SELECT VALUE"),
        ("SET @device = topic(3) SELECT * FROM 'a/+'", "the SET clause"),
        ("SELECT *, user_id AS partition FROM 'a/+'", "the payload attribute reference 'user_id'"),
        ("SELECT *, topic(3) + 'x' AS device_id FROM 'a/+'", "the operator '+'"),
        ("SELECT *, topic(3) FROM 'a/+'", "a SELECT item without AS"),
        ("SELECT *, 15 AS speed FROM 'a/+'", "the number literal 15"),
        ("SELECT *, NULL AS gone FROM 'a/+'", "the NULL literal"),
        ("SELECT *, \"device\" AS platform FROM 'a/+'", "the double-quoted text"),
        ("SELECT *, 'a' AS x, 'b' AS x FROM 'a/+'", "two SELECT items named 'x'"),
    ],
)
def test_sql_beyond_the_subset_is_refused_by_name(sql: str, named: str) -> None:
    with pytest.raises(NotImplementedError, match=re.escape(named)):
        TopicRule.parse(sql, PARTITION_KEY)


@pytest.mark.parametrize("template", ["${topic(3)}", "${newuuid()}", "${user.id}", "${user_id}-${timestamp()}"])
def test_a_partition_key_template_beyond_field_names_is_refused(template: str) -> None:
    with pytest.raises(NotImplementedError, match="substitution template expression"):
        TopicRule.parse(RULE_SQL, template)


def test_not_sql_and_other_versions_are_refused() -> None:
    with pytest.raises(ValueError, match="unterminated string"):
        TopicRule.parse("SELECT * FROM 'a/+", PARTITION_KEY)
    with pytest.raises(ValueError, match="no FROM clause"):
        TopicRule.parse("SELECT *, topic(3) AS device_id", PARTITION_KEY)
    with pytest.raises(ValueError, match="'#' must be the last level"):
        TopicRule.parse("SELECT * FROM 'a/#/b'", PARTITION_KEY)
    with pytest.raises(NotImplementedError, match="2015-10-08"):
        TopicRule.parse(RULE_SQL, PARTITION_KEY, sql_version="2015-10-08")


@pytest.mark.parametrize(
    ("topic_filter", "topic", "matches"),
    [
        ("analytics/devices/+/events", "analytics/devices/t-1/events", True),
        ("analytics/devices/+/events", "analytics/devices//events", True),  # '+' matches an empty level
        ("analytics/devices/+/events", "analytics/devices/t-1/events/", False),
        ("analytics/devices/+/events", "analytics/devices/a/b/events", False),
        ("analytics/devices/+/events", "Analytics/devices/t-1/events", False),
        ("analytics/#", "analytics", True),  # '#' includes the parent level
        ("analytics/#", "analytics/devices/t-1/events/raw", True),
        ("#", "$aws/things/t-1/shadow/update", False),  # wildcards do not match $ topics at the first level
        ("+/things/#", "$aws/things/t-1", False),
        ("$aws/things/+/shadow/update", "$aws/things/t-1/shadow/update", True),
    ],
)
def test_topic_filter_semantics(topic_filter: str, topic: str, matches: bool) -> None:
    assert filter_matches(topic_filter, topic) is matches


def test_the_partition_key_is_the_original_payloads_field_as_text() -> None:
    rule = TopicRule.parse(RULE_SQL, PARTITION_KEY)
    cases = {
        b'{"user_id": "u-7"}': "u-7",
        b'{"user_id": 42}': "42",
        b'{"user_id": 1.50}': "1.50",
        b'{"user_id": true}': "true",
        b'{"user_id": {"a": [1, "b"]}}': '{"a":[1,"b"]}',
        b'{"user_id": null}': "",  # Null converts to Undefined
        b"{}": "",  # Undefined is an empty string by itself
        b"": "",
    }
    for payload, key in cases.items():
        assert rule.partition_key(payload) == key, payload
    assert kinesis_refusal("u-7") is None and kinesis_refusal("x" * 256) is None
    assert "greater than or equal to 1" in kinesis_refusal("")
    assert "less than or equal to 256" in kinesis_refusal("x" * 257)


def test_a_template_sees_the_payload_not_the_rules_aliases() -> None:
    """``${device_id}`` would be what the device sent, not ``topic(3) AS device_id`` (iot-substitution-templates)."""
    rule = TopicRule.parse(RULE_SQL, "${device_id}")
    payload = b'{"device_id": "claimed", "user_id": "u-1"}'
    assert rule.apply(events_topic("t-1"), payload)["device_id"] == "t-1"
    assert rule.partition_key(payload) == "claimed"
    assert rule.partition_key({"user_id": "u-1"}) == ""


def test_the_error_action_message_has_the_documented_shape() -> None:
    message = error_action_message(RULE_NAME, events_topic("t-1"), "t-1", b'{"a": 1}', "refused", failed_resource=STREAM_NAME, trace_id="trace")
    assert message == {
        "ruleName": RULE_NAME,
        "topic": "analytics/devices/t-1/events",
        "cloudwatchTraceId": "trace",
        "clientId": "t-1",
        "base64OriginalPayload": base64.b64encode(b'{"a": 1}').decode(),
        "failures": [{"failedAction": "KinesisAction", "failedResource": STREAM_NAME, "errorMessage": "refused"}],
    }
