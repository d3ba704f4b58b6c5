"""AWS API calls per 1,000 messages in Exercise 01, against the batching floor.

The order producer runs under moto with both topics. Every call its SNS client
makes is counted through botocore's ``before-call`` event. The floor is one
PublishBatch call per 10 entries per topic: 100 + 100 for 1,000 orders.

On the FIFO topic a call carries at most one event per customer (message
group), which keeps each customer's events in order across retries; the
first scenarios show what that costs as orders concentrate on fewer customers.
The retry scenario makes SNS fail 10% of the standard topic's entries once
(InternalError, retryable; injected in front of the client, the entries that
pass go to moto): the publisher sends only those again, regrouped into full
calls after one pause, so the extra cost is about ceil(failed / 10) calls,
where retrying each call's failed entries on their own costs one extra call
per call with a failure (1 - 0.9**10 = 65% of the calls). Several seeds are
run and the median, lowest and highest are shown.

Of the consumers, only billing writes to AWS: one conditional PutItem and one
UpdateItem per new order to the idempotency table (Powertools idempotency),
one conditional PutItem per duplicate. Its floor is BatchWriteItem's 25 items
per call, which it does not use on purpose: a batch write cannot be
conditional, and "charge only if not charged yet" is the point. Audit, fraud
review and the ledger write only to their logs.

Run from the repository root: ``python benchmarks/producer_api_calls.py``.
"""

import contextlib
import json
import logging
import os
import random
import statistics
import sys
import uuid
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _lambda_env import Context, load_handler, prepare_environment  # noqa: E402

