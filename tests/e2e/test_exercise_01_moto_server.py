"""Exercise01Queues end to end through moto's server on 127.0.0.1 (a real HTTP endpoint).

The topics, queues, subscriptions, DLQs and the idempotency table are created
through the API exactly as the synthesized sandbox template wires them
(filter policies, their scope, raw delivery, redrive policies and receive
counts are read from the template), because moto's CloudFormation skips
subscriptions and queue policies. moto runs no Lambda code, so the test plays
the event source mapping: it receives from each queue, hands the batch to the
consumer handler the template maps to that queue, and deletes what the
handler did not report as failed.
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass, field

import boto3
import pytest
from moto.server import ThreadedMotoServer

TEMPLATE_PROFILE = "sandbox"


def _ref(value) -> str:
    """Logical id behind a ``Ref`` or ``Fn::GetAtt``."""
    return value["Ref"] if "Ref" in value else value["Fn::GetAtt"][0]


@dataclass
class Wiring:
    topic_arns: dict[str, str] = field(default_factory=dict)  # topic logical id -> ARN
    queue_urls: dict[str, str] = field(default_factory=dict)  # queue logical id -> URL
    queue_arns: dict[str, str] = field(default_factory=dict)
    consumer_of: dict[str, str] = field(default_factory=dict)  # queue logical id -> lambdas/<folder>
    dead_letter_of: dict[str, str] = field(default_factory=dict)  # queue logical id -> DLQ logical id
    max_receives: dict[str, int] = field(default_factory=dict)
    filters: dict[str, tuple[str, dict | None]] = field(default_factory=dict)  # queue -> (scope, policy)
    table: str = ""

    def queue_named(self, fragment: str) -> str:
        (logical_id,) = [q for q in self.consumer_of if q.startswith(fragment)]
        return logical_id


@pytest.fixture(scope="module")
def endpoint(handler_env):
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    # moto's state is per process, shared by every server it starts: begin empty.
    urllib.request.urlopen(urllib.request.Request(f"http://{host}:{port}/moto-api/reset", method="POST")).close()
    handler_env.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="module")
def wiring(endpoint, template_json) -> Wiring:
    template = template_json(TEMPLATE_PROFILE)["Resources"]
    of_type = lambda t: {k: v["Properties"] for k, v in template.items() if v["Type"] == t}  # noqa: E731
    sns, sqs, dynamodb = boto3.client("sns"), boto3.client("sqs"), boto3.client("dynamodb")
    wiring = Wiring()

    subscriptions = of_type("AWS::SNS::Subscription")
    topics = {_ref(s["TopicArn"]) for s in subscriptions.values()}
    for logical_id in topics:
        props = template[logical_id]["Properties"]
        fifo = bool(props.get("FifoTopic"))
        attributes = {"FifoTopic": "true"} if fifo else {}
        wiring.topic_arns[logical_id] = sns.create_topic(Name=logical_id + (".fifo" if fifo else ""), Attributes=attributes)["TopicArn"]

    queues = of_type("AWS::SQS::Queue")

    def create_queue(logical_id: str) -> None:
        if logical_id in wiring.queue_urls:
            return
        props = queues[logical_id]
        attributes = {"VisibilityTimeout": str(props.get("VisibilityTimeout", 30))}
        name = logical_id
        if props.get("FifoQueue"):
            attributes["FifoQueue"] = "true"
            name += ".fifo"
        if "RedrivePolicy" in props:
            dlq = _ref(props["RedrivePolicy"]["deadLetterTargetArn"])
            create_queue(dlq)
            count = props["RedrivePolicy"]["maxReceiveCount"]
            attributes["RedrivePolicy"] = json.dumps({"deadLetterTargetArn": wiring.queue_arns[dlq], "maxReceiveCount": count})
            wiring.dead_letter_of[logical_id], wiring.max_receives[logical_id] = dlq, count
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        wiring.queue_urls[logical_id] = url
        wiring.queue_arns[logical_id] = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    functions = of_type("AWS::Lambda::Function")
    for mapping in of_type("AWS::Lambda::EventSourceMapping").values():
        queue = _ref(mapping["EventSourceArn"])
        create_queue(queue)
        function = functions[_ref(mapping["FunctionName"])]
        wiring.consumer_of[queue] = function["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]

    for subscription in subscriptions.values():
        queue = _ref(subscription["Endpoint"])
        create_queue(queue)
        dlq = _ref(subscription["RedrivePolicy"]["deadLetterTargetArn"])
        create_queue(dlq)
        attributes = {
            "RawMessageDelivery": str(subscription["RawMessageDelivery"]).lower(),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": wiring.queue_arns[dlq]}),
        }
        if "FilterPolicy" in subscription:
            attributes["FilterPolicy"] = json.dumps(subscription["FilterPolicy"])
            attributes["FilterPolicyScope"] = subscription.get("FilterPolicyScope", "MessageAttributes")
        wiring.filters[queue] = (attributes.get("FilterPolicyScope", "-"), subscription.get("FilterPolicy"))
        sns.subscribe(
            TopicArn=wiring.topic_arns[_ref(subscription["TopicArn"])],
            Protocol="sqs",
            Endpoint=wiring.queue_arns[queue],
            Attributes=attributes,
        )

    (table_props,) = of_type("AWS::DynamoDB::Table").values()
    wiring.table = "idempotency"
    dynamodb.create_table(
        TableName=wiring.table,
        KeySchema=table_props["KeySchema"],
        AttributeDefinitions=table_props["AttributeDefinitions"],
        BillingMode="PAY_PER_REQUEST",
    )
    return wiring


def _as_lambda_event(messages: list[dict], queue_arn: str) -> dict:
    """What the SQS event source mapping makes of ReceiveMessage output."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m["Attributes"],
                "messageAttributes": {
                    name: {"stringValue": v.get("StringValue"), "stringListValues": [], "binaryListValues": [], "dataType": v["DataType"]}
                    for name, v in m.get("MessageAttributes", {}).items()
                },
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "us-east-1",
            }
            for m in messages
        ]
    }


