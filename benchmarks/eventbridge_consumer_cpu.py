"""CPU time per SQS record of the notifications consumer, against the cost of only decoding the bodies.

The bodies are whole EventBridge events, as a rule with an SQS target
delivers them: a mix of OrderPlaced (version 2), OrderCancelled (version 1),
StockReserved, StockShortage and RestockRequested, every one a new business
event (DailyReportRequested is left out: there is one per day by design, so
a stream of them would measure only the duplicate path).

For each batch size, the same events are run through the handler and through
a loop that does nothing but ``json.loads`` of each body, in the same
process, one after the other, several times; the table gives the medians in
microseconds of CPU time (``time.process_time``) per record and the median of
the per-round ratios handler/floor.

The handler runs as in Lambda minus the network: Logger, Metrics, the parser
and the batch processor do their full work, their output goes to /dev/null,
and tracing is off. It runs twice: with idempotency on, storing a record per
event in moto's in-process DynamoDB (so that figure includes moto's own
cost, which is far above a real DynamoDB call's client-side cost), and with
idempotency disabled through POWERTOOLS_IDEMPOTENCY_DISABLED=1, which shows
the handler's own cost.

Run from the repository root: ``python benchmarks/eventbridge_consumer_cpu.py``.
"""

import contextlib
import hashlib
import itertools
import json
import os
import statistics
import sys
import time
import uuid
import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _lambda_env import Context, load_handler, prepare_environment  # noqa: E402

ROUNDS = 5
IDEMPOTENT_ROUNDS = 3
RECORDS_PER_ROUND = 2_000  # each round runs batches until it has handled this many records
IDEMPOTENT_RECORDS_PER_ROUND = 1_000
BATCH_SIZES = (10, 1_000)

prepare_environment(
    POWERTOOLS_SERVICE_NAME="exercise02-benchmark",
    POWERTOOLS_METRICS_NAMESPACE="Exercise02Benchmark",
    IDEMPOTENCY_TABLE_NAME="benchmark-idempotency",
)

_sequence = itertools.count()
_start = datetime(2025, 3, 14, tzinfo=timezone.utc)


def body(index):
    """One EventBridge event, a new business event every time."""
    number = next(_sequence)
    order_id = f"o-{uuid.uuid4().hex[:16]}"
    kind = index % 10
    if kind < 4:
        source, detail_type = "blueprints.orders", "OrderPlaced"
        detail = {
            "version": 2,
            "order_id": order_id,
            "customer_id": f"c-{index % 97:04d}",
            "total": round(5 + (index * 13.37) % 2000, 2),
            "currency": "EUR",
            "items": [{"sku": f"SKU-{(index + n) % 500:04d}", "quantity": 1 + n} for n in range(1 + index % 4)],
        }
    elif kind == 4:
        source, detail_type = "blueprints.orders", "OrderCancelled"
        detail = {"version": 1, "order_id": order_id, "customer_id": f"c-{index % 97:04d}", "total": 12.5, "currency": "EUR"}
    elif kind < 8:
        source, detail_type = "blueprints.inventory", "StockReserved"
        detail = {"version": 1, "order_id": order_id, "items": [{"sku": f"SKU-{index % 500:04d}", "quantity": 2}]}
    elif kind == 8:
        source, detail_type = "blueprints.inventory", "StockShortage"
        detail = {"version": 1, "order_id": order_id, "missing": [f"SKU-{index % 500:04d}"]}
    else:
        source, detail_type = "blueprints.warehouse", "RestockRequested"
        detail = {"version": 1, "kind": "restock", "request_id": f"r-{uuid.uuid4()}", "sku": f"SKU-{index % 500:04d}", "quantity": 20}
    return json.dumps(
        {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": detail_type,
            "source": source,
            "account": "123456789012",
            "time": (_start + timedelta(seconds=number)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": "us-east-1",
            "resources": [],
            "detail": detail,
        }
    )


def sqs_event(bodies):
    now = str(int(time.time() * 1000))
    return {
        "Records": [
            {
                "messageId": str(uuid.uuid4()),
                "receiptHandle": uuid.uuid4().hex * 4,
                "body": text,
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": now,
                    "SenderId": "AIDAJXNJGGKNS7OSV23OI",
                    "ApproximateFirstReceiveTimestamp": now,
                },
                "messageAttributes": {},
                "md5OfBody": hashlib.md5(text.encode()).hexdigest(),
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:notifications",
                "awsRegion": "us-east-1",
            }
            for text in bodies
        ]
    }


def make_events(batch_size, records_per_round):
    batches = max(1, records_per_round // batch_size)
    return [sqs_event([body(i) for i in range(batch_size)]) for _ in range(batches)]


def cpu_per_record(events, run):
    records = sum(len(event["Records"]) for event in events)
    start = time.process_time()
    for event in events:
        run(event)
    return (time.process_time() - start) / records * 1e6


def decode_only(event):
    for record in event["Records"]:
        json.loads(record["body"])


def measure(label, module, batch_size, *, rounds, records_per_round):
    context = Context()

    def run_handler(event):
        response = module.lambda_handler(event, context)
        if response["batchItemFailures"]:
            raise RuntimeError(f"{label}: unexpected failures {response['batchItemFailures'][:3]}")

    module.lambda_handler(sqs_event([body(0)]), context)  # past the cold start
    handler_us, floor_us, ratios = [], [], []
    for _ in range(rounds):
        events = make_events(batch_size, records_per_round)  # new business events every round
        handler = cpu_per_record(events, run_handler)
        floor = cpu_per_record(events, decode_only)
        handler_us.append(handler)
        floor_us.append(floor)
        ratios.append(handler / floor)
    records = sum(len(event["Records"]) for event in events)
    return (label, batch_size, records, statistics.median(handler_us), statistics.median(floor_us), statistics.median(ratios))


def main():
    import boto3
    from moto import mock_aws

    rows = []
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Powertools warns on every call while idempotency is disabled
        with mock_aws():
            boto3.client("dynamodb").create_table(
                TableName=os.environ["IDEMPOTENCY_TABLE_NAME"],
                AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                BillingMode="PAY_PER_REQUEST",
            )
            notifications = load_handler("notifications_service", "benchmark_notifications_service")
            os.environ["POWERTOOLS_IDEMPOTENCY_DISABLED"] = "1"
            for size in BATCH_SIZES:
                rows.append(measure("idempotency disabled", notifications, size, rounds=ROUNDS, records_per_round=RECORDS_PER_ROUND))
            del os.environ["POWERTOOLS_IDEMPOTENCY_DISABLED"]
            for size in BATCH_SIZES:
                rows.append(
                    measure("idempotency on moto DynamoDB", notifications, size, rounds=IDEMPOTENT_ROUNDS, records_per_round=IDEMPOTENT_RECORDS_PER_ROUND)
                )

    print(
        f"notifications_service: CPU time per record, median of {ROUNDS} rounds ({IDEMPOTENT_ROUNDS} with idempotency on); "
        "floor = json.loads of the same bodies"
    )
    header = f"{'run':30} {'batch':>6} {'records/round':>14} {'handler us':>11} {'floor us':>9} {'ratio':>8}"
    print(header)
    print("-" * len(header))
    for label, size, records, handler, floor, ratio in rows:
        print(f"{label:30} {size:>6} {records:>14} {handler:>11.1f} {floor:>9.2f} {ratio:>8.1f}")


if __name__ == "__main__":
    main()
