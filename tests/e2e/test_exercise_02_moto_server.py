"""Exercise02EventBridge end to end through moto's server on 127.0.0.1.

The bus, its rules (with the event patterns of the synthesized sandbox
template), the rule targets' queues with their redrive policies, the archive
and the idempotency table are created through the API; moto runs no Lambda
code, so the test plays the event source mappings: it receives from each
queue, hands the batch to the consumer the template maps to that queue, and
deletes what the consumer did not report as failed. The inventory consumer
really puts its stock events on the bus, and they really reach the
notifications queue through the notifications rule.

One gap of the stand-in is filled in: moto leaves out the ``account`` field
that EventBridge sets on every event it delivers, so the test adds it to the
message body the way EventBridge would.
"""

from __future__ import annotations

import json
import time
import urllib.request
from datetime import datetime, timedelta, timezone

import boto3
import pytest
from moto.server import ThreadedMotoServer

STACK = "Exercise02EventBridge"
BUS = "orders-bus"


def _ref(value) -> str:
    return value["Ref"] if "Ref" in value else value["Fn::GetAtt"][0]


@pytest.fixture(scope="module")
def endpoint(handler_env):
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    # moto's state is per process, shared by every server it starts: begin empty.
    urllib.request.urlopen(urllib.request.Request(f"http://{host}:{port}/moto-api/reset", method="POST")).close()
    handler_env.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
    yield
    server.stop()


@pytest.fixture(scope="module")
def wiring(endpoint, template_json):
    """Queue logical id -> (url, arn, consumer folder, DLQ url, max receives); plus the archive."""
    resources = template_json("sandbox", STACK)["Resources"]
    events, sqs, dynamodb = boto3.client("events"), boto3.client("sqs"), boto3.client("dynamodb")
    bus_arn = events.create_event_bus(Name=BUS)["EventBusArn"]
    consumers = {
        _ref(r["Properties"]["EventSourceArn"]): resources[_ref(r["Properties"]["FunctionName"])]["Properties"]["Environment"]["Variables"][
            "POWERTOOLS_SERVICE_NAME"
        ]
        for r in resources.values()
        if r["Type"] == "AWS::Lambda::EventSourceMapping"
    }
    queues = {}
    for logical_id, rule in ((k, r["Properties"]) for k, r in resources.items() if r["Type"] == "AWS::Events::Rule"):
        (target,) = rule["Targets"]
        queue_id = _ref(target["Arn"])
        redrive = resources[queue_id]["Properties"]["RedrivePolicy"]
        dlq_url = sqs.create_queue(QueueName=f"{queue_id}-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        url = sqs.create_queue(
            QueueName=queue_id,
            Attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": redrive["maxReceiveCount"]})},
        )["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(Name=logical_id, EventBusName=BUS, EventPattern=json.dumps(rule["EventPattern"]))
        events.put_targets(Rule=logical_id, EventBusName=BUS, Targets=[{"Id": "queue", "Arn": arn}])
        queues[consumers[queue_id]] = {"url": url, "arn": arn, "dlq_url": dlq_url, "max_receives": redrive["maxReceiveCount"]}
    (archive,) = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::Events::Archive"]
    pattern = {"account": ["123456789012"]}  # the template's pattern names the deploying account
    assert archive["EventPattern"].keys() == pattern.keys()
    archive_arn = events.create_archive(ArchiveName="orders-archive", EventSourceArn=bus_arn, EventPattern=json.dumps(pattern))["ArchiveArn"]
    (table,) = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::DynamoDB::Table"]
    dynamodb.create_table(
        TableName="idempotency", KeySchema=table["KeySchema"], AttributeDefinitions=table["AttributeDefinitions"], BillingMode="PAY_PER_REQUEST"
    )
    return {"queues": queues, "bus_arn": bus_arn, "archive_arn": archive_arn}


@pytest.fixture(scope="module")
def handlers(wiring, handler_env, load_handler):
    handler_env.setenv("BUS_NAME", BUS)
    handler_env.setenv("IDEMPOTENCY_TABLE_NAME", "idempotency")
    return {name: load_handler(name) for name in ("orders_publisher", "inventory_service", "notifications_service")}


def _receive(url: str, **options) -> list[dict]:
    return boto3.client("sqs").receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"], **options).get("Messages", [])


def _peek(url: str) -> list[dict]:
    return [json.loads(m["Body"]) for m in _receive(url, VisibilityTimeout=0)]


def _poll(wiring, consumer: str, handlers, context, **options) -> dict:
    """One event source mapping poll of the consumer's queue."""
    queue = wiring["queues"][consumer]
    messages = _receive(queue["url"], **options)
    if not messages:
        return {"received": 0, "batchItemFailures": []}
    event = {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": _as_delivered_by_eventbridge(m["Body"]),
                "attributes": m["Attributes"],
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": queue["arn"],
                "awsRegion": "us-east-1",
            }
            for m in messages
        ]
    }
    result = handlers[consumer].lambda_handler(event, context)
    failed = {f["itemIdentifier"] for f in result["batchItemFailures"]}
    for m in messages:
        if m["MessageId"] not in failed:
            boto3.client("sqs").delete_message(QueueUrl=queue["url"], ReceiptHandle=m["ReceiptHandle"])
    return {**result, "received": len(messages)}


