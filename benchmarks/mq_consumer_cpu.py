"""CPU time per message of the Amazon MQ consumers, against the cost of only decoding the messages.

Two handlers, in the event shapes Lambda's Amazon MQ event source mappings
deliver:

- ``shipment_consumer`` (RabbitMQ): shipment updates for 50 shipments, each
  one later than the last for its shipment, one in five ``delayed``; so every
  update is recorded with a conditional write and one in five is also put on
  the event bus.
- ``invoice_consumer`` (ActiveMQ): invoice events, each a new business event
  (new invoice id), all forwarded to the event bus through Powertools
  idempotency.

For each batch size, the same events are run through the handler and through
a loop that does nothing but ``json.loads(base64.b64decode(data))`` for each
message (the decode floor), in the same process, one after the other,
several rounds; the table gives the medians in microseconds of CPU time
(``time.process_time``) per message and the median of the per-round ratios
handler/floor.

The handlers run as in Lambda minus the network: Logger, Metrics, the
idempotency utility and the Pydantic models do their full work, their output
goes to /dev/null, and tracing is off. Each handler runs twice:

- ``moto``: DynamoDB and EventBridge are moto's in-process emulators,
  reached through boto3 (no rule on the bus, so no delivery to targets is
  counted). The figure includes botocore's client-side work and moto's own
  cost, which is far above a real service call's client-side cost.
- ``in-memory fake``: the boto3 clients are replaced by small in-memory
  objects that keep the same semantics (conditional writes, sets, the
  idempotency record's condition), which shows the handler's own cost.

Run from the repository root: ``python benchmarks/mq_consumer_cpu.py``.
"""

import base64
import contextlib
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
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _lambda_env import Context, load_handler, prepare_environment  # noqa: E402

ROUNDS = 5
MOTO_ROUNDS = 3
MESSAGES_PER_ROUND = 2_000  # each round runs batches until it has handled this many messages
MOTO_MESSAGES_PER_ROUND = 1_000
BATCH_SIZES = (10, 1_000)
SHIPMENTS = 50
STATUSES = ("picked", "packed", "shipped", "delayed", "delivered")

prepare_environment(
    POWERTOOLS_SERVICE_NAME="exercise05-benchmark",
    POWERTOOLS_METRICS_NAMESPACE="Exercise05Benchmark",
    SHIPMENTS_TABLE="benchmark-shipments",
    IDEMPOTENCY_TABLE_NAME="benchmark-invoice-idempotency",
    EVENT_BUS_NAME="benchmark-legacy-bridge",
)

_start = datetime(2025, 3, 14, tzinfo=timezone.utc)
_ticks = itertools.count(1)
_shipment_ids = [f"s-{uuid.uuid4().hex[:12]}" for _ in range(SHIPMENTS)]


# --- events -----------------------------------------------------------------------


def shipment_body(index):
    """A shipment update later than every earlier one."""
    moment = _start + timedelta(milliseconds=next(_ticks))
    update = {
        "schema_version": 1,
        "shipment_id": _shipment_ids[index % SHIPMENTS],
        "order_id": f"o-{index % 997:05d}",
        "status": STATUSES[index % len(STATUSES)],
        "occurred_at": moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
    }
    if update["status"] in ("shipped", "delayed"):
        update["carrier"] = "DHL"
    return json.dumps(update).encode()


