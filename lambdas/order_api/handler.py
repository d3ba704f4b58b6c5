"""The order API (API Gateway REST API, Lambda proxy integration): place an order, read it, ask to cancel it.

The customer is the caller: the ``sub`` claim of a Cognito user pool authorizer, else the caller's IAM ARN (neither:
401). ``POST /orders`` needs an ``Idempotency-Key`` header (1 to 64 of ``[A-Za-z0-9_-]``) that names the order: its id
comes from the customer and the key, and the order is written with its ``OrderAccepted`` event in one transaction
(``messaging_runtime.checkout``). The 202 answer (``order_id``, ``status`` ACCEPTED, ``accepted_at``, ``link``, and
``status_token`` for the live status WebSocket; a ``Location`` header) is built from the stored order only, so a retry
gets the same bytes; the key reused for another
request is 422; a body ``PlaceOrderRequest`` refuses is 400 with each field's place and message. ``GET /orders/{id}``
is the caller's order (a consistent read); ``POST /orders/{id}/cancel`` marks it for cancelling (202; the saga
compensates at its next step), 409 with its status once terminal. Another customer's order is 404, as an unknown one.
Other errors are logged with the request id: 500, generic message. Metrics: OrdersAccepted, OrderRepeats, OrdersRefused.

Environment: ORDERS_TABLE_NAME, OUTBOX_TABLE_NAME (required); ORDER_DEADLINE_SECONDS (1800: the time the saga has);
STATUS_TOKEN_KEY_ID (the HMAC key of the status tokens; without it the answer has none).
"""

import json
import os
import re
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from messaging_runtime.api_gateway import Refused, handle_errors, idempotency_key, principal, read_body
from messaging_runtime.checkout import OrderStore, TransitionRefused, customer_id_of, order_id_for, request_hash
from messaging_runtime.contracts.checkout import ORDER_ACCEPTED, PlaceOrderRequest
from messaging_runtime.outbox import Outbox
from messaging_runtime.status_tokens import StatusTokens

ORDER_ID = re.compile(r"o-[A-Za-z0-9_-]{1,64}")
DEADLINE_SECONDS = int(os.environ.get("ORDER_DEADLINE_SECONDS", "1800"))
NO_SUCH_ORDER = "no such order"

logger = Logger()
tracer = Tracer()
metrics = Metrics()
client = boto3.client("dynamodb")
store = OrderStore(client, os.environ["ORDERS_TABLE_NAME"], Outbox(os.environ["OUTBOX_TABLE_NAME"]))
tokens = StatusTokens(boto3.client("kms"), os.environ["STATUS_TOKEN_KEY_ID"]) if os.environ.get("STATUS_TOKEN_KEY_ID") else None


def json_number(value: Decimal) -> int | float:
    """DynamoDB's numbers as JSON numbers (Powertools' default serializer writes a Decimal as a string)."""
    return int(value) if value == value.to_integral_value() else float(value)


app = APIGatewayRestResolver(serializer=lambda body: json.dumps(body, separators=(",", ":"), default=json_number))


def answer(status: int, body: dict[str, Any], **headers: str) -> Response:
    return Response(status_code=status, content_type="application/json", body=body, headers=headers)


def customer() -> str:
    return customer_id_of(principal(app))


def place(customer_id: str, key: str, request: PlaceOrderRequest) -> tuple[bool, dict[str, Any]]:
    now, digest = time.time(), request_hash(request)
    fields = {"items": request.items, "total": request.total, "currency": request.currency, "accepted_at": datetime.fromtimestamp(now, UTC)}
    order = ORDER_ACCEPTED.current(version=1, order_id=order_id_for(customer_id, key), seq=1, customer_id=customer_id, **fields)
    placed, stored = store.place(order, idempotency_key=key, request_digest=digest, deadline_seconds=DEADLINE_SECONDS, now=now)
    if not placed and stored["request_hash"] != digest:
        raise Refused(422, {"message": "this Idempotency-Key was already used for another order; use a new key for a new order"})
    return placed, stored


@app.post("/orders")
def place_order() -> Response:
    try:
        placed, order = place(customer(), idempotency_key(app), read_body(app, PlaceOrderRequest, "a valid order"))
    except Refused:
        metrics.add_metric(name="OrdersRefused", unit=MetricUnit.Count, value=1)
        raise
    metrics.add_metric(name="OrdersAccepted" if placed else "OrderRepeats", unit=MetricUnit.Count, value=1)
    link = f"/orders/{order['order_id']}"
    body = {"order_id": order["order_id"], "status": "ACCEPTED", "accepted_at": order["accepted_at"], "link": link}
    if tokens is not None:  # the order's live-status subscription (deterministic: a retry gets the same one)
        body["status_token"] = tokens.issue(order["order_id"])
    return answer(202, body, Location=link)


@app.get("/orders/<order_id>")
def get_order(order_id: str) -> Response:
    customer_id = customer()
    order = store.get(order_id) if ORDER_ID.fullmatch(order_id) else None
    if order is None or order["customer_id"] != customer_id:
        raise Refused(404, {"message": NO_SUCH_ORDER})
    shown = {name: order.get(name) for name in ("order_id", "status", "seq", "items", "total", "currency", "reason", "accepted_at", "updated_at")}
    return answer(200, {**shown, "cancel_requested": bool(order.get("cancel_requested"))})


@app.post("/orders/<order_id>/cancel")
def cancel_order(order_id: str) -> Response:
    customer_id = customer()
    if not ORDER_ID.fullmatch(order_id):
        raise Refused(404, {"message": NO_SUCH_ORDER})
    try:
        order = store.request_cancel(order_id, customer_id)
    except TransitionRefused as refused:
        if refused.reason == NO_SUCH_ORDER:
            raise Refused(404, {"message": NO_SUCH_ORDER}) from None
        status = (store.get(order_id) or {}).get("status")
        raise Refused(409, {"message": f"the order can no longer be cancelled: it is {status}", "order_id": order_id, "status": status}) from None
    return answer(202, {"order_id": order_id, "status": order["status"], "cancel_requested": True})


handle_errors(app, logger, answer)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
