"""The Amazon MQ consumers: CPU per message against the decode floor, and AWS calls per 1,000 messages against the batching floor.

Two handlers, on events in the shapes Lambda's Amazon MQ event source mappings deliver:

- ``shipment_consumer`` (RabbitMQ): updates of 50 shipments, each later than the last for its
  shipment, one in five ``delayed``: every update is written (one conditional UpdateItem each) and
  one in five is bridged to the bus (PutEvents, 10 per call; one UpdateItem per delay after);
- ``invoice_consumer`` (ActiveMQ): invoice events, each a new business event, every one forwarded
  to the bus (PutEvents, 10 per call) through its Powertools idempotency record.

CPU: for each batch size the same events go through the handler and through a loop that only
does ``json.loads(base64.b64decode(data))`` per message (the decode floor), in the same process,
one after the other, several rounds; the table gives the medians, in microseconds of CPU time
(``time.process_time``) per message, and the median of the per-round ratios handler/floor. The
target is at most 3x at batch 100. The handlers run as in Lambda minus the network: Logger,
Metrics, the idempotency utility and the contracts do their full work, their output goes to
/dev/null, tracing is off. AWS is either small in-memory fakes with the same semantics
(conditional writes, sets, the idempotency record's condition), which shows the handler's own
cost, or moto's in-process emulators through boto3 (botocore's client-side work and moto's own,
far above a real call's client-side cost). A second table splits the faked run at batch 100 into
the runtime's and the contract's share (decoding the event, reading the body with the contract,
``process_batch`` reporting) and what is left for the handler's own effect.

AWS calls: 1,000 messages in batches of 100 through moto, every call counted with botocore's
``before-call`` event, against the floor: for PutEvents one call per 10 events, for the writes
one per message (a conditional write cannot be batched: BatchWriteItem takes no condition).

Run from the repository root: ``python benchmarks/mq_consumer_cpu.py``.
"""

import base64
import contextlib
import gc
import itertools
import json
import math
import os
import statistics
import sys
import time
import uuid
import warnings
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _lambda_env import Context, load_function, prepare_environment  # noqa: E402

ROUNDS = 5
MOTO_ROUNDS = 3
MESSAGES_PER_ROUND = 2_000  # each round runs batches until it has handled this many messages
MOTO_MESSAGES_PER_ROUND = 500
BATCH_SIZES = (10, 100, 1_000)
TARGET_BATCH = 100
API_MESSAGES = 1_000
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
    """A shipment update later than every earlier one; every fifth is a delay."""
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
    """The shipment table's two UpdateItem calls, with their condition and sets, on a dict."""

    def __init__(self):
        self.items = {}
        self.exceptions = _fake_exceptions()

    def update_item(self, *, Key, UpdateExpression, ExpressionAttributeValues, **_):
        key, values = Key["shipment_id"]["S"], ExpressionAttributeValues
        old = self.items.get(key)
        if UpdateExpression.startswith("DELETE"):
            left = set(old.get("unbridged_delays", {}).get("SS", [])) - set(values[":delay"]["SS"]) if old else set()
            if left:
                old["unbridged_delays"] = {"SS": sorted(left)}
            elif old:
                old.pop("unbridged_delays", None)  # DynamoDB removes a set left empty
            return {}
        if old is not None and not old.get("update_key", {"S": ""})["S"] < values[":update_key"]["S"]:
            raise _condition_failed(self.exceptions, old, "UpdateItem")
        item = dict(old or Key)
        item.update((placeholder[1:], value) for placeholder, value in values.items() if placeholder != ":delay")
        if ":delay" in values:
            item["unbridged_delays"] = {"SS": sorted(set(item.get("unbridged_delays", {}).get("SS", [])) | set(values[":delay"]["SS"]))}
        self.items[key] = item
        return {"Attributes": old} if old else {}


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
    """PutEvents that takes every entry."""

    def put_events(self, *, Entries):
        return {"FailedEntryCount": 0, "Entries": [{"EventId": str(uuid.uuid4())} for _ in Entries]}


def use_fakes(handlers):
    handlers["shipment_consumer"].shipment_table.dynamodb = FakeShipmentsTable()
    handlers["invoice_consumer"].persistence_layer.client = FakeIdempotencyTable()
    for module in handlers.values():
        module.bus.client = FakeEventBridge()


# --- measuring -------------------------------------------------------------------------