def _receive(queue_url: str, **options) -> list[dict]:
    return (
        boto3.client("sqs")
        .receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, AttributeNames=["All"], MessageAttributeNames=["All"], **options)
        .get("Messages", [])
    )


def _bodies(queue_url: str) -> list[dict]:
    """Everything in a queue, read without consuming it."""
    return [json.loads(m["Body"]) for m in _receive(queue_url, VisibilityTimeout=0)]


def _poll_once(wiring: Wiring, queue: str, handlers: dict, context, **options) -> dict:
    """One event source mapping poll: receive, invoke, delete the successes."""
    messages = _receive(wiring.queue_urls[queue], **options)
    if not messages:
        return {"batchItemFailures": [], "received": 0}
    result = handlers[wiring.consumer_of[queue]].lambda_handler(_as_lambda_event(messages, wiring.queue_arns[queue]), context)
    failed = {f["itemIdentifier"] for f in result["batchItemFailures"]}
    sqs = boto3.client("sqs")
    for message in messages:
        if message["MessageId"] not in failed:
            sqs.delete_message(QueueUrl=wiring.queue_urls[queue], ReceiptHandle=message["ReceiptHandle"])
    return {**result, "received": len(messages)}


ORDERS = [
    {"event_type": "OrderPlaced", "version": 1, "order_id": "o-1", "customer_id": "c-1", "total": 42.5, "currency": "EUR"},
    {"event_type": "OrderPlaced", "version": 1, "order_id": "o-2", "customer_id": "c-2", "total": 900, "currency": "EUR"},
    {"event_type": "OrderCancelled", "version": 1, "order_id": "o-1", "customer_id": "c-1", "total": 42.5, "currency": "EUR"},
    {"event_type": "OrderCancelled", "version": 1, "order_id": "o-3", "customer_id": "c-1", "total": 700, "currency": "EUR"},
]


