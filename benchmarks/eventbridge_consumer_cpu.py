"""CPU time per SQS record of the Exercise 02 consumers, against the cost of only decoding the bodies.

The bodies are whole EventBridge events, as a rule with an SQS target
delivers them, every one a new business event:

- notifications_service: a mix of OrderPlaced (version 2), OrderCancelled
  (version 1, upcast), StockReserved, StockShortage and RestockRequested
  (DailyReportRequested is left out: there is one per day by design, so a
  stream of them would measure only the duplicate path);
- inventory_service: OrderPlaced (version 2) and OrderCancelled (version 1 and 2),
  each leading to one stock event put on the bus.

For each batch size, the same events are run through the handler and through a
loop that does nothing but ``json.loads`` of each body, in the same process,
one after the other, several times; the table gives the medians in
microseconds of CPU time (``time.process_time``) per record and the median of
the per-round ratios handler/floor.

The handlers run as in Lambda minus the network: Logger, Metrics, the
contracts, Powertools' batch processing and idempotency do their full work,
their output goes to /dev/null, and tracing is off. The AWS calls are answered
in memory ("in memory": the idempotency table's PutItem, GetItem, UpdateItem
and DeleteItem by a dict with DynamoDB's condition, PutEvents with an id per
entry), so the figure is the handler's own CPU, Powertools' idempotency
bookkeeping included and botocore's request building not. The notifications
consumer also runs with idempotency disabled (POWERTOOLS_IDEMPOTENCY_DISABLED=1),
which is the handler alone; and both run once on moto (in-process DynamoDB and
EventBridge), whose emulation costs far more than a real call's client side.

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
MOTO_ROUNDS = 3
PER_ROUND = 2_000  # each round runs batches until it has handled this many records
MOTO_PER_ROUND = 500
BATCH_SIZES = (10, 100)
TABLE = "benchmark-idempotency"

prepare_environment(
    POWERTOOLS_SERVICE_NAME="exercise02-benchmark",
    POWERTOOLS_METRICS_NAMESPACE="Exercise02Benchmark",
    IDEMPOTENCY_TABLE_NAME=TABLE,
    BUS_NAME="blueprints",
)

_sequence = itertools.count()
_start = datetime(2025, 3, 14, tzinfo=timezone.utc)


def order(index, version):
    detail = {"version": version, "order_id": f"o-{uuid.uuid4().hex[:16]}", "customer_id": f"c-{index % 97:04d}", "total": 12.5, "currency": "EUR"}
    if version == 2:
        detail["total"] = round(5 + (index * 13.37) % 2000, 2)
        detail["items"] = [{"sku": f"SKU-{(index + n) % 500:04d}", "quantity": 1 + n} for n in range(1 + index % 4)]
    return detail


def notification_event(index):
    """One EventBridge event the notifications rule delivers, a new business event every time."""
    kind = index % 10
    if kind < 4:
        return "blueprints.orders", "OrderPlaced", order(index, 2)
    if kind == 4:
        return "blueprints.orders", "OrderCancelled", order(index, 1)
    if kind < 8:
        return "blueprints.inventory", "StockReserved", {"version": 1, "order_id": f"o-{uuid.uuid4().hex[:16]}", "items": [{"sku": "SKU-0001", "quantity": 2}]}
    if kind == 8:
        return "blueprints.inventory", "StockShortage", {"version": 1, "order_id": f"o-{uuid.uuid4().hex[:16]}", "missing": [f"SKU-{index % 500:04d}"]}
    return "blueprints.warehouse", "RestockRequested", {"version": 1, "kind": "restock", "request_id": f"r-{uuid.uuid4()}", "sku": "SKU-0009", "quantity": 20}


def order_event(index):
    """One order event the inventory rule delivers, a new order every time."""
    kind = index % 10
    return "blueprints.orders", "OrderCancelled" if kind >= 8 else "OrderPlaced", order(index, 1 if kind == 9 else 2)


def body(event):
    source, detail_type, detail = event
    moment = _start + timedelta(seconds=next(_sequence))
    envelope = {"version": "0", "id": str(uuid.uuid4()), "detail-type": detail_type, "source": source, "account": "123456789012"}
    return json.dumps({**envelope, "time": moment.strftime("%Y-%m-%dT%H:%M:%SZ"), "region": "us-east-1", "resources": [], "detail": detail})


def sqs_event(bodies):
    now = str(int(time.time() * 1000))
    attributes = {"ApproximateReceiveCount": "1", "SentTimestamp": now, "SenderId": "AIDAJXNJGGKNS7OSV23OI", "ApproximateFirstReceiveTimestamp": now}
    return {
        "Records": [
            {
                "messageId": str(uuid.uuid4()),
                "receiptHandle": uuid.uuid4().hex * 4,
                "body": text,
                "attributes": attributes,
                "messageAttributes": {},
                "md5OfBody": hashlib.md5(text.encode()).hexdigest(),
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:consumer",
                "awsRegion": "us-east-1",
            }
            for text in bodies
        ]
    }


def make_events(events, batch_size, records_per_round):
    batches = max(1, records_per_round // batch_size)
    return [sqs_event([body(events(i)) for i in range(batch_size)]) for _ in range(batches)]


class InMemoryTable:
    """The four calls Powertools makes to the idempotency table, answered from a dict with DynamoDB's put condition."""

    def __init__(self):
        self.items = {}

    def put_item(self, *, Item, ExpressionAttributeValues, **_):  # noqa: N803 (boto3's argument names)
        from botocore.exceptions import ClientError

        old = self.items.get(Item["id"]["S"])
        now, now_ms = int(ExpressionAttributeValues[":now"]["N"]), int(ExpressionAttributeValues[":now_in_millis"]["N"])
        in_progress_over = old and old["status"]["S"] == "INPROGRESS" and "in_progress_expiration" in old and int(old["in_progress_expiration"]["N"]) < now_ms
        if old and int(old["expiration"]["N"]) >= now and not in_progress_over:
            raise ClientError({"Error": {"Code": "ConditionalCheckFailedException", "Message": "The conditional request failed"}, "Item": old}, "PutItem")
        self.items[Item["id"]["S"]] = Item

    def get_item(self, *, Key, **_):  # noqa: N803
        item = self.items.get(Key["id"]["S"])
        return {"Item": item} if item else {}

    def update_item(self, *, Key, UpdateExpression, ExpressionAttributeNames, ExpressionAttributeValues, **_):  # noqa: N803
        item = self.items.setdefault(Key["id"]["S"], dict(Key))
        for assignment in UpdateExpression.removeprefix("SET ").split(", "):
            name, value = (part.strip() for part in assignment.split("="))
            item[ExpressionAttributeNames[name]] = ExpressionAttributeValues[value]

    def delete_item(self, *, Key, **_):  # noqa: N803
        self.items.pop(Key["id"]["S"], None)


