"""Order events: on the event bus (Exercise 02, versions 1 and 2) and as SNS messages (Exercise 01, version 1).

On the bus, ``OrderPlaced`` and ``OrderCancelled`` have source
``blueprints.orders``; the detail is the order. Version 2 added the order's
items, which every consumer needs to reserve stock; that made it a new
version, and an upcaster turns a version 1 order (still in the archive, and
replayable) into version 2.

On the SNS topics of Exercise 01 the message body carries its own envelope
(``event_id``, ``event_type``, ``occurred_at``), as SNS has none, next to the
order's version 1 fields; ``ORDER_MESSAGES`` reads either type.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal
from uuid import UUID

from pydantic import Field

from ._base import Contract, EventKind, OneOf
from .fields import Amount, Currency, CustomerId, OrderId, Quantity, Sku, Timestamp, WholeNumber

SOURCE = "blueprints.orders"
#: Most lines one order may have.
MAX_ITEMS = 50


class OrderItem(Contract):
    """One line of an order: a SKU and how many of it."""

    sku: Sku
    quantity: Quantity


class OrderV1(Contract):
    """An order in version 1 of the order schema: who ordered, and for how much."""

    version: Annotated[Literal[1], WholeNumber]
    order_id: OrderId
    customer_id: CustomerId
    total: Amount
    currency: Currency


class OrderV2(OrderV1):
    """An order in version 2: version 1 and the order's lines."""

    version: Annotated[Literal[2], WholeNumber]  # type: ignore[assignment]
    items: Annotated[list[OrderItem], Field(min_length=1, max_length=MAX_ITEMS)]
    """1 to 50 lines. Empty only in an order upcast from version 1, which never listed them (``received_version`` 1)."""


class OrderPlacedV1(OrderV1):
    """An order was placed (version 1)."""


class OrderPlacedV2(OrderV2):
    """An order was placed (version 2, current)."""


class OrderCancelledV1(OrderV1):
    """An order was cancelled (version 1)."""


class OrderCancelledV2(OrderV2):
    """An order was cancelled (version 2, current)."""


#: The current versions, by the names producers use.
OrderPlaced = OrderPlacedV2
OrderCancelled = OrderCancelledV2


def _without_items(target: type[OrderV2]) -> Callable[[OrderV1], OrderV2]:
    def upcast(order: OrderV1) -> OrderV2:
        # Built without validating again: every field was checked as version 1, and an order read as
        # version 1 is the one version 2 order allowed no items (``parse`` marks it ``received_version`` 1).
        return target.Consumer.model_construct(**{**order.model_dump(), "version": 2, "items": []})

    upcast.__doc__ = f"A version 1 order as {target.__name__}: the same order, with no items (version 1 never listed them)."
    return upcast


ORDER_PLACED = EventKind(
    "OrderPlaced",
    OrderPlacedV2,
    older=(OrderPlacedV1,),
    upcasters={1: _without_items(OrderPlacedV2)},
    source=SOURCE,
    channel="EventBridge bus of Exercise02EventBridge",
)
ORDER_CANCELLED = EventKind(
    "OrderCancelled",
    OrderCancelledV2,
    older=(OrderCancelledV1,),
    upcasters={1: _without_items(OrderCancelledV2)},
    source=SOURCE,
    channel="EventBridge bus of Exercise02EventBridge",
)


class OrderMessage(OrderV1):
    """An order event as an SNS message: the order (version 1) with the envelope SNS does not give it."""

    event_id: UUID
    """Unique per event; the FIFO topic's deduplication id. A producer's retry of the same event keeps it."""
    event_type: str
    occurred_at: Timestamp


class OrderPlacedMessageV1(OrderMessage):
    """An order was placed, as Exercise 01's topics carry it."""

    event_type: Literal["OrderPlaced"]


class OrderCancelledMessageV1(OrderMessage):
    """An order was cancelled, as Exercise 01's topics carry it."""

    event_type: Literal["OrderCancelled"]


_SNS = "SNS topics orders and orders.fifo of Exercise01Queues, to SQS queues"
ORDER_PLACED_MESSAGE = EventKind("OrderPlacedMessage", OrderPlacedMessageV1, channel=_SNS)
ORDER_CANCELLED_MESSAGE = EventKind("OrderCancelledMessage", OrderCancelledMessageV1, channel=_SNS)
#: Either order message, by its ``event_type``.
ORDER_MESSAGES = OneOf("event_type", {"OrderPlaced": ORDER_PLACED_MESSAGE, "OrderCancelled": ORDER_CANCELLED_MESSAGE})


def message_attributes(message: OrderMessage) -> dict[str, dict[str, str]]:
    """The SNS message attributes an order message is published with: ``event_type``, which subscription filters match."""
    return {"event_type": {"DataType": "String", "StringValue": message.event_type}}


KINDS = (ORDER_PLACED, ORDER_CANCELLED, ORDER_PLACED_MESSAGE, ORDER_CANCELLED_MESSAGE)