def invoice_body(index):
    """A new invoice event every time."""
    invoice = {
        "schema_version": 1,
        "invoice_id": f"inv-{uuid.uuid4().hex[:16]}",
        "order_id": f"o-{index % 997:05d}",
        "customer_id": f"c-{index % 97:04d}",
        "amount": f"{5 + (index * 13.37) % 2000:.2f}",
        "currency": "EUR",
        "status": ("issued", "paid", "voided")[index % 3],
        "issued_at": (_start + timedelta(seconds=index)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    return json.dumps(invoice).encode()


def rabbitmq_event(bodies):
    stamp = datetime.now(timezone.utc).strftime("%b %d, %Y, %I:%M:%S %p")
    messages = [
        {
            "basicProperties": {
                "contentType": "application/json",
                "contentEncoding": None,
                "headers": {"source": {"bytes": list(b"wms-7")}, "attempt": 1},
                "deliveryMode": 2,
                "priority": 0,
                "correlationId": None,
                "replyTo": None,
                "expiration": None,
                "messageId": str(uuid.uuid4()),
                "timestamp": stamp,
                "type": None,
                "userId": "warehouse",
                "appId": "wms",
                "clusterId": None,
                "bodySize": len(body),
            },
            "redelivered": False,
            "data": base64.b64encode(body).decode(),
        }
        for body in bodies
    ]
    return {"eventSource": "aws:rmq", "eventSourceArn": "arn:aws:mq:us-east-1:123456789012:broker:wms:b-1", "rmqMessagesByQueue": {"shipments::/": messages}}


def activemq_event(bodies):
    now = int(time.time() * 1000)
    messages = [
        {
            "messageID": f"ID:b-1-1.mq.us-east-1.amazonaws.com-37557-{now}-4:1:1:1:{next(_ticks)}",
            "messageType": "jms/text-message",
            "timestamp": now - 40,
            "deliveryMode": 2,
            "correlationID": "",
            "replyTo": "null",
            "destination": {"physicalName": "erp.invoices"},
            "redelivered": False,
            "type": "",
            "expiration": 0,
            "priority": 4,
            "data": base64.b64encode(body).decode(),
            "brokerInTime": now - 38,
            "brokerOutTime": now - 2,
            "properties": {"erp_system": "legacy-erp"},
        }
        for body in bodies
    ]
    return {"eventSource": "aws:mq", "eventSourceArn": "arn:aws:mq:us-east-1:123456789012:broker:erp:b-1", "messages": messages}


ENGINES = {
    "shipment_consumer": (shipment_body, rabbitmq_event, lambda event: [m for ms in event["rmqMessagesByQueue"].values() for m in ms]),
    "invoice_consumer": (invoice_body, activemq_event, lambda event: event["messages"]),
}


# --- in-memory stand-ins for the AWS clients ------------------------------------------


def _fake_exceptions():
    """What ``client.exceptions`` offers for the one error the handlers catch by name."""
    from botocore.exceptions import ClientError

    class ConditionalCheckFailedException(ClientError):
        pass

    return SimpleNamespace(ConditionalCheckFailedException=ConditionalCheckFailedException)


def _condition_failed(exceptions, item, operation):
    error = {"Error": {"Code": "ConditionalCheckFailedException", "Message": "The conditional request failed"}, "Item": item}
    return exceptions.ConditionalCheckFailedException(error, operation)


class FakeShipmentsTable:
    """The two UpdateItem calls the shipment consumer makes, with their conditions, on a dict."""

    def __init__(self):
        self.items = {}
        self.exceptions = _fake_exceptions()

    def update_item(self, *, Key, UpdateExpression, ExpressionAttributeValues, ConditionExpression=None, **_):
        key = Key["shipment_id"]["S"]
        values = ExpressionAttributeValues
        item = self.items.get(key)
        if UpdateExpression.startswith("DELETE"):
            left = set(item.get("unbridged_delays", {}).get("SS", [])) - set(values[":delay"]["SS"]) if item else set()
            if left:
                item["unbridged_delays"] = {"SS": sorted(left)}
            elif item:
                item.pop("unbridged_delays", None)  # DynamoDB removes a set left empty
            return {}
        if item is not None and not item["occurred_at"]["S"] < values[":occurred_at"]["S"]:
            raise _condition_failed(self.exceptions, item, "UpdateItem")
        item = dict(item or Key)
        for name in ("order_id", "status", "occurred_at", "message_id", "carrier"):
            if f":{name}" in values:
                item[name] = values[f":{name}"]
        if ":delay" in values:
            item["unbridged_delays"] = {"SS": sorted(set(item.get("unbridged_delays", {}).get("SS", [])) | set(values[":delay"]["SS"]))}
        self.items[key] = item
        return {}


class FakeIdempotencyTable:
    """The PutItem, GetItem, UpdateItem and DeleteItem calls of Powertools' DynamoDB persistence layer, on a dict."""

    def __init__(self):
        self.items = {}
        self.exceptions = _fake_exceptions()

    def put_item(self, *, Item, ExpressionAttributeValues, **_):
        key = Item["id"]["S"]
        stored = self.items.get(key)
        if stored is not None:
            now, now_ms = int(ExpressionAttributeValues[":now"]["N"]), int(ExpressionAttributeValues[":now_in_millis"]["N"])
            expired = int(stored["expiration"]["N"]) < now
            stale = stored["status"]["S"] == "INPROGRESS" and "in_progress_expiration" in stored and int(stored["in_progress_expiration"]["N"]) < now_ms
            if not (expired or stale):
                raise _condition_failed(self.exceptions, stored, "PutItem")
        self.items[key] = dict(Item)
        return {}

    def get_item(self, *, Key, **_):
        item = self.items.get(Key["id"]["S"])
        return {"Item": item} if item is not None else {}

    def update_item(self, *, Key, ExpressionAttributeNames, ExpressionAttributeValues, **_):
        item = self.items[Key["id"]["S"]]
        for placeholder, name in ExpressionAttributeNames.items():
            item[name] = ExpressionAttributeValues[":" + placeholder[1:]]
        return {}

    def delete_item(self, *, Key, **_):
        self.items.pop(Key["id"]["S"], None)
        return {}


class FakeEventBridge:
    """PutEvents that takes every entry and keeps it."""

    def __init__(self):
        self.entries = []

    def put_events(self, *, Entries):
        self.entries.extend(Entries)
        return {"FailedEntryCount": 0, "Entries": [{"EventId": str(uuid.uuid4())} for _ in Entries]}


# --- measuring -------------------------------------------------------------------------


def cpu_per_message(events, run, messages_of):
    count = sum(len(messages_of(event)) for event in events)
    start = time.process_time()
    for event in events:
        run(event)
    return (time.process_time() - start) / count * 1e6


def measure(function, mode, module, batch_size, *, rounds, messages_per_round):
    body, build, messages_of = ENGINES[function]
    context = Context()

    def run_handler(event):
        result = module.lambda_handler(event, context)
        if result["messages"] != len(messages_of(event)):
            raise RuntimeError(f"{function}: unexpected result {result}")

    def decode_only(event):
        for message in messages_of(event):
            json.loads(base64.b64decode(message["data"]))

    run_handler(build([body(0)]))  # past the cold start
    handler_us, floor_us, ratios = [], [], []
    for _ in range(rounds):
        batches = max(1, messages_per_round // batch_size)
        events = [build([body(i) for i in range(batch_size)]) for _ in range(batches)]  # new updates and invoices every round
        handler = cpu_per_message(events, run_handler, messages_of)
        floor = cpu_per_message(events, decode_only, messages_of)
        handler_us.append(handler)
        floor_us.append(floor)
        ratios.append(handler / floor)
    count = sum(len(messages_of(event)) for event in events)
    return (function, mode, batch_size, count, statistics.median(handler_us), statistics.median(floor_us), statistics.median(ratios))


def create_resources():
    import boto3

    dynamodb = boto3.client("dynamodb")
    dynamodb.create_table(
        TableName=os.environ["SHIPMENTS_TABLE"],
        AttributeDefinitions=[{"AttributeName": "shipment_id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "shipment_id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.create_table(
        TableName=os.environ["IDEMPOTENCY_TABLE_NAME"],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    # No rule on the bus: delivering to a target is EventBridge's work, not the function's, and moto's SQS
    # target gets slower with every message left on the queue.
    boto3.client("events").create_event_bus(Name=os.environ["EVENT_BUS_NAME"])


def main():
    from moto import mock_aws

    rows = []
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with mock_aws():
            create_resources()
            handlers = {name: load_handler(name, f"benchmark_{name}") for name in ENGINES}
            for name, module in handlers.items():
                for size in BATCH_SIZES:
                    rows.append(measure(name, "moto", module, size, rounds=MOTO_ROUNDS, messages_per_round=MOTO_MESSAGES_PER_ROUND))
            handlers["shipment_consumer"].dynamodb = FakeShipmentsTable()
            handlers["invoice_consumer"].persistence_layer.client = FakeIdempotencyTable()
            for module in handlers.values():
                module.eventbridge = FakeEventBridge()
            for name, module in handlers.items():
                for size in BATCH_SIZES:
                    rows.append(measure(name, "in-memory fake", module, size, rounds=ROUNDS, messages_per_round=MESSAGES_PER_ROUND))

    print(
        f"Amazon MQ consumers: CPU time per message, median of {ROUNDS} rounds ({MOTO_ROUNDS} on moto); floor = base64 decode + json.loads of the same messages"
    )
    header = f"{'handler':18} {'AWS calls':15} {'batch':>6} {'msgs/round':>11} {'handler us':>11} {'floor us':>9} {'ratio':>8}"
    print(header)
    print("-" * len(header))
    for function, mode, size, count, handler, floor, ratio in sorted(rows, key=lambda row: (row[0], row[1] != "moto", row[2])):
        print(f"{function:18} {mode:15} {size:>6} {count:>11} {handler:>11.1f} {floor:>9.2f} {ratio:>8.1f}")


if __name__ == "__main__":
    main()