def put_events_in_memory(*, Entries, **_):  # noqa: N803
    return {"FailedEntryCount": 0, "Entries": [{"EventId": str(uuid.uuid4())} for _ in Entries]}


def in_memory(module):
    """Answer the module's AWS calls in memory (its idempotency store's client, and its EventBridge client if it has one)."""
    store = getattr(module, "store", None) or module.persistence_layer
    store.client = InMemoryTable()
    if hasattr(module, "eventbridge"):
        module.eventbridge.put_events = put_events_in_memory
    return module


def cpu_per_record(events, run):
    records = sum(len(event["Records"]) for event in events)
    start = time.process_time()
    for event in events:
        run(event)
    return (time.process_time() - start) / records * 1e6


def decode_only(event):
    for record in event["Records"]:
        json.loads(record["body"])


def measure(label, module, events, batch_size, *, rounds, records_per_round):
    context = Context()

    def run_handler(event):
        response = module.lambda_handler(event, context)
        if response["batchItemFailures"]:
            raise RuntimeError(f"{label}: unexpected failures {response['batchItemFailures'][:3]}")

    module.lambda_handler(sqs_event([body(events(0))]), context)  # past the cold start
    handler_us, floor_us, ratios = [], [], []
    for _ in range(rounds):
        batch = make_events(events, batch_size, records_per_round)  # new business events every round
        handler = cpu_per_record(batch, run_handler)
        floor = cpu_per_record(batch, decode_only)
        handler_us.append(handler)
        floor_us.append(floor)
        ratios.append(handler / floor)
    records = sum(len(event["Records"]) for event in batch)
    return (label, batch_size, records, statistics.median(handler_us), statistics.median(floor_us), statistics.median(ratios))


def main():
    import boto3
    from moto import mock_aws

    rows = []
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Powertools warns on every call while idempotency is disabled
        with mock_aws():
            boto3.client("dynamodb").create_table(
                TableName=TABLE,
                AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                BillingMode="PAY_PER_REQUEST",
            )
            boto3.client("events").create_event_bus(Name="blueprints")
            notifications = load_handler("notifications_service", "benchmark_notifications_service")
            inventory = load_handler("inventory_service", "benchmark_inventory_service")
            with contextlib.redirect_stderr(sink):
                for label, module, events in (("notifications: on moto", notifications, notification_event), ("inventory: on moto", inventory, order_event)):
                    for size in BATCH_SIZES:
                        rows.append(measure(label, module, events, size, rounds=MOTO_ROUNDS, records_per_round=MOTO_PER_ROUND))
                os.environ["POWERTOOLS_IDEMPOTENCY_DISABLED"] = "1"
                for size in BATCH_SIZES:
                    rows.append(measure("notifications: idempotency off", notifications, notification_event, size, rounds=ROUNDS, records_per_round=PER_ROUND))
                del os.environ["POWERTOOLS_IDEMPOTENCY_DISABLED"]
                for label, module, events in (
                    ("notifications: in memory", notifications, notification_event),
                    ("inventory: in memory", inventory, order_event),
                ):
                    in_memory(module)
                    for size in BATCH_SIZES:
                        rows.append(measure(label, module, events, size, rounds=ROUNDS, records_per_round=PER_ROUND))

    print(f"Exercise 02 consumers: CPU time per record, median of {ROUNDS} rounds ({MOTO_ROUNDS} on moto); floor = json.loads of the same bodies")
    header = f"{'run':34} {'batch':>6} {'records/round':>14} {'handler us':>11} {'floor us':>9} {'ratio':>8}"
    print(header)
    print("-" * len(header))
    for label, size, records, handler, floor, ratio in rows:
        print(f"{label:34} {size:>6} {records:>14} {handler:>11.1f} {floor:>9.2f} {ratio:>8.1f}")


if __name__ == "__main__":
    main()
