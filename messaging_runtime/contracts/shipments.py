"""Shipment updates: the warehouse's AMQP messages on RabbitMQ, and the delays bridged to the Exercise 05 bus.

The warehouse publishes one ``ShipmentUpdate`` per status change to the
``shipments`` exchange with routing key ``shipment.<status>``; the queue
``shipment-updates`` receives them all. The consumer puts each delay on the
bus as ``ShipmentDelayed`` (source ``legacy.warehouse``), with the update as
the detail.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import StringConstraints

from ._base import Contract, EventKind
from .fields import OrderId, ShipmentId, UtcTimestamp, WholeNumber

SOURCE = "legacy.warehouse"

#: A shipment's statuses, in the order they happen.
Status = Literal["picked", "packed", "shipped", "delayed", "delivered"]


class ShipmentUpdateV1(Contract):
    """One status change of one shipment."""

    VERSION_FIELD = "schema_version"

    schema_version: Annotated[Literal[1], WholeNumber]
    shipment_id: ShipmentId
    order_id: OrderId
    status: Status
    occurred_at: UtcTimestamp
    """When the status changed; the warehouse's clock has whole seconds, so two changes can share it."""
    carrier: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=128)] | None = None
    """Who carries the shipment, when the update names one; absent and null mean the same."""

    @property
    def routing_key(self) -> str:
        """The AMQP routing key the update is published with."""
        return f"shipment.{self.status}"


class ShipmentDelayedV1(ShipmentUpdateV1):
    """A shipment is delayed: the warehouse's update, bridged to the event bus."""

    status: Literal["delayed"]


SHIPMENT_UPDATE = EventKind("ShipmentUpdate", ShipmentUpdateV1, channel="RabbitMQ exchange shipments, queue shipment-updates (Exercise05EnterpriseMessaging)")
SHIPMENT_DELAYED = EventKind("ShipmentDelayed", ShipmentDelayedV1, source=SOURCE, channel="EventBridge bus of Exercise05EnterpriseMessaging")

KINDS = (SHIPMENT_UPDATE, SHIPMENT_DELAYED)
