"""The order saga's status steps: move an order to its next status, with its event, in one transaction.

Invoked by the saga (``lambda:invoke``) with ``{"order_id": ..., "to": <status>}``,
or ``{"order_id": ..., "to": "COMPENSATING", "error": {"Error": ..., "Cause": ...}}``
when a step failed (the error names the reason the customer sees), or
``{"order_id": ..., "to": "FINISHED"}`` once the compensations ran: the order is
then CANCELLED if the customer asked, else COMPENSATED. An order compensated
already (by a second saga: the reconciler's) stays as it is. A CONFIRMED one
answers COMPENSATING with ``SagaAlreadyCompleted``: its confirmation was
written, whatever error the saga saw afterwards (the function timing out
after the write, a reconciler's saga racing the merchant's answer), so the
saga ends succeeded and nothing undoes it.

Errors the state machine tells apart: ``OrderCancelled`` (the customer asked to
cancel before this step forward: compensate) and ``TransitionNotAllowed`` (the
order is not where the saga thinks: a bug, not retried). The write is
idempotent: an order already in the status asked for is returned unchanged.

Environment: ORDERS_TABLE_NAME, OUTBOX_TABLE_NAME (required).
"""

import os
import time
from datetime import datetime
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from messaging_runtime.checkout import OrderStore, TransitionRefused
from messaging_runtime.contracts.checkout import TERMINAL, TRANSITIONS
from messaging_runtime.outbox import Outbox
from messaging_runtime.saga_steps import InvalidSagaInput, SagaAlreadyCompleted

#: What the customer is told for each error a saga step can end with.
REASONS = {
    "StockShortage": "some items are out of stock",
    "ReservationReleased": "the stock reservation was released",
    "PaymentDeclined": "the payment was declined",
    "PaymentProviderUnavailable": "the payment provider is unavailable",
    "MerchantDeclined": "the merchant declined the order",
    "States.Timeout": "the merchant did not answer in time",
    "States.HeartbeatTimeout": "the merchant did not answer in time",
    "OrderCancelled": "cancelled by the customer",
    "OrderExpired": "the order passed its deadline",
}

logger = Logger()
tracer = Tracer()
metrics = Metrics()
store = OrderStore(boto3.client("dynamodb"), os.environ["ORDERS_TABLE_NAME"], Outbox(os.environ["OUTBOX_TABLE_NAME"]))


class OrderCancelled(Exception):
    """The customer asked to cancel: the saga compensates instead of stepping forward."""


class TransitionNotAllowed(Exception):
    """The order is unknown or not in a status this step may leave."""


def reason_for(error: Any) -> str:
    name = error.get("Error") if isinstance(error, dict) else None
    return REASONS.get(name, f"the order failed ({name or 'unknown error'})")


def step(event: Any) -> dict[str, Any]:
    if not isinstance(event, dict) or not isinstance(event.get("order_id"), str) or not isinstance(event.get("to"), str):
        raise InvalidSagaInput(f'expected {{"order_id": "o-...", "to": <status>}}, got {str(event)[:200]}')
    order_id, to, now = event["order_id"], event["to"], time.time()
    if to in ("COMPENSATING", "FINISHED", "FAILED"):
        order = store.get(order_id)
        if order is None:
            raise TransitionNotAllowed(f"order {order_id}: no such order")
        # Compensated already (a second saga, the reconciler's, got there first): its compensations are no-ops, and so is this.
        if order["status"] in ("COMPENSATED", "CANCELLED") or (to == "FAILED" and order["status"] in TERMINAL):
            return order
        if to == "COMPENSATING" and order["status"] == "CONFIRMED":
            raise SagaAlreadyCompleted(f"order {order_id} is CONFIRMED: nothing to compensate")
        if to == "FINISHED":
            to = "CANCELLED" if order.get("cancel_requested") or order.get("reason") == REASONS["OrderCancelled"] else "COMPENSATED"
            return store.change_status(order_id, to, honour_cancel=False, now=now)
    if to not in TRANSITIONS:
        raise InvalidSagaInput(f"unknown status {to!r}; the statuses are {', '.join(TRANSITIONS)}")
    reason = reason_for(event["error"]) if "error" in event else None
    try:
        return store.change_status(order_id, to, reason=reason, honour_cancel=to not in ("COMPENSATING", "FAILED"), now=now)
    except TransitionRefused as refused:
        if refused.cancel_requested:
            raise OrderCancelled(str(refused)) from None
        raise TransitionNotAllowed(str(refused)) from None


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    try:
        order = step(event)
    except SagaAlreadyCompleted as done:
        logger.info("Saga already completed", extra={"order_id": event["order_id"], "reason": str(done)})
        raise
    except (OrderCancelled, TransitionNotAllowed, InvalidSagaInput) as error:
        logger.warning("Status step refused", extra={"error": type(error).__name__, "reason": str(error)})
        raise
    metrics.add_dimension(name="status", value=order["status"])
    metrics.add_metric(name="OrderStatusChanges", unit=MetricUnit.Count, value=1)
    if order["status"] == "CONFIRMED":  # the business KPI: from accepted to confirmed, merchant included
        accepted = datetime.fromisoformat(order["accepted_at"]).timestamp()
        metrics.add_metric(name="TimeToConfirm", unit=MetricUnit.Milliseconds, value=max(0.0, (time.time() - accepted) * 1000))
    logger.info("Order status", extra={"order_id": order["order_id"], "status": order["status"], "seq": int(order["seq"])})
    return {"order_id": order["order_id"], "status": order["status"], "seq": int(order["seq"])}