@pytest.fixture(scope="module")
def handlers(wiring, handler_env, load_handler):
    (orders,) = [arn for lid, arn in wiring.topic_arns.items() if not arn.endswith(".fifo")]
    (orders_fifo,) = [arn for lid, arn in wiring.topic_arns.items() if arn.endswith(".fifo")]
    handler_env.setenv("TOPIC_ARN", orders)
    handler_env.setenv("FIFO_TOPIC_ARN", orders_fifo)
    handler_env.setenv("IDEMPOTENCY_TABLE_NAME", wiring.table)
    handler_env.setenv("REVIEW_THRESHOLD", "500")
    names = {"order_producer", *wiring.consumer_of.values()}
    return {name: load_handler(name) for name in names}


@pytest.fixture(scope="module")
def published(handlers, lambda_context):
    return handlers["order_producer"].lambda_handler({"orders": ORDERS}, lambda_context)


def test_the_template_wires_four_consumers_with_the_expected_filters(wiring):
    assert sorted(wiring.consumer_of.values()) == ["audit_consumer", "billing_consumer", "fraud_review_consumer", "ledger_consumer"]
    scopes = sorted(scope for scope, _ in wiring.filters.values())
    assert scopes == ["-", "-", "MessageAttributes", "MessageBody"]


def test_producer_publishes_every_order_to_both_topics(published):
    assert published == {"published": 4, "fifo_published": 4}


def test_each_queue_receives_only_what_its_filter_matches(wiring, published):
    def orders_in(fragment: str) -> list[tuple[str, str]]:
        return sorted((b["event_type"], b["order_id"]) for b in _bodies(wiring.queue_urls[wiring.queue_named(fragment)]))

    assert orders_in("Billing") == [("OrderPlaced", "o-1"), ("OrderPlaced", "o-2")]
    assert orders_in("FraudReview") == [("OrderCancelled", "o-3"), ("OrderPlaced", "o-2")]
    assert len(orders_in("Audit")) == 4
    assert len(orders_in("Ledger")) == 4


def test_consumers_process_every_message_and_leave_their_queues_empty(wiring, published, handlers, lambda_context, monkeypatch):
    charged = []
    billing = handlers["billing_consumer"]
    real_charge = billing.charge
    monkeypatch.setattr(billing, "charge", lambda order: charged.append(order.order_id) or real_charge(order))
    for queue in wiring.consumer_of:
        while (result := _poll_once(wiring, queue, handlers, lambda_context))["received"]:
            assert result["batchItemFailures"] == [], queue
        assert _bodies(wiring.queue_urls[queue]) == []
        assert _bodies(wiring.queue_urls[wiring.dead_letter_of[queue]]) == []
    assert sorted(charged) == ["o-1", "o-2"]


def test_republished_orders_are_not_charged_twice(wiring, handlers, lambda_context, monkeypatch, published):
    billing_queue = wiring.queue_named("Billing")
    while _poll_once(wiring, billing_queue, handlers, lambda_context)["received"]:
        pass  # whatever the first publication left is charged now, if not already
    handlers["order_producer"].lambda_handler({"orders": ORDERS[:2]}, lambda_context)
    charged = []
    monkeypatch.setattr(handlers["billing_consumer"], "charge", lambda order: charged.append(order.order_id))
    received = 0
    while (result := _poll_once(wiring, billing_queue, handlers, lambda_context))["received"]:
        received += result["received"]
        assert result["batchItemFailures"] == []
    assert received == 2 and charged == []


def test_a_bad_message_reaches_the_dlq_after_max_receives(wiring, handlers, lambda_context, published):
    audit = wiring.queue_named("Audit")
    boto3.client("sqs").send_message(QueueUrl=wiring.queue_urls[audit], MessageBody='{"event_type": "OrderPlaced", "version": 99}')
    failures = 0
    for _ in range(wiring.max_receives[audit] + 1):
        result = _poll_once(wiring, audit, handlers, lambda_context, VisibilityTimeout=0)
        failures += len(result["batchItemFailures"])
    assert failures == wiring.max_receives[audit]
    assert _bodies(wiring.queue_urls[audit]) == []
    assert _bodies(wiring.queue_urls[wiring.dead_letter_of[audit]]) == [{"event_type": "OrderPlaced", "version": 99}]