def cpu_per_message(events, run, messages_of):
    count = sum(len(messages_of(event)) for event in events)
    start = time.process_time()
    for event in events:
        run(event)
    return (time.process_time() - start) / count * 1e6


def decode_only(messages_of):
    def run(event):
        for message in messages_of(event):
            json.loads(base64.b64decode(message["data"]))

    return run


def measure(function, mode, module, batch_size, *, rounds, messages_per_round, reset=lambda: None):
    body, build, messages_of = ENGINES[function]
    context = Context()

    def run_handler(event):
        result = module.lambda_handler(event, context)
        if result["messages"] != len(messages_of(event)):
            raise RuntimeError(f"{function}: unexpected result {result}")

    run_handler(build([body(0)]))  # past the cold start
    handler_us, floor_us, ratios = [], [], []
    for _ in range(rounds):
        reset()  # fresh fakes: the items of earlier rounds would only make the garbage collector slower
        batches = max(1, messages_per_round // batch_size)
        events = [build([body(i) for i in range(batch_size)]) for _ in range(batches)]  # new updates and invoices every round
        handler = cpu_per_message(events, run_handler, messages_of)
        floor = cpu_per_message(events, decode_only(messages_of), messages_of)
        handler_us.append(handler)
        floor_us.append(floor)
        ratios.append(handler / floor)
    count = sum(len(messages_of(event)) for event in events)
    return (function, mode, batch_size, count, statistics.median(handler_us), statistics.median(floor_us), statistics.median(ratios))


def shares(function, module, reset):
    """CPU per message at TARGET_BATCH of the steps the handler leaves to the runtime and the contracts, and of the whole handler."""
    from aws_lambda_powertools import Logger

    from messaging_runtime.amazon_mq import decode_activemq_event, decode_rabbitmq_event, process_batch
    from messaging_runtime.contracts.invoices import INVOICE
    from messaging_runtime.contracts.shipments import SHIPMENT_UPDATE
    from messaging_runtime.rejection import parse_json

    body, build, messages_of = ENGINES[function]
    decode, kind = (decode_rabbitmq_event, SHIPMENT_UPDATE) if function == "shipment_consumer" else (decode_activemq_event, INVOICE)
    logger = Logger(service="exercise05-benchmark-shares")
    batches = MESSAGES_PER_ROUND // TARGET_BATCH
    count = batches * TARGET_BATCH
    results = {name: [] for name in ("floor", "decode the event and the body (amazon_mq)", "read the body (contract)", "report (process_batch)", "handler")}
    for _ in range(ROUNDS):
        # The whole handler first, on events of its own; then each step, on the same fresh events, with nothing else left alive.
        reset()
        fresh = [build([body(i) for i in range(TARGET_BATCH)]) for _ in range(batches)]
        results["handler"].append(cpu_per_message(fresh, lambda event: module.lambda_handler(event, Context()), messages_of))
        del fresh
        events = [build([body(i) for i in range(TARGET_BATCH)]) for _ in range(batches)]
        gc.collect()
        results["floor"].append(cpu_per_message(events, decode_only(messages_of), messages_of))
        started = time.process_time()
        decoded = [decode(event) for event in events]
        texts = [[message.text() for message in batch.messages] for batch in decoded]
        results["decode the event and the body (amazon_mq)"].append((time.process_time() - started) / count * 1e6)
        started = time.process_time()
        for batch_texts in texts:
            for text in batch_texts:
                parse_json(kind, text)
        results["read the body (contract)"].append((time.process_time() - started) / count * 1e6)
        started = time.process_time()
        for batch in decoded:
            process_batch(batch, lambda message: None, logger=logger)
        results["report (process_batch)"].append((time.process_time() - started) / count * 1e6)
        del decoded, texts, events
        gc.collect()
    medians = {name: statistics.median(values) for name, values in results.items()}
    runtime = sum(value for name, value in medians.items() if name not in ("floor", "handler"))
    medians["the handler's own effect (the rest)"] = medians["handler"] - runtime
    return medians


def count_calls(handlers):
    """AWS calls per API for API_MESSAGES messages in batches of TARGET_BATCH, through moto."""
    counts = {name: Counter() for name in handlers}
    clients = {
        "shipment_consumer": [handlers["shipment_consumer"].shipment_table.dynamodb, handlers["shipment_consumer"].bus.client],
        "invoice_consumer": [handlers["invoice_consumer"].persistence_layer.client, handlers["invoice_consumer"].bus.client],
    }
    for name, module in handlers.items():
        for client in clients[name]:
            client.meta.events.register("before-call", lambda model, _counts=counts[name], **_: _counts.update([model.name]))
        body, build, _ = ENGINES[name]
        for start in range(0, API_MESSAGES, TARGET_BATCH):
            module.lambda_handler(build([body(i) for i in range(start, start + TARGET_BATCH)]), Context())
    return {name: Counter(counted) for name, counted in counts.items()}  # a copy: the counters stay registered


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
    # No rule on the bus: delivering to a target is EventBridge's work, not the function's.
    boto3.client("events").create_event_bus(Name=os.environ["EVENT_BUS_NAME"])


def load_handlers():
    return {name: load_function(name, f"benchmark_{name}") for name in ENGINES}


def main():
    from moto import mock_aws

    rows, calls = [], {}
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with mock_aws():
            create_resources()
            handlers = load_handlers()
            calls = count_calls(handlers)
            for name, module in handlers.items():
                rows.append(measure(name, "moto", module, TARGET_BATCH, rounds=MOTO_ROUNDS, messages_per_round=MOTO_MESSAGES_PER_ROUND))
            reset = lambda: use_fakes(handlers)  # noqa: E731
            for name, module in handlers.items():
                for size in BATCH_SIZES:
                    rows.append(measure(name, "in-memory fake", module, size, rounds=ROUNDS, messages_per_round=MESSAGES_PER_ROUND, reset=reset))
            split = {name: shares(name, module, reset) for name, module in handlers.items()}

    print(f"Amazon MQ consumers: CPU per message, median of {ROUNDS} rounds ({MOTO_ROUNDS} on moto); floor = base64 decode + json.loads of the same messages")
    header = f"{'handler':18} {'AWS calls':15} {'batch':>6} {'msgs/round':>11} {'handler us':>11} {'floor us':>9} {'ratio':>8}"
    print(header)
    print("-" * len(header))
    for function, mode, size, count, handler, floor, ratio in sorted(rows, key=lambda row: (row[0], row[1] != "moto", row[2])):
        target = "  (target <= 3x)" if size == TARGET_BATCH and mode != "moto" else ""
        print(f"{function:18} {mode:15} {size:>6} {count:>11} {handler:>11.1f} {floor:>9.2f} {ratio:>7.1f}x{target}")

    print()
    print(f"Where the CPU goes at batch {TARGET_BATCH}, in-memory fakes (us per message; x = against the decode floor)")
    for name, medians in split.items():
        floor = medians["floor"]
        parts = [part for part in medians if part != "floor"]
        print(f"  {name}: " + "; ".join(f"{part} {medians[part]:.1f} ({medians[part] / floor:.1f}x)" for part in parts))

    print()
    print(f"AWS API calls per {API_MESSAGES:,} messages, batches of {TARGET_BATCH} (moto, counted with botocore's before-call event)")
    header = f"{'handler':18} {'API':16} {'calls':>6} {'floor':>6} {'ratio':>7}  floor"
    print(header)
    print("-" * (len(header) + 50))
    delays = sum(STATUSES[i % len(STATUSES)] == "delayed" for i in range(API_MESSAGES))
    floors = {
        ("shipment_consumer", "PutEvents"): (math.ceil(delays / 10), f"{delays} delays, 10 entries per call"),
        ("shipment_consumer", "UpdateItem"): (API_MESSAGES, "one conditional write per update (BatchWriteItem takes no condition)"),
        ("invoice_consumer", "PutEvents"): (math.ceil(API_MESSAGES / 10), "10 entries per call"),
        ("invoice_consumer", "PutItem"): (API_MESSAGES, "one conditional idempotency record per event"),
        ("invoice_consumer", "UpdateItem"): (0, "Powertools completes each record with a second write"),
    }
    for name, counted in calls.items():
        for api, number in sorted(counted.items()):
            floor, why = floors.get((name, api), (0, ""))
            ratio = f"{number / floor:>6.2f}x" if floor else f"{'-':>7}"
            print(f"{name:18} {api:16} {number:>6} {floor:>6} {ratio}  {why}")
        total = sum(counted.values())
        floor = sum(floors.get((name, api), (0, ""))[0] for api in counted)
        print(f"{name:18} {'all calls':16} {total:>6} {floor:>6} {total / floor:>6.2f}x")


if __name__ == "__main__":
    main()
