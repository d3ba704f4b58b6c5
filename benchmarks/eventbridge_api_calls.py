"""AWS API calls per 1,000 messages of the Exercise 02 functions that put events on the bus, against the batching floor.

Both run under moto with the custom bus; every call their clients send is
counted through botocore's ``before-call`` event. The floor is one PutEvents
call per 10 entries: 100 calls for 1,000 events.

- the orders publisher, invoked once with 1,000 order events;
- the inventory service, given the same 1,000 order events as its queue
  delivers them (whole EventBridge events in SQS bodies), in batches of 10 (the
  event source mapping's default) and of 100: one stock event per order, put on
  the bus per batch through ``EventBridgePublisher``. Its other calls are
  DynamoDB's: the idempotency claim before and the settlement after, one
  conditional write each per record, which is the point of them (shown per record).

The second scenario makes EventBridge fail each entry on its first attempt
with a probability of 10% (InternalFailure, which is retryable). Only the
failed entries are sent again, regrouped into full calls after one backoff
pause, so the extra cost is about ceil(failed entries / 10) calls per publish.
A batch of 10 is one publish: each batch with a failed entry costs one more
call (1 - 0.9**10 = 65% of a call per batch of 10); a batch of 100 regroups
across its 10 calls. The failure is injected in front of the client (the
entries that pass go to moto for real); the calls are counted at the same
place, so a call whose entries all fail still counts. Several seeds are run and
the median, lowest and highest are shown.

Run from the repository root: ``python benchmarks/eventbridge_api_calls.py``.
"""

import contextlib
import dataclasses
import hashlib
import json
import os
import random
import statistics
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _lambda_env import Context, load_handler, prepare_environment  # noqa: E402

