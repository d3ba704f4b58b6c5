"""Publish shipment updates to the warehouse's RabbitMQ exchange.

Invoked directly with ``{"shipments": [update, ...]}`` (1 to 100), each update a ``ShipmentUpdate``
(``contracts.shipments``) except that ``occurred_at`` may be in any time zone: it goes on in UTC.
Every update is validated before anything is sent, so a bad request publishes nothing and fails
with a ValueError that names each bad update by its index, with the reason; the same update twice
(shipment, status and time) is one of them.

Each update goes to the exchange ``EXCHANGE_NAME`` with the routing key ``shipment.<status>``, as
a persistent JSON message whose ``message_id`` is derived from the shipment, the status and the
time (not the carrier): the same update published again has the same id, so consumers can drop
duplicates. ``messaging_runtime.amqp`` keeps one connection per execution environment (TLS, the
broker secret read again once if the broker refuses it, retries with backoff) on a channel in
confirm mode, and publishes ``mandatory``: a message counts as sent once the broker confirmed it.
Updates go in order and publishing stops at the first one not confirmed (unroutable, nacked,
refused, or lost with the connection): the invocation fails with a PublishError that says how many
were confirmed before it, which one failed and why, and how many were not sent. The response,
``{"published": n, "message_ids": [...]}``, lists confirmed messages only. The exchange belongs to
the broker's definitions: the function only checks, once per channel, that it exists.

Environment: EXCHANGE_NAME (required), and the broker's (``AmqpSettings.from_environment``):
BROKER_HOST, BROKER_SECRET_ARN (required), BROKER_PORT (default 5671), BROKER_TLS (default true),
VIRTUAL_HOST (default /), SECRET_MAX_AGE_SECONDS (default 300).
"""

import os
import time
import uuid
from datetime import timezone
from typing import Any

import pika
import pika.exceptions
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from messaging_runtime.amqp import AmqpClient, AmqpSettings, BrokerError, PublishNotConfirmed
from messaging_runtime.contracts.fields import Timestamp
from messaging_runtime.contracts.shipments import ShipmentUpdateV1
from messaging_runtime.rejection import validation_reason

MAX_SHIPMENTS = 100
# Fixed namespace for the message ids (uuid5), so that an update always gets the same id.
MESSAGE_ID_NAMESPACE = uuid.UUID("8c4f6a0e-5b3d-4f7e-a1c2-3d9e7b6f0a15")
EXCHANGE_NAME = os.environ["EXCHANGE_NAME"]

logger = Logger()
tracer = Tracer()
metrics = Metrics()


class RequestedUpdate(ShipmentUpdateV1):
    """A shipment update as the request may give it: ``occurred_at`` in any time zone."""

    occurred_at: Timestamp


class PublishError(Exception):
    """Publishing stopped at an update the broker did not confirm; ``confirmed_message_ids`` are the ones before it."""

    def __init__(self, confirmed_message_ids: list[str], failed_index: int, total: int, update: ShipmentUpdateV1, reason: str):
        self.confirmed_message_ids = confirmed_message_ids
        self.not_sent = total - failed_index - 1
        super().__init__(
            f"{len(confirmed_message_ids)} of {total} shipment update(s) confirmed by the broker before shipments[{failed_index}] "
            f"({update.shipment_id} {update.status}) failed: {reason}; {self.not_sent} later update(s) not sent"
        )


def check_exchange(channel: Any) -> None:
    try:
        channel.exchange_declare(EXCHANGE_NAME, passive=True)
    except pika.exceptions.ChannelClosedByBroker as exc:
        raise BrokerError(f"exchange {EXCHANGE_NAME!r} is not usable in virtual host {broker.settings.virtual_host!r}: {exc.reply_text}") from exc


broker = AmqpClient(AmqpSettings.from_environment(), logger=logger, on_new_channel=check_exchange)


def message_id(update: ShipmentUpdateV1) -> str:
    return str(uuid.uuid5(MESSAGE_ID_NAMESPACE, f"{update.shipment_id}|{update.status}|{update.occurred_at.isoformat().replace('+00:00', 'Z')}"))


def validate_request(event: Any) -> list[ShipmentUpdateV1]:
    """The request's updates, in UTC; a ValueError naming every bad one otherwise."""
    items = event.get("shipments") if isinstance(event, dict) else None
    if not isinstance(items, list) or not items:
        raise ValueError('the request must be an object with a non-empty "shipments" list')
    if len(items) > MAX_SHIPMENTS:
        raise ValueError(f"{len(items)} shipments in one request, at most {MAX_SHIPMENTS}")
    problems: list[str] = []
    first: dict[str, int] = {}  # message id -> the index of its first update
    updates: list[ShipmentUpdateV1] = []
    for index, item in enumerate(items):
        try:
            requested = RequestedUpdate.model_validate(item)
        except ValidationError as exc:
            problems.append(f"shipments[{index}]: {validation_reason(exc, root='shipment')}")
            continue
        update = ShipmentUpdateV1.model_validate({**dict(requested), "occurred_at": requested.occurred_at.astimezone(timezone.utc)})
        if first.setdefault(message_id(update), index) != index:
            problems.append(f"shipments[{index}]: the same update as shipments[{first[message_id(update)]}]")
        updates.append(update)
    if problems:
        raise ValueError(f"{len(problems)} invalid shipment update(s), nothing published: " + "; ".join(problems))
    return updates


def publish_all(updates: list[ShipmentUpdateV1], confirmed: list[str]) -> None:
    """Publish the updates in order, adding each confirmed one's message id to ``confirmed``; PublishError at the first that is not."""
    for index, update in enumerate(updates):
        properties = pika.BasicProperties(
            content_type="application/json",
            delivery_mode=pika.DeliveryMode.Persistent,
            message_id=message_id(update),
            timestamp=int(time.time()),
            type=update.routing_key,
        )
        try:
            broker.publish(EXCHANGE_NAME, update.routing_key, update.model_dump_json(exclude_none=True).encode(), properties)
        except (PublishNotConfirmed, BrokerError) as exc:
            if isinstance(exc, BrokerError) and not confirmed:
                raise  # no channel: nothing was sent
            raise PublishError(confirmed, index, len(updates), update, getattr(exc, "reason", str(exc))) from exc
        confirmed.append(properties.message_id)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        updates = validate_request(event)
    except ValueError as exc:
        logger.error("Request refused, nothing published", extra={"reason": str(exc)})
        metrics.add_metric(name="RequestsRefused", unit=MetricUnit.Count, value=1)
        raise
    confirmed: list[str] = []
    try:
        publish_all(updates, confirmed)
    except (PublishError, BrokerError) as exc:
        logger.error("Shipment updates not all confirmed", extra={"reason": str(exc), "confirmed_message_ids": confirmed})
        raise
    finally:
        metrics.add_metric(name="ShipmentUpdatesPublished", unit=MetricUnit.Count, value=len(confirmed))
        metrics.add_metric(name="ShipmentUpdatesNotConfirmed", unit=MetricUnit.Count, value=len(updates) - len(confirmed))
    logger.info("Shipment updates published", extra={"published": len(confirmed), "exchange": EXCHANGE_NAME})
    return {"published": len(confirmed), "message_ids": confirmed}
