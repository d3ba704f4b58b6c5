"""Producer to billing through moto's server on 127.0.0.1: real HTTP, real SQS message shapes.

The producer publishes through SNS; the messages SQS then hands out are
turned into the event the SQS event source mapping would pass to the billing
function, and the billing function charges through DynamoDB over HTTP.
"""

import json

import boto3
import pytest
from moto.server import ThreadedMotoServer

TABLE_NAME = "billing-idempotency-http"


@pytest.fixture(scope="module")
def endpoint(handler_env):
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    handler_env.setenv("AWS_ENDPOINT_URL", url)
    yield url
    server.stop()


@pytest.fixture(scope="module")
def wiring(endpoint):
    sns, sqs, dynamodb = boto3.client("sns"), boto3.client("sqs"), boto3.client("dynamodb")
    topic_arn = sns.create_topic(Name="orders-http")["TopicArn"]
    queue_url = sqs.create_queue(QueueName="billing-http")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(
        TopicArn=topic_arn,
        Protocol="sqs",
        Endpoint=queue_arn,
        Attributes={"RawMessageDelivery": "true", "FilterPolicy": json.dumps({"event_type": ["OrderPlaced"]})},
    )
    dynamodb.create_table(
        TableName=TABLE_NAME,
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return {"topic_arn": topic_arn, "queue_url": queue_url, "queue_arn": queue_arn}


def as_lambda_event(messages, queue_arn):
    """What the event source mapping makes of ReceiveMessage output."""
    records = []
    for message in messages:
        records.append(
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": message["Attributes"],
                "messageAttributes": {
                    name: {
                        "stringValue": value.get("StringValue"),
                        "stringListValues": [],
                        "binaryListValues": [],
                        "dataType": value["DataType"],
                    }
                    for name, value in message.get("MessageAttributes", {}).items()
                },
                "md5OfBody": message["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "us-east-1",
            }
        )
    return {"Records": records}


def receive_all(queue_url):
    sqs = boto3.client("sqs")
    messages = []
    while True:
        batch = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, AttributeNames=["All"], MessageAttributeNames=["All"]
        ).get("Messages", [])
        if not batch:
            return messages
        messages.extend(batch)


def test_published_orders_are_charged_once_each_over_http(
    wiring, endpoint, load_handler, lambda_context, handler_env, monkeypatch
):
    monkeypatch.setenv("TOPIC_ARN", wiring["topic_arn"])
    monkeypatch.delenv("FIFO_TOPIC_ARN", raising=False)
    monkeypatch.setenv("IDEMPOTENCY_TABLE_NAME", TABLE_NAME)
    producer = load_handler("order_producer")
    billing = load_handler("billing_consumer")
    assert producer.sns.meta.endpoint_url == endpoint
    charged = []
    real_charge = billing.charge
    monkeypatch.setattr(billing, "charge", lambda order: charged.append(order.order_id) or real_charge(order))
    orders = [
        {
            "event_type": "OrderPlaced" if i % 4 else "OrderCancelled",
            "version": 1,
            "order_id": f"o-http-{i}",
            "customer_id": f"c-{i % 3}",
            "total": 19.99 + i,
            "currency": "EUR",
        }
        for i in range(12)
    ]

    assert producer.lambda_handler({"orders": orders}, lambda_context) == {"published": 12, "fifo_published": 0}
    messages = receive_all(wiring["queue_url"])
    event = as_lambda_event(messages, wiring["queue_arn"])
    # The whole batch again, as if every message were delivered twice.
    duplicated = {"Records": event["Records"] + event["Records"]}

    assert billing.lambda_handler(duplicated, lambda_context) == {"batchItemFailures": []}
    placed = sorted(o["order_id"] for o in orders if o["event_type"] == "OrderPlaced")
    assert sorted(charged) == placed
    assert len(boto3.client("dynamodb").scan(TableName=TABLE_NAME)["Items"]) == len(placed)
