"""The connections of the live order status WebSocket API: its authorizer and its $connect, $disconnect and $default routes.

A page opens ``wss://<api>/<stage>?order_id=o-...&token=...`` with the token the order API gave the customer
(``messaging_runtime.status_tokens``). One function, four roles, told apart by the event:

- the REQUEST authorizer of ``$connect`` (``type`` REQUEST, a ``methodArn``): a well-formed ``order_id`` and that
  order's token allow ``execute-api:Invoke`` on the ``methodArn``, ``principalId`` and ``context.order_id`` the order
  id; anything else is denied (403 to the client), never raised. Only an error of KMS itself raises (500);
- ``$connect``: stores ``order_id``, ``connection_id``, ``connected_at`` and ``expires_at`` (now + the TTL: DynamoDB
  deletes a connection whose ``$disconnect`` never came; API Gateway closes connections after 2 hours anyway); 200;
- ``$disconnect``: deletes it (the order id from the authorizer's context, which every route of the connection
  gets); 200, also when it is already gone;
- ``$default``: pages have nothing to say: 200 with ``{"type": "push_only", ...}``, the body never read.

Metrics: ConnectionsAuthorized, ConnectionsRefused, Connected, Disconnected, ClientMessagesIgnored.
Environment: CONNECTIONS_TABLE_NAME, STATUS_TOKEN_KEY_ID (required); CONNECTION_TTL_SECONDS (default 7200).
"""

import json
import os
import time
from datetime import UTC, datetime
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import TypeAdapter, ValidationError

from messaging_runtime.api_gateway import authorizer_policy
from messaging_runtime.contracts.fields import OrderId
from messaging_runtime.status_tokens import StatusTokens

TABLE_NAME = os.environ["CONNECTIONS_TABLE_NAME"]
TTL_SECONDS = int(os.environ.get("CONNECTION_TTL_SECONDS", "7200"))
if TTL_SECONDS < 1:
    raise ValueError(f"CONNECTION_TTL_SECONDS must be a positive number of seconds, got {TTL_SECONDS}")
PUSH_ONLY = json.dumps({"type": "push_only", "message": "this API only pushes order status; messages sent to it are ignored"})
ORDER_ID = TypeAdapter(OrderId)

logger = Logger()
tracer = Tracer()
metrics = Metrics()
dynamodb = boto3.client("dynamodb")
tokens = StatusTokens(boto3.client("kms"), os.environ["STATUS_TOKEN_KEY_ID"])


def order_id_or_none(value: Any) -> str | None:
    try:
        return ORDER_ID.validate_python(value)
    except ValidationError:
        return None


def authorize(event: dict[str, Any]) -> dict[str, Any]:
    query = event.get("queryStringParameters") or {}
    order_id, token = order_id_or_none(query.get("order_id")), query.get("token")
    if order_id is not None and tokens.verify(order_id, token):
        metrics.add_metric(name="ConnectionsAuthorized", unit=MetricUnit.Count, value=1)
        return {**authorizer_policy("Allow", order_id, event["methodArn"]), "context": {"order_id": order_id}}
    reason = "order_id is not an order id" if order_id is None else "the token is not this order's"
    identity = (event.get("requestContext") or {}).get("identity") or {}
    logger.warning("Connection refused", extra={"reason": reason, "source_ip": identity.get("sourceIp")})
    metrics.add_metric(name="ConnectionsRefused", unit=MetricUnit.Count, value=1)
    return authorizer_policy("Deny", "refused", event["methodArn"])


def connection_key(context: dict[str, Any]) -> dict[str, Any] | None:
    order_id = order_id_or_none((context.get("authorizer") or {}).get("order_id"))
    return None if order_id is None else {"order_id": {"S": order_id}, "connection_id": {"S": context["connectionId"]}}


def connect(context: dict[str, Any]) -> dict[str, Any]:
    key = connection_key(context)
    if key is None:
        logger.error("Connection without an authorized order id: is the authorizer on $connect?")
        metrics.add_metric(name="ConnectionsRefused", unit=MetricUnit.Count, value=1)
        return {"statusCode": 403}
    now = time.time()
    connected_at = datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    item = {**key, "connected_at": {"S": connected_at}, "expires_at": {"N": str(int(now) + TTL_SECONDS)}}
    dynamodb.put_item(TableName=TABLE_NAME, Item=item)
    metrics.add_metric(name="Connected", unit=MetricUnit.Count, value=1)
    return {"statusCode": 200}


def disconnect(context: dict[str, Any]) -> dict[str, Any]:
    key = connection_key(context)
    if key is None:
        logger.warning("Disconnect without an order id: the item, if any, expires with its TTL")
    else:
        dynamodb.delete_item(TableName=TABLE_NAME, Key=key)
    metrics.add_metric(name="Disconnected", unit=MetricUnit.Count, value=1)
    return {"statusCode": 200}


def ignore(context: dict[str, Any]) -> dict[str, Any]:
    metrics.add_metric(name="ClientMessagesIgnored", unit=MetricUnit.Count, value=1)
    return {"statusCode": 200, "body": PUSH_ONLY}


ROUTES = {"$connect": connect, "$disconnect": disconnect, "$default": ignore}


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if event.get("type") == "REQUEST" and "methodArn" in event:
        return authorize(event)
    request = event.get("requestContext") or {}
    route = ROUTES.get(request.get("routeKey"))
    if route is None or not isinstance(request.get("connectionId"), str):
        raise ValueError(f"not an event of this WebSocket API: route {request.get('routeKey')!r}")
    logger.append_keys(route=request["routeKey"], connection_id=request["connectionId"])
    return route(request)
