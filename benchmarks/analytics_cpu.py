"""CapstoneAnalytics figures: CPU per record of the lake transformation and the aggregator, against decoding alone.

The same records (1 KB-class product events from 1,000 users, 5% of them not
valid events) go through each handler and through a loop that only
base64-decodes and ``json.loads`` each record, in the same process, one after
the other, several rounds; the table gives the medians of CPU time
(``time.process_time``) per record in microseconds and the median of the
per-round ratios handler/floor. The handlers run as in Lambda minus the
network: Logger and Metrics write to /dev/null, tracing is off; the
aggregator's final write goes to an in-memory stand-in of DynamoDB (its cost
is per window, not per record). These CPU figures are what the cost of a
million events in docs/capstone-analytics.md is computed from
(GB-seconds = CPU seconds x memory).

Run from the repository root: ``python benchmarks/analytics_cpu.py``.
"""

import base64
import contextlib
import json
import os
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _lambda_env import Context, load_handler, prepare_environment  # noqa: E402

ROUNDS = 5
RECORDS = 5_000
USERS = 1_000
T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def payloads() -> list[bytes]:
    out = []
    for n in range(RECORDS):
        if n % 20 == 0:
            out.append(json.dumps({"schema_version": 1, "user_id": f"u-{n % USERS}", "event_type": "page_view"}).encode())  # quarantined
            continue
        event = {
            "schema_version": 1,
            "event_id": str(uuid.UUID(int=n)),
            "event_type": ("page_view", "add_to_cart", "purchase", "search")[n % 4],
            "event_time": (T0 + timedelta(milliseconds=n)).isoformat().replace("+00:00", "Z"),
            "user_id": f"u-{n % USERS}",
            "platform": "web",
            "session_id": f"s-{n % (USERS * 3)}",
            "page": f"/products/{n % 500}",
            "properties": {"sku": f"SKU-{n % 900}", "price": 19.99, "currency": "EUR", "campaign": "winter", "referrer": "https://example.com/" + "x" * 600},
        }
        out.append(json.dumps(event).encode())
    return out


class MemoryDynamoDB:
    """What the aggregator's publisher calls: BatchWriteItem, every item kept."""

    def __init__(self) -> None:
        self.items = {}

    def batch_write_item(self, RequestItems):
        for requests in RequestItems.values():
            for request in requests:
                item = request["PutRequest"]["Item"]
                self.items[(item["pk"]["S"], item["sk"]["S"])] = item
        return {"UnprocessedItems": {}}


def measure(run, floor) -> tuple[float, float, float]:
    handler_us, floor_us, ratios = [], [], []
    for _ in range(ROUNDS):
        start = time.process_time()
        floor()
        f = (time.process_time() - start) / RECORDS * 1e6
        start = time.process_time()
        run()
        h = (time.process_time() - start) / RECORDS * 1e6
        handler_us.append(h)
        floor_us.append(f)
        ratios.append(h / f)
    return statistics.median(handler_us), statistics.median(floor_us), statistics.median(ratios)


def main() -> None:
    prepare_environment(LAKE_DATABASE="analytics_lake", AGGREGATES_TABLE="aggregates", POWERTOOLS_SERVICE_NAME="analytics-benchmark")
    data = [base64.b64encode(p).decode() for p in payloads()]
    arrival_ms = int(T0.timestamp() * 1000)
    firehose = {
        "records": [
            {
                "recordId": f"r{n}",
                "approximateArrivalTimestamp": arrival_ms + n,
                "data": d,
                "kinesisRecordMetadata": {"shardId": "shardId-000000000000", "sequenceNumber": str(n), "partitionKey": "k"},
            }
            for n, d in enumerate(data)
        ]
    }
    kinesis = [
        {
            "kinesis": {"data": d, "sequenceNumber": str(n), "partitionKey": "k", "approximateArrivalTimestamp": T0.timestamp() + n / 1000},
            "eventSource": "aws:kinesis",
        }
        for n, d in enumerate(data)
    ]

    def floor() -> None:
        for d in data:
            json.loads(base64.b64decode(d))

    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        transform = load_handler("lake_transform", "bench_lake_transform")
        aggregator = load_handler("event_aggregator", "bench_event_aggregator")
        aggregator.aggregates.client = MemoryDynamoDB()
        results = {
            "lake_transform (one Firehose buffer)": measure(lambda: transform.lambda_handler(firehose, Context()), floor),
            "event_aggregator (batches of 1,000, window flushed)": measure(
                lambda: [
                    aggregator.lambda_handler(
                        {"Records": kinesis[i : i + 1000], "shardId": "shardId-000000000000", "state": {}, "window": {}, "isFinalInvokeForWindow": True},
                        Context(),
                    )
                    for i in range(0, RECORDS, 1000)
                ],
                floor,
            ),
        }
    print(f"CapstoneAnalytics handlers: CPU per record, median of {ROUNDS} rounds of {RECORDS:,} records (5% invalid)")
    print(f"{'handler':<55} {'handler us':>11} {'floor us':>9} {'ratio':>6}")
    for name, (handler, floor_us, ratio) in results.items():
        print(f"{name:<55} {handler:>11.1f} {floor_us:>9.1f} {ratio:>6.1f}")


if __name__ == "__main__":
    main()
