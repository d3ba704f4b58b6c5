"""Checkout events (Capstone 07-A): an order placed over HTTP and every change of its status.

The order API writes an order and its ``OrderAccepted`` event in one DynamoDB
transaction (the transactional outbox); every later change of the order's
status is written the same way, as ``OrderStatusChanged``. A pipe puts them on
the bus with source ``blueprints.checkout``.

``seq`` numbers an order's events 1, 2, 3... with no gap: it is the order's
version, checked by each transaction. A consumer keeps the highest ``seq`` it
applied and drops one not above it, which makes a redelivered event harmless
and an older one unable to overwrite a newer status.

The request body of ``POST /orders`` is ``PlaceOrderRequest``; the API
validates it with the draft 4 schema made from this model before the handler
runs, and the handler reads it with the model again.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from ._base import Contract, EventKind
from .fields import Amount, Currency, CustomerId, OrderId, UtcTimestamp, WholeNumber
from .orders import MAX_ITEMS, OrderItem

SOURCE = "blueprints.checkout"
_BUS = "EventBridge bus of CapstoneOrders, from the outbox by a pipe"

#: Every status an order can have. The terminal ones end its saga.
Status = Literal["ACCEPTED", "STOCK_RESERVED", "AWAITING_MERCHANT", "CONFIRMED", "COMPENSATING", "COMPENSATED", "CANCELLED", "FAILED"]
TERMINAL = frozenset({"CONFIRMED", "COMPENSATED", "CANCELLED", "FAILED"})

#: The statuses an order may move to from each status: stock reserved, then payment authorized and the merchant asked, then
#: confirmed; any failure (or the customer's cancel) compensates. ``FAILED``: the saga could not finish, a compensation
#: included, after its retries (it alarms and needs a person).
TRANSITIONS: dict[str, frozenset[str]] = {
    "ACCEPTED": frozenset({"STOCK_RESERVED", "COMPENSATING", "FAILED"}),
    "STOCK_RESERVED": frozenset({"AWAITING_MERCHANT", "COMPENSATING", "FAILED"}),
    "AWAITING_MERCHANT": frozenset({"CONFIRMED", "COMPENSATING", "FAILED"}),
    "COMPENSATING": frozenset({"COMPENSATED", "CANCELLED", "FAILED"}),
    "CONFIRMED": frozenset(),
    "COMPENSATED": frozenset(),
    "CANCELLED": frozenset(),
    "FAILED": frozenset(),
}

Reason = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=200)]
Seq = Annotated[int, Field(strict=True, ge=1)]


class PlaceOrderRequest(Contract):
    """The body of ``POST /orders``: what the customer orders. Who orders comes from the caller's identity, never the body."""

    VERSION_FIELD = None

    items: Annotated[list[OrderItem], Field(min_length=1, max_length=MAX_ITEMS)]
    total: Amount
    currency: Currency


class OrderAcceptedV1(Contract):
    """An order was accepted: stored, and its saga about to start. Always ``seq`` 1."""

    version: Annotated[Literal[1], WholeNumber]
    order_id: OrderId
    seq: Literal[1]
    customer_id: CustomerId
    items: Annotated[list[OrderItem], Field(min_length=1, max_length=MAX_ITEMS)]
    total: Amount
    currency: Currency
    accepted_at: UtcTimestamp


class OrderStatusChangedV1(Contract):
    """An order's status changed; ``reason`` says why when it is not the happy path (declined, timed out, cancelled...)."""

    version: Annotated[Literal[1], WholeNumber]
    order_id: OrderId
    seq: Seq
    customer_id: CustomerId
    status: Status
    previous_status: Status
    reason: Reason | None = None
    changed_at: UtcTimestamp


ORDER_ACCEPTED = EventKind("OrderAccepted", OrderAcceptedV1, source=SOURCE, channel=_BUS)
ORDER_STATUS_CHANGED = EventKind("OrderStatusChanged", OrderStatusChangedV1, source=SOURCE, channel=_BUS)

KINDS = (ORDER_ACCEPTED, ORDER_STATUS_CHANGED)


class SagaOrder(PlaceOrderRequest):
    """The order as the saga carries it (its input's ``order``): what was ordered, and by whom."""

    order_id: OrderId
    customer_id: CustomerId


class ReconcileRequest(Contract):
    """What the schedule sends the order reconciler: a request to look for orders past their deadline."""

    version: Annotated[Literal[1], WholeNumber]
    kind: Literal["reconcile"]
