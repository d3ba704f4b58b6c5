"""CPU time per SQS record of Exercise 01's consumers, against the cost of only decoding the bodies.

For each consumer and batch size, the same events are run through the
handler and through a loop that does nothing but ``json.loads`` of each body
(the decode floor), in the same process, one after the other, several times;
the table gives the medians in microseconds of CPU time
(``time.process_time``) per record and the median of the per-round ratios
handler/floor. The target is at most 3x at batch 100.

The handlers run as in Lambda minus the network: Logger, Metrics, the order
contract and the batch consumer do their full work, their output goes to
/dev/null, and tracing is off. Three consumers write one log line per record
as their effect (the audit trail, the fraud flag, the ledger line); the rows
marked "effect line off" run them again with the logger raised to ERROR, which
leaves what reading, counting and reporting cost. The first row times only
the order contract's parse of the same bodies, without any handler: the part
of every consumer's cost that the contract (messaging_runtime.contracts) sets. The billing consumer stores
an idempotency record per order (a conditional write per order, on purpose):
with idempotency disabled (POWERTOOLS_IDEMPOTENCY_DISABLED=1) the row shows
the handler's own cost; the "moto DynamoDB" row stores it in moto's
in-process DynamoDB, whose own cost is far above a real DynamoDB call's
client-side cost.

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
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _lambda_env import Context, load_handler, prepare_environment  # noqa: E402

ROUNDS = 5
RECORDS_PER_ROUND = 2_000  # each round runs batches until it has handled this many records
BATCH_SIZES = (10, 100, 1_000)
TARGET_BATCH = 100
MOTO_ROUNDS = 3
MOTO_RECORDS_PER_ROUND = 300
#: function, queue, body options, whether its effect is a log line per record.
CONSUMERS = (
    ("audit_consumer", "audit", {}, True),
    ("fraud_review_consumer", "fraud-review", {"min_total": 500}, True),
    ("ledger_consumer", "ledger.fifo", {}, True),
    ("billing_consumer", "billing", {"placed_only": True}, False),
)

prepare_environment(IDEMPOTENCY_TABLE_NAME="benchmark-idempotency", REVIEW_THRESHOLD="500")
warnings.filterwarnings("ignore", message="Disabling idempotency")  # on purpose, for the row that shows the handler's own cost


def order_body(index, *, placed_only=False, min_total=0):
    return json.dumps(
        {
            "event_id": str(uuid.uuid4()),
            "event_type": "OrderPlaced" if placed_only or index % 5 else "OrderCancelled",
            "version": 1,
            "order_id": f"o-{uuid.uuid4().hex[:16]}",
            "customer_id": f"c-{index % 97:04d}",
            "total": round(min_total + 5 + (index * 13.37) % 2000, 2),
            "currency": "EUR",
            "occurred_at": "2025-03-14T09:26:53.589000+00:00",
        }
    )


def sqs_event(bodies, queue):
    now = str(int(time.time() * 1000))
    records = []
    for number, body in enumerate(bodies):
        attributes = {"ApproximateReceiveCount": "1", "SentTimestamp": now, "SenderId": "AIDAIT2UOQQY3AUEKVGXU", "ApproximateFirstReceiveTimestamp": now}
        if queue.endswith(".fifo"):
            attributes |= {"MessageGroupId": json.loads(body)["customer_id"], "SequenceNumber": str(18_849_496_460_467_696_128 + number)}
            attributes["MessageDeduplicationId"] = hashlib.sha256(body.encode()).hexdigest()
        records.append(
            {
                "messageId": str(uuid.uuid4()),
                "receiptHandle": uuid.uuid4().hex * 4,
                "body": body,
                "attributes": attributes,
                "messageAttributes": {},
                "md5OfBody": hashlib.md5(body.encode()).hexdigest(),
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:aws:sqs:us-east-1:123456789012:{queue}",
                "awsRegion": "us-east-1",
            }
        )
    return {"Records": records}


def make_events(batch_size, queue, records_per_round, options):
    batches = max(1, records_per_round // batch_size)
    return [sqs_event([order_body(i, **options) for i in range(batch_size)], queue) for _ in range(batches)]


def cpu_per_record(events, run):
    records = sum(len(event["Records"]) for event in events)
    start = time.process_time()
    for event in events:
        run(event)
    return (time.process_time() - start) / records * 1e6


def decode_only(event):
    for record in event["Records"]:
        json.loads(record["body"])


def measure(label, module, queue, options, batch_size, *, rounds=ROUNDS, records_per_round=RECORDS_PER_ROUND, fresh=False, run=None):
    """One row: the medians of handler and floor CPU per record, and of their ratio.

    ``fresh``: new orders every round; ``run``: what to time instead of the handler (one event).
    """
    context = Context()

    def run_handler(event):
        response = module.lambda_handler(event, context)
        if response["batchItemFailures"]:
            raise RuntimeError(f"{label}: unexpected failures {response['batchItemFailures'][:3]}")

    run_handler = run or run_handler
    run_handler(make_events(1, queue, 1, options)[0])  # past the cold start
    handler_us, floor_us, ratios = [], [], []
    events = make_events(batch_size, queue, records_per_round, options)
    for _ in range(rounds):
        if fresh:  # or billing would only replay stored invoices
            events = make_events(batch_size, queue, records_per_round, options)
        handler = cpu_per_record(events, run_handler)
        floor = cpu_per_record(events, decode_only)
        handler_us.append(handler)
        floor_us.append(floor)
        ratios.append(handler / floor)
    records = sum(len(event["Records"]) for event in events)
    return (label, batch_size, records, statistics.median(handler_us), statistics.median(floor_us), statistics.median(ratios))


def main():
    rows = []
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        from moto import mock_aws

        with mock_aws():
            import boto3

            boto3.client("dynamodb").create_table(
                TableName=os.environ["IDEMPOTENCY_TABLE_NAME"],
                AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                BillingMode="PAY_PER_REQUEST",
            )
            from messaging_runtime.contracts.orders import ORDER_MESSAGES

            def contract_only(event):
                for record in event["Records"]:
                    ORDER_MESSAGES.parse(record["body"])

            rows.append(measure("ORDER_MESSAGES.parse only (no handler)", None, "audit", {}, TARGET_BATCH, run=contract_only))
            for function, queue, options, logs_its_effect in CONSUMERS:
                module = load_handler(function, f"benchmark_{function}")
                if function == "billing_consumer":
                    os.environ["POWERTOOLS_IDEMPOTENCY_DISABLED"] = "1"
                for size in BATCH_SIZES:
                    label = f"{function} (idempotency off)" if function == "billing_consumer" else function
                    rows.append(measure(label, module, queue, options, size))
                if logs_its_effect:
                    module.logger.setLevel("ERROR")
                    rows.append(measure(f"{function} (effect line off)", module, queue, options, TARGET_BATCH))
                    module.logger.setLevel("INFO")
                if function == "billing_consumer":
                    del os.environ["POWERTOOLS_IDEMPOTENCY_DISABLED"]
                    moto = dict(rounds=MOTO_ROUNDS, records_per_round=MOTO_RECORDS_PER_ROUND, fresh=True)
                    rows.append(measure(f"{function} (moto DynamoDB)", module, queue, options, TARGET_BATCH, **moto))

    print(f"CPU time per record, median of {ROUNDS} rounds ({MOTO_ROUNDS} with moto); floor = json.loads of the same bodies")
    print(f"target: ratio <= 3 at batch {TARGET_BATCH}")
    header = f"{'handler':40} {'batch':>6} {'records/round':>14} {'handler us':>11} {'floor us':>9} {'ratio':>8}"
    print(header)
    print("-" * len(header))
    for label, size, records, handler, floor, ratio in rows:
        print(f"{label:40} {size:>6} {records:>14} {handler:>11.1f} {floor:>9.2f} {ratio:>8.1f}")


if __name__ == "__main__":
    main()
