"""The schema registry content of Exercise 02: generated from the event contracts, one schema per event type and version."""

from __future__ import annotations

from messaging_runtime.contracts.inventory import RESTOCK_REQUESTED, STOCK_RELEASED, STOCK_RESERVED, STOCK_SHORTAGE
from messaging_runtime.contracts.orders import ORDER_CANCELLED, ORDER_PLACED
from messaging_runtime.contracts.reports import DAILY_REPORT_REQUESTED
from messaging_runtime.contracts.schemas import registry_schemas

#: Every event that goes on the Exercise 02 bus; each of its versions gets a schema.
EVENT_KINDS = (ORDER_PLACED, ORDER_CANCELLED, STOCK_RESERVED, STOCK_RELEASED, STOCK_SHORTAGE, DAILY_REPORT_REQUESTED, RESTOCK_REQUESTED)


def event_schemas() -> dict[str, str]:
    """Registry schema name (``<source>@<detail-type>.v<version>``) to JSON Schema draft 4 content."""
    return registry_schemas(EVENT_KINDS)
