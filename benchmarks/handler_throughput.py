"""CPU time per SQS record of the consumer handlers, against the cost of only decoding the bodies.

For each handler and batch size, the same events are run through the
handler and through a loop that does nothing but ``json.loads`` of each
body, in the same process, one after the other, several times; the table
gives the medians in microseconds of CPU time (``time.process_time``) per
record and the median of the per-round ratios handler/floor.

The audit consumer runs as in Lambda minus the network: Logger, Metrics and
the batch processor do their full work, their output goes to /dev/null, and
tracing is off. The billing consumer also stores an idempotency record per
order, in moto's in-process DynamoDB, so its figure includes moto's own cost.

Run from the repository root: ``python benchmarks/handler_throughput.py``.
"""

import contextlib
import hashlib
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _lambda_env import Context, load_handler, prepare_environment  # noqa: E402

ROUNDS = 5
BILLING_ROUNDS = 3
RECORDS_PER_ROUND = 2_000  # each round runs batches until it has handled this many records
BILLING_RECORDS_PER_ROUND = 1_000
BATCH_SIZES = (10, 1_000)

prepare_environment(IDEMPOTENCY_TABLE_NAME="benchmark-idempotency")


def load(function):
    return load_handler(function, f"benchmark_{function}")


def order_body(index, placed_only):
    return json.dumps(
        {
            "event_id": str(uuid.uuid4()),
            "event_type": "OrderPlaced" if placed_only or index % 5 else "OrderCancelled",
            "version": 1,
            "order_id": f"o-{uuid.uuid4().hex[:16]}",
            "customer_id": f"c-{index % 97:04d}",
            "total": round(5 + (index * 13.37) % 2000, 2),
            "currency": "EUR",
            "occurred_at": "2025-03-14T09:26:53.589000+00:00",
        }
    )


def sqs_event(bodies, queue):
    now = str(int(time.time() * 1000))
    return {
        "Records": [
            {
                "messageId": str(uuid.uuid4()),
                "receiptHandle": uuid.uuid4().hex * 4,
                "body": body,
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": now,
                    "SenderId": "AIDAIT2UOQQY3AUEKVGXU",
                    "ApproximateFirstReceiveTimestamp": now,
                },
                "messageAttributes": {},
                "md5OfBody": hashlib.md5(body.encode()).hexdigest(),
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:aws:sqs:us-east-1:123456789012:{queue}",
                "awsRegion": "us-east-1",
            }
            for body in bodies
        ]
    }


def make_events(batch_size, queue, records_per_round, placed_only):
    batches = max(1, records_per_round // batch_size)
    return [sqs_event([order_body(i, placed_only) for i in range(batch_size)], queue) for _ in range(batches)]


def cpu_per_record(events, run):
    records = sum(len(event["Records"]) for event in events)
    start = time.process_time()
    for event in events:
        run(event)
    return (time.process_time() - start) / records * 1e6


def decode_only(event):
    for record in event["Records"]:
        json.loads(record["body"])


def measure(label, module, batch_size, *, rounds, records_per_round, queue, billing):
    context = Context()

    def run_handler(event):
        response = module.lambda_handler(event, context)
        if response["batchItemFailures"]:
            raise RuntimeError(f"{label}: unexpected failures {response['batchItemFailures'][:3]}")

    module.lambda_handler(sqs_event([order_body(0, billing)], queue), context)  # past the cold start
    handler_us, floor_us, ratios = [], [], []
    events = make_events(batch_size, queue, records_per_round, billing)
    for _ in range(rounds):
        if billing:  # new order ids every round, or billing would only replay stored invoices
            events = make_events(batch_size, queue, records_per_round, billing)
        handler = cpu_per_record(events, run_handler)
        floor = cpu_per_record(events, decode_only)
        handler_us.append(handler)
        floor_us.append(floor)
        ratios.append(handler / floor)
    records = sum(len(event["Records"]) for event in events)
    medians = (statistics.median(handler_us), statistics.median(floor_us), statistics.median(ratios))
    return (label, batch_size, records, *medians)


def main():
    rows = []
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        audit = load("audit_consumer")
        for size in BATCH_SIZES:
            rows.append(
                measure(
                    "audit_consumer",
                    audit,
                    size,
                    rounds=ROUNDS,
                    records_per_round=RECORDS_PER_ROUND,
                    queue="audit",
                    billing=False,
                )
            )

        from moto import mock_aws

        with mock_aws():
            import boto3

            boto3.client("dynamodb").create_table(
                TableName=os.environ["IDEMPOTENCY_TABLE_NAME"],
                AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                BillingMode="PAY_PER_REQUEST",
            )
            billing = load("billing_consumer")
            for size in BATCH_SIZES:
                rows.append(
                    measure(
                        "billing_consumer (moto DynamoDB)",
                        billing,
                        size,
                        rounds=BILLING_ROUNDS,
                        records_per_round=BILLING_RECORDS_PER_ROUND,
                        queue="billing",
                        billing=True,
                    )
                )

    print(f"CPU time per record, median of {ROUNDS} rounds ({BILLING_ROUNDS} for billing); floor = json.loads of the same bodies")
    header = f"{'handler':34} {'batch':>6} {'records/round':>14} {'handler us':>11} {'floor us':>9} {'ratio':>8}"
    print(header)
    print("-" * len(header))
    for label, size, records, handler, floor, ratio in rows:
        print(f"{label:34} {size:>6} {records:>14} {handler:>11.1f} {floor:>9.2f} {ratio:>8.1f}")


if __name__ == "__main__":
    main()