EVENTS = 1_000
FLOOR = -(-EVENTS // 10)
FAILURE_RATE = 0.10
SEEDS = range(11)
INVENTORY_SEEDS = range(5)
INVENTORY_BATCHES = (10, 100)
TABLE = "benchmark-idempotency"

prepare_environment(
    POWERTOOLS_SERVICE_NAME="exercise02-benchmark",
    POWERTOOLS_METRICS_NAMESPACE="Exercise02Benchmark",
    PUT_RETRY_BASE_DELAY_SECONDS="0.2",
    IDEMPOTENCY_TABLE_NAME=TABLE,
)
os.environ.pop("AWS_ENDPOINT_URL_EVENTS", None)


def request(rng):
    events = []
    for index in range(EVENTS):
        items = [{"sku": f"SKU-{rng.randrange(500):04d}", "quantity": rng.randint(1, 12)} for _ in range(rng.randint(1, 5))]
        detail = {
            "version": 2,
            "order_id": f"o-{index:06d}",
            "customer_id": f"c-{rng.randrange(300):05d}",
            "total": round(rng.uniform(1, 2_000), 2),
            "currency": "EUR",
            "items": items,
        }
        events.append({"detail_type": "OrderPlaced" if rng.random() < 0.8 else "OrderCancelled", "detail": detail})
    return {"events": events}


def sqs_batches(rng, batch_size):
    """The request's order events as the inventory queue delivers them: SQS records whose bodies are whole EventBridge events."""
    records = []
    for event in request(rng)["events"]:
        body = json.dumps(
            {
                "version": "0",
                "id": str(uuid.UUID(int=rng.getrandbits(128))),
                "detail-type": event["detail_type"],
                "source": "blueprints.orders",
                "account": "123456789012",
                "time": "2025-03-14T09:26:53Z",
                "region": "us-east-1",
                "resources": [],
                "detail": event["detail"],
            }
        )
        now = str(int(time.time() * 1000))
        records.append(
            {
                "messageId": str(uuid.UUID(int=rng.getrandbits(128))),
                "receiptHandle": uuid.uuid4().hex,
                "body": body,
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": now, "ApproximateFirstReceiveTimestamp": now},
                "messageAttributes": {},
                "md5OfBody": hashlib.md5(body.encode()).hexdigest(),
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:inventory",
                "awsRegion": "us-east-1",
            }
        )
    return [{"Records": records[start : start + batch_size]} for start in range(0, len(records), batch_size)]


def inject_first_attempt_failures(module, rng, rate):
    """Fail each entry's first attempt with probability ``rate``; count the PutEvents calls the module makes."""
    real_put_events = module.eventbridge.put_events
    seen = set()
    counts = Counter()

    def put_events(**params):
        counts["PutEvents"] += 1
        entries = params["Entries"]
        verdicts = []
        for entry in entries:
            first_attempt = entry["Detail"] not in seen
            seen.add(entry["Detail"])
            verdicts.append(first_attempt and rng.random() < rate)
        passing = [entry for entry, failed in zip(entries, verdicts, strict=True) if not failed]
        real = iter(real_put_events(Entries=passing)["Entries"] if passing else [])
        results = [{"ErrorCode": "InternalFailure", "ErrorMessage": "injected"} if failed else next(real) for failed in verdicts]
        counts["entries failed"] += sum(verdicts)
        return {"FailedEntryCount": sum(verdicts), "Entries": results}

    module.eventbridge.put_events = put_events
    return counts


def counted(module, rng, failure_rate, clients):
    """Count every call of ``clients``; with a failure rate, PutEvents is counted where the failures are injected."""
    module.bus.retry = dataclasses.replace(module.bus.retry, sleep=lambda seconds: None)  # count calls, not wait for backoff
    calls = Counter()
    for client in clients:
        client.meta.events.register("before-call", lambda model, **_: calls.update([model.name]))
    injected = inject_first_attempt_failures(module, rng, failure_rate) if failure_rate else Counter()
    return calls, injected


def run_publisher(number, rng, failure_rate):
    import boto3
    from moto import mock_aws

    with mock_aws():
        os.environ["BUS_NAME"] = boto3.client("events").create_event_bus(Name="blueprints")["EventBusArn"]
        publisher = load_handler("orders_publisher", f"benchmark_orders_publisher_{number}")
        calls, injected = counted(publisher, rng, failure_rate, [publisher.eventbridge])
        result = publisher.lambda_handler(request(rng), Context())
        assert result == {"published": EVENTS}, result
        put_events = injected["PutEvents"] if failure_rate else calls["PutEvents"]
        return put_events, sum(calls.values()) - calls["PutEvents"], injected["entries failed"]


def run_inventory(number, rng, failure_rate, batch_size):
    import boto3
    from moto import mock_aws

    with mock_aws():
        os.environ["BUS_NAME"] = boto3.client("events").create_event_bus(Name="blueprints")["EventBusArn"]
        boto3.client("dynamodb").create_table(
            TableName=TABLE,
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        inventory = load_handler("inventory_service", f"benchmark_inventory_service_{number}")
        calls, injected = counted(inventory, rng, failure_rate, [inventory.eventbridge, inventory.store.client])
        for event in sqs_batches(rng, batch_size):
            response = inventory.lambda_handler(event, Context())
            assert response == {"batchItemFailures": []}, response
        put_events = injected["PutEvents"] if failure_rate else calls["PutEvents"]
        return put_events, sum(calls.values()) - calls["PutEvents"], injected["entries failed"]


def row(label, runs):
    put_calls = [calls for calls, _, _ in runs]
    median = statistics.median(put_calls)
    other = max(o for _, o, _ in runs)
    failed = statistics.median(entries for _, _, entries in runs)
    spread = f"{min(put_calls)}-{max(put_calls)}" if len(runs) > 1 else ""
    print(f"{label:44} {median:>10.0f} {spread:>9} {FLOOR:>6} {median / FLOOR:>12.2f} {median - FLOOR:>12.0f} {failed:>15.0f} {other / EVENTS:>16.2f}")


def main():
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        publisher = [
            ("orders_publisher: no failures", [run_publisher(0, random.Random(0), 0.0)]),
            ("orders_publisher: 10% fail on 1st attempt", [run_publisher(100 + seed, random.Random(seed), FAILURE_RATE) for seed in SEEDS]),
        ]
        inventory = []
        for size in INVENTORY_BATCHES:
            inventory.append((f"inventory_service, batch {size}: no failures", [run_inventory(200 + size, random.Random(0), 0.0, size)]))
            failing = [run_inventory(300 + size * 10 + seed, random.Random(seed), FAILURE_RATE, size) for seed in INVENTORY_SEEDS]
            inventory.append((f"inventory_service, batch {size}: 10% fail on 1st", failing))

    print(f"AWS API calls per {EVENTS:,} order events; floor = {FLOOR} PutEvents calls (10 entries per call); medians of the seeds, lowest-highest")
    header = (
        f"{'scenario':44} {'PutEvents':>10} {'range':>9} {'floor':>6} {'calls/floor':>12} {'extra calls':>12} {'entries failed':>15} {'other per message':>16}"
    )
    print(header)
    print("-" * len(header))
    for label, runs in publisher + inventory:
        row(label, runs)
    regrouped = -(-EVENTS * FAILURE_RATE // 10)
    per_call = FLOOR * (1 - (1 - FAILURE_RATE) ** 10)
    print(
        f"expected extra calls at 10%: about {regrouped:.0f} when a publish regroups the failed entries of 10 calls or more "
        f"(the publisher, inventory at batch 100); {per_call:.1f} when each call's failed entries are retried on their own (inventory at batch 10)"
    )
    print("other per message: inventory's DynamoDB calls (idempotency claim and settlement: a conditional write each per record, on purpose)")


if __name__ == "__main__":
    main()
