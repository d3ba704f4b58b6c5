"""The event contracts: one pydantic model per event type and version, in one place.

Import a domain's module for its events (``from messaging_runtime.contracts.orders
import ORDER_PLACED``); this package imports none of them until ``kind`` or
``kinds`` is called, so a handler loads only the domains it uses.

- ``orders``: OrderPlaced, OrderCancelled (bus, versions 1 and 2); the SNS order messages;
- ``inventory``: StockReserved, StockReleased, StockShortage, RestockRequested;
- ``reports``: DailyReportRequested;
- ``shipments``: ShipmentUpdate (RabbitMQ), ShipmentDelayed (bus);
- ``quotes``: QuoteRequest, QuoteReply, QuoteError (AMQP request and reply);
- ``invoices``: Invoice (ActiveMQ), InvoiceIssued, InvoicePaid, InvoiceVoided (bus);
- ``accounts``: the event store's items, AccountOpened, MoneyDeposited, MoneyWithdrawn, AccountClosed;
- ``clicks``: Click (MSK);
- ``checkout``: OrderAccepted, OrderStatusChanged (Capstone 07-A) and the order API's request;
- ``fields``: the field types they share; ``schemas``: draft 4 schemas for the registry.

Each model is the producer's view (unknown fields refused); ``Model.Consumer``
is the consumer's (unknown fields ignored). An ``EventKind`` is one event
type through its versions: ``kind.parse(data)`` reads any of them and returns
the current one, upcast. ``docs/schema-evolution.md`` has the rules.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Mapping
from typing import Any

from ._base import Contract, EventKind, OneOf, Upcaster

__all__ = ["Contract", "EventKind", "OneOf", "Upcaster", "DOMAINS", "bus_kind", "kind", "kinds", "parse"]

#: The domain modules, each with a ``KINDS`` tuple.
DOMAINS = (
    "orders",
    "inventory",
    "reports",
    "shipments",
    "quotes",
    "invoices",
    "accounts",
    "clicks",
    "checkout",
    "analytics",
    "viewing",
    "listening",
    "bookings",
)


@functools.cache
def kinds() -> dict[str, EventKind[Any]]:
    """Every event kind of every domain, by name."""
    found: dict[str, EventKind[Any]] = {}
    for domain in DOMAINS:
        for event_kind in importlib.import_module(f"{__name__}.{domain}").KINDS:
            if event_kind.name in found:
                raise ValueError(f"two event kinds are named {event_kind.name}")
            found[event_kind.name] = event_kind
    return found


def kind(name: str) -> EventKind[Any]:
    """The event kind called ``name`` (``OrderPlaced``, ``Click``...); KeyError naming the known ones otherwise."""
    try:
        return kinds()[name]
    except KeyError:
        raise KeyError(f"no event kind {name!r}; the known ones are {', '.join(sorted(kinds()))}") from None


def bus_kind(source: str, detail_type: str) -> EventKind[Any] | None:
    """The event kind an EventBridge event of ``source`` and ``detail_type`` is, or None."""
    return next((k for k in kinds().values() if k.source == source and k.detail_type == detail_type), None)


def parse(event_kind: str | EventKind[Any], data: str | bytes | bytearray | Mapping[str, Any]) -> Contract:
    """``data`` (JSON text or decoded values) as the current version of ``event_kind`` (a kind or its name), upcast if older.

    Raises pydantic's ValidationError when the data is not JSON, names a version the kind does not read, or breaks its rules.
    """
    return (kind(event_kind) if isinstance(event_kind, str) else event_kind).parse(data)
