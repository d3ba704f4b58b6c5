"""AWS API calls the order producer makes per 1,000 orders, against the batching floor.

The producer runs under moto with both topics. Every call its SNS client
makes is counted through botocore's ``before-call`` event. The floor is one
PublishBatch call per 10 entries per topic: 100 + 100 for 1,000 orders.

On the FIFO topic a call carries at most one event per customer (message
group), which keeps each customer's events in order across retries; the
scenarios show what that costs as orders concentrate on fewer customers.

Run from the repository root: ``python benchmarks/producer_api_calls.py``.
"""

import contextlib
import os
import random
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _lambda_env import Context, load_handler, prepare_environment  # noqa: E402

ORDERS = 1_000
FLOOR_PER_TOPIC = -(-ORDERS // 10)
SCENARIOS = [("1,000 customers", 1_000), ("100 customers", 100), ("10 customers", 10), ("1 customer", 1)]

prepare_environment()


def load_producer(number):
    return load_handler("order_producer", f"benchmark_order_producer_{number}")


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


def main():
    import boto3
    from moto import mock_aws

    rng = random.Random(20250314)
    rows = []
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        for number, (label, customers) in enumerate(SCENARIOS):
            with mock_aws():
                sns = boto3.client("sns")
                os.environ["TOPIC_ARN"] = sns.create_topic(Name="orders")["TopicArn"]
                os.environ["FIFO_TOPIC_ARN"] = sns.create_topic(Name="orders.fifo", Attributes={"FifoTopic": "true"})["TopicArn"]
                producer = load_producer(number)
                calls = Counter()

                def count(model, params, calls=calls, **_):
                    topic = "fifo" if params["body"].get("TopicArn", "").endswith(".fifo") else "standard"
                    calls[(model.name, topic)] += 1

                producer.sns.meta.events.register("before-call", count)
                result = producer.lambda_handler({"orders": orders(customers, rng)}, Context())
                assert result == {"published": ORDERS, "fifo_published": ORDERS}, result
                rows.append((label, calls))

    print(f"AWS API calls per {ORDERS:,} orders; floor = {FLOOR_PER_TOPIC} PublishBatch calls per topic")
    header = f"{'scenario':16} {'standard':>9} {'fifo':>6} {'total':>6} {'floor':>6} {'total/floor':>12} {'other calls':>12}"
    print(header)
    print("-" * len(header))
    for label, calls in rows:
        standard = calls[("PublishBatch", "standard")]
        fifo = calls[("PublishBatch", "fifo")]
        total = sum(calls.values())
        other = total - standard - fifo
        floor = 2 * FLOOR_PER_TOPIC
        print(f"{label:16} {standard:>9} {fifo:>6} {total:>6} {floor:>6} {total / floor:>12.2f} {other:>12}")


if __name__ == "__main__":
    main()