ORDERS = 1_000
FLOOR_PER_TOPIC = -(-ORDERS // 10)
SCENARIOS = [("1,000 customers", 1_000), ("100 customers", 100), ("10 customers", 10), ("1 customer", 1)]
FAILURE_RATE = 0.10
SEEDS = range(7)
BILLING_BATCH = 10  # the billing queue's event source mapping: the default batch size
BILLING_FLOOR = -(-ORDERS // 25)

prepare_environment(PUBLISH_RETRY_BASE_DELAY_SECONDS="0", IDEMPOTENCY_TABLE_NAME="benchmark-idempotency")
logging.getLogger("messaging_runtime").setLevel(logging.ERROR)  # the publishers' retry warnings: counted here, not read
_loaded = iter(range(1_000))


def orders(customers, rng):
    return [
        {
            "event_type": "OrderPlaced" if rng.random() < 0.8 else "OrderCancelled",
            "version": 1,
            "order_id": f"o-{index:06d}",
            "customer_id": f"c-{rng.randrange(customers):05d}",
            "total": round(rng.uniform(1, 2_000), 2),
            "currency": "EUR",
        }
        for index in range(ORDERS)
    ]


def run_producer(batch, rng, *, failure_rate=0.0):
    """Calls per (operation, topic) for one invocation with the orders of ``batch``, in a fresh moto."""
    import boto3
    from moto import mock_aws

    with mock_aws():
        sns = boto3.client("sns")
        os.environ["TOPIC_ARN"] = sns.create_topic(Name="orders")["TopicArn"]
        os.environ["FIFO_TOPIC_ARN"] = sns.create_topic(Name="orders.fifo", Attributes={"FifoTopic": "true"})["TopicArn"]
        producer = load_handler("order_producer", f"benchmark_order_producer_{next(_loaded)}")
        calls = Counter()
        # PublishBatch is counted where the publisher calls it, so that a call whose entries all fail counts too.

        def count_others(model, **_):  # returns None: a before-call handler's answer would stand in for AWS's
            if model.name != "PublishBatch":
                calls[(model.name, "")] += 1

        producer.sns.meta.events.register("before-call", count_others)
        real, failed_once = producer.sns.publish_batch, set()

        def publish_batch(**params):
            topic = "fifo" if params["TopicArn"].endswith(".fifo") else "standard"
            calls[("PublishBatch", topic)] += 1
            entries = params["PublishBatchRequestEntries"]
            doomed = {e["Id"] for e in entries if failure_rate and topic == "standard" and e["Id"] not in failed_once and rng.random() < failure_rate}
            failed_once.update(doomed)
            passing = [e for e in entries if e["Id"] not in doomed]
            response = real(TopicArn=params["TopicArn"], PublishBatchRequestEntries=passing) if passing else {"Successful": []}
            return {**response, "Failed": [{"Id": i, "Code": "InternalError", "SenderFault": False} for i in doomed]}

        producer.sns.publish_batch = publish_batch
        result = producer.lambda_handler({"orders": batch}, Context())
        assert result == {"published": ORDERS, "fifo_published": ORDERS}, result
        return calls


def run_billing():
    """DynamoDB calls of the billing consumer for ORDERS new orders, then for the same orders delivered again."""
    import boto3
    from moto import mock_aws

    with mock_aws():
        boto3.client("dynamodb").create_table(
            TableName=os.environ["IDEMPOTENCY_TABLE_NAME"],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        billing = load_handler("billing_consumer", "benchmark_billing_consumer")
        calls = Counter()

        def count(model, **_):
            calls[model.name] += 1

        billing.persistence_layer.client.meta.events.register("before-call", count)
        bodies = [
            json.dumps(
                {
                    "event_id": str(uuid.uuid4()),
                    "event_type": "OrderPlaced",
                    "version": 1,
                    "order_id": f"o-{index:06d}",
                    "customer_id": f"c-{index % 97:04d}",
                    "total": 12.5,
                    "currency": "EUR",
                    "occurred_at": "2025-03-14T09:26:53Z",
                }
            )
            for index in range(ORDERS)
        ]
        records = [{"messageId": str(uuid.uuid4()), "body": body, "attributes": {"ApproximateReceiveCount": "1"}} for body in bodies]
        rows = []
        for label in ("new orders", "redelivered"):
            calls.clear()
            for start in range(0, ORDERS, BILLING_BATCH):
                assert billing.lambda_handler({"Records": records[start : start + BILLING_BATCH]}, Context()) == {"batchItemFailures": []}
            rows.append((label, dict(calls)))
        return rows


def main():
    rng = random.Random(20250314)
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        batches = [(label, orders(customers, rng)) for label, customers in SCENARIOS]
        rows = [(label, batch, run_producer(batch, rng)) for label, batch in batches]
        retried = []
        for seed in SEEDS:
            seeded = random.Random(seed)
            retried.append(sum(run_producer(orders(1_000, seeded), seeded, failure_rate=FAILURE_RATE).values()))
        billing = run_billing()

    print(f"Order producer: AWS API calls per {ORDERS:,} orders; floor = {FLOOR_PER_TOPIC} PublishBatch calls per topic")
    print("(fifo least: what one event per customer and call allows, the larger of the floor and the busiest customer's orders)")
    header = f"{'scenario':34} {'standard':>9} {'fifo':>6} {'fifo least':>11} {'total':>6} {'floor':>6} {'total/floor':>12} {'other calls':>12}"
    print(header)
    print("-" * len(header))
    floor = 2 * FLOOR_PER_TOPIC
    for label, batch, calls in rows:
        standard, fifo = calls[("PublishBatch", "standard")], calls[("PublishBatch", "fifo")]
        least = max(FLOOR_PER_TOPIC, max(Counter(order["customer_id"] for order in batch).values()))
        total = sum(calls.values())
        print(f"{label:34} {standard:>9} {fifo:>6} {least:>11} {total:>6} {floor:>6} {total / floor:>12.2f} {total - standard - fifo:>12}")
    median, low, high = statistics.median(retried), min(retried), max(retried)
    label = f"1,000 customers, {FAILURE_RATE:.0%} fail once"
    print(f"{label:34} {'':>9} {'':>6} {'':>11} {median:>6.0f} {floor:>6} {median / floor:>12.2f}   (lowest {low}, highest {high}, {len(SEEDS)} seeds)")
    print()
    print(f"Consumers that write on: AWS API calls per {ORDERS:,} messages; floor = {BILLING_FLOOR} BatchWriteItem calls (25 items each)")
    header = f"{'consumer':34} {'calls':>6} {'floor':>6} {'calls/floor':>12}  by operation"
    print(header)
    print("-" * len(header))
    for label, calls in billing:
        total = sum(calls.values())
        operations = ", ".join(f"{name} {count}" for name, count in sorted(calls.items()))
        print(f"{'billing_consumer, ' + label:34} {total:>6} {BILLING_FLOOR:>6} {total / BILLING_FLOOR:>12.2f}  {operations}")
    print("audit, fraud_review and ledger consumers make no AWS API call: their effect is a log line")


if __name__ == "__main__":
    main()
