"""Inventory events on the Exercise 02 bus: what inventory did about an order, and restock requests from the warehouse.

``StockReserved``, ``StockReleased`` and ``StockShortage`` have source
``blueprints.inventory``. ``RestockRequested`` has source ``blueprints.warehouse``:
a pipe puts it on the bus from the ``restock`` messages of a work queue, whose
body is the same document (the pipe's input template copies its five fields).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from ._base import Contract, EventKind
from .fields import OrderId, Quantity, Sku, WholeNumber
from .orders import MAX_ITEMS, OrderItem

SOURCE = "blueprints.inventory"
WAREHOUSE_SOURCE = "blueprints.warehouse"
_BUS = "EventBridge bus of Exercise02EventBridge"


class StockMovedV1(Contract):
    """Stock moved for an order: its lines, as the order listed them."""

    version: Annotated[Literal[1], WholeNumber]
    order_id: OrderId
    items: Annotated[list[OrderItem], Field(max_length=MAX_ITEMS)]
    """The order's lines; none for an order placed in version 1, which did not list them."""


class StockReservedV1(StockMovedV1):
    """Stock was reserved for every line of a placed order."""


class StockReleasedV1(StockMovedV1):
    """The stock of a cancelled order was released."""


class StockShortageV1(Contract):
    """A placed order asks for more of some SKUs than can be reserved; nothing was reserved."""

    version: Annotated[Literal[1], WholeNumber]
    order_id: OrderId
    missing: Annotated[list[Sku], Field(min_length=1, max_length=MAX_ITEMS)]
    """The SKUs over the limit, in the order they first appear in the order."""


class RestockRequestedV1(Contract):
    """The warehouse asks for a SKU to be restocked."""

    version: Annotated[Literal[1], WholeNumber]
    kind: Literal["restock"]
    """What the work message asks for; the pipe passes only ``restock`` messages."""
    request_id: Annotated[str, StringConstraints(strict=True, pattern=r"^[A-Za-z0-9_.:-]{1,128}$")]
    """The request's own id, the same on every delivery of the work message: what a consumer drops duplicates on.
    The pipe writes it inside a JSON string, so it keeps to characters that need no escaping."""
    sku: Sku
    quantity: Quantity


STOCK_RESERVED = EventKind("StockReserved", StockReservedV1, source=SOURCE, channel=_BUS)
STOCK_RELEASED = EventKind("StockReleased", StockReleasedV1, source=SOURCE, channel=_BUS)
STOCK_SHORTAGE = EventKind("StockShortage", StockShortageV1, source=SOURCE, channel=_BUS)
RESTOCK_REQUESTED = EventKind(
    "RestockRequested", RestockRequestedV1, source=WAREHOUSE_SOURCE, channel="work queue of Exercise02EventBridge, then a pipe to its bus"
)

KINDS = (STOCK_RESERVED, STOCK_RELEASED, STOCK_SHORTAGE, RESTOCK_REQUESTED)
