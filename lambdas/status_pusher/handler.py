"""Push every status change of an order to the pages that follow it over the live status WebSocket API.

Reads the queue a rule fills with ``OrderStatusChanged`` events of ``blueprints.checkout``. For each event it
queries the order's connections (the table ``status_connections`` writes: ``order_id``, ``connection_id``) and
posts to each, through the stage's management API (``PostToConnection``), one JSON text message::

    {"type": "order_status", "order_id": "o-...", "seq": 3, "status": "CONFIRMED",
     "previous_status": "AWAITING_MERCHANT", "reason": null, "changed_at": "2026-01-01T00:00:00Z"}

Order and repeats: events arrive at least once and in no set order (a standard queue, redeliveries, a record
retried after a failure), and this function keeps nothing per connection. ``seq`` is the order's version (1, 2,
3... with no gap), so the page keeps the message with the highest ``seq`` it has seen and drops any other: a repeat
or an older status never replaces a newer one on screen.

A connection that is gone (``GoneException``: closed without a ``$disconnect`` that reached the table) is deleted
and counted ``GoneConnectionsRemoved``. Any other error of a post (throttled, forbidden...) fails the record once
every connection has been tried: SQS delivers it again, then dead-letters it, and the pages that already have it
drop the repeat. An order without connections is counted ``NoListeners``, a success; ``StatusPushes`` counts the
messages posted. A record that is not such an event fails alone, with its reason (``RejectedRecords``).

Environment: CONNECTIONS_TABLE_NAME, WEBSOCKET_ENDPOINT (``https://<api id>.execute-api.<region>.amazonaws.com/<stage>``).
"""

import json
import os
from collections.abc import Iterator
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError

from messaging_runtime import readers
from messaging_runtime.batch import SQS, BatchConsumer
from messaging_runtime.contracts.checkout import ORDER_STATUS_CHANGED, SOURCE, OrderStatusChangedV1

MESSAGE_FIELDS = {"order_id", "seq", "status", "previous_status", "reason", "changed_at"}
TABLE_NAME = os.environ["CONNECTIONS_TABLE_NAME"]

logger = Logger()
tracer = Tracer()
metrics = Metrics()
dynamodb = boto3.client("dynamodb")
management = boto3.client("apigatewaymanagementapi", endpoint_url=os.environ["WEBSOCKET_ENDPOINT"])
consumer = BatchConsumer(
    SQS,
    read=readers.eventbridge_in_sqs(ORDER_STATUS_CHANGED, detail_types=[ORDER_STATUS_CHANGED.name], sources=[SOURCE]),
    logger=logger,
    metrics=metrics,
)


class PushFailed(Exception):
    """Some connections could not be sent the message: the record fails, to be delivered again."""


def message(event: OrderStatusChangedV1) -> bytes:
    """What the page receives: the change, without the customer id."""
    body = {"type": "order_status", **event.model_dump(mode="json", include=MESSAGE_FIELDS)}
    return json.dumps(body, separators=(",", ":")).encode()


def connections(order_id: str) -> Iterator[str]:
    pages = dynamodb.get_paginator("query").paginate(
        TableName=TABLE_NAME,
        KeyConditionExpression="order_id = :order_id",
        ExpressionAttributeValues={":order_id": {"S": order_id}},
        ProjectionExpression="connection_id",
    )
    for page in pages:
        yield from (item["connection_id"]["S"] for item in page["Items"])


def push(event: OrderStatusChangedV1, record: SQSRecord) -> None:
    data, posted, failures = message(event), 0, []
    for connection_id in connections(event.order_id):
        try:
            management.post_to_connection(ConnectionId=connection_id, Data=data)
            posted += 1
        except management.exceptions.GoneException:
            dynamodb.delete_item(TableName=TABLE_NAME, Key={"order_id": {"S": event.order_id}, "connection_id": {"S": connection_id}})
            consumer.count("GoneConnectionsRemoved")
        except (ClientError, BotoCoreError) as error:
            failures.append(f"{connection_id}: {error}")
    if posted == 0 and not failures:
        consumer.count("NoListeners")
    consumer.count("StatusPushes", posted)
    if failures:
        raise PushFailed(f"{len(failures)} of {posted + len(failures)} connections of {event.order_id} not sent seq {event.seq}: {'; '.join(failures)}")


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return consumer.process(event, context, effect=push)