def _as_delivered_by_eventbridge(body: str) -> str:
    event = json.loads(body)
    event.setdefault("account", "123456789012")
    return json.dumps(event)


def _drain(wiring, consumer, handlers, context) -> None:
    while (result := _poll(wiring, consumer, handlers, context))["received"]:
        assert result["batchItemFailures"] == [], consumer


ORDER = {"version": 2, "customer_id": "c-1", "total": 30, "currency": "EUR"}
REQUEST = {
    "events": [
        {"detail_type": "OrderPlaced", "detail": {**ORDER, "order_id": "o-1", "items": [{"sku": "SKU-1", "quantity": 2}]}},
        {"detail_type": "OrderPlaced", "detail": {**ORDER, "order_id": "o-2", "items": [{"sku": "SKU-9", "quantity": 40}]}},
        {"detail_type": "OrderCancelled", "detail": {**ORDER, "order_id": "o-3", "items": [{"sku": "SKU-3", "quantity": 1}]}},
    ]
}


@pytest.fixture(scope="module")
def started(handlers, lambda_context):
    start = datetime.now(timezone.utc) - timedelta(minutes=1)
    assert handlers["orders_publisher"].lambda_handler(REQUEST, lambda_context) == {"published": 3}
    return start


def test_rules_deliver_only_matching_events(wiring, started):
    inventory = sorted((e["detail-type"], e["detail"]["order_id"]) for e in _peek(wiring["queues"]["inventory_service"]["url"]))
    assert inventory == [("OrderCancelled", "o-3"), ("OrderPlaced", "o-1"), ("OrderPlaced", "o-2")]
    assert len(_peek(wiring["queues"]["notifications_service"]["url"])) == 3


def test_inventory_reacts_on_the_bus_and_notifications_hear_all_but_releases(wiring, handlers, lambda_context, started, monkeypatch):
    _drain(wiring, "inventory_service", handlers, lambda_context)
    notified = []
    monkeypatch.setattr(handlers["notifications_service"], "notify", lambda kind, payload: notified.append(kind))
    _drain(wiring, "notifications_service", handlers, lambda_context)
    assert sorted(notified) == sorted(["order_placed", "order_placed", "order_cancelled", "stock_reserved", "stock_shortage"])


def test_an_archive_replay_does_no_double_work(wiring, handlers, lambda_context, started, monkeypatch):
    _drain(wiring, "inventory_service", handlers, lambda_context)
    _drain(wiring, "notifications_service", handlers, lambda_context)
    events = boto3.client("events")
    assert events.describe_archive(ArchiveName="orders-archive")["EventCount"] >= 6
    events.start_replay(
        ReplayName="fix",
        EventSourceArn=wiring["archive_arn"],
        EventStartTime=started,
        EventEndTime=datetime.now(timezone.utc) + timedelta(minutes=1),
        Destination={"Arn": wiring["bus_arn"]},
    )
    deadline = time.monotonic() + 10
    while events.describe_replay(ReplayName="fix")["State"] != "COMPLETED":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    replayed = _peek(wiring["queues"]["inventory_service"]["url"])
    assert len(replayed) == 3 and all(e.get("replay-name") == "fix" for e in replayed)

    put_calls, notified = [], []
    inventory = handlers["inventory_service"]
    monkeypatch.setattr(inventory.eventbridge, "put_events", lambda **kwargs: put_calls.append(kwargs))
    monkeypatch.setattr(handlers["notifications_service"], "notify", lambda kind, payload: notified.append(kind))
    _drain(wiring, "inventory_service", handlers, lambda_context)
    _drain(wiring, "notifications_service", handlers, lambda_context)
    assert put_calls == [] and notified == []


def test_an_unknown_version_fails_loudly_into_the_dlq(wiring, handlers, lambda_context, started):
    boto3.client("events").put_events(
        Entries=[{"EventBusName": BUS, "Source": "blueprints.orders", "DetailType": "OrderPlaced", "Detail": json.dumps({"version": 3, "order_id": "o-9"})}]
    )
    queue = wiring["queues"]["inventory_service"]
    failures = sum(
        len(_poll(wiring, "inventory_service", handlers, lambda_context, VisibilityTimeout=0)["batchItemFailures"]) for _ in range(queue["max_receives"] + 1)
    )
    assert failures == queue["max_receives"]
    (dead,) = _peek(queue["dlq_url"])
    assert dead["detail"] == {"version": 3, "order_id": "o-9"}
