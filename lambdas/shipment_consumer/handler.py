"""Record the warehouse's shipment updates; put delays on the event bus.

The legacy warehouse system publishes one JSON message per shipment status
change to a RabbitMQ queue over AMQP 0-9-1. Lambda's RabbitMQ event source
mapping reads the queue and invokes this function with a batch:
``{"eventSource": "aws:rmq", "rmqMessagesByQueue": {"<queue>::<vhost>": [message, ...]}}``,
each message with its AMQP ``basicProperties``, a ``redelivered`` flag and
its body base64-encoded in ``data``. The body must be a shipment update in
schema version 1::

    {"schema_version": 1, "shipment_id": "s-...", "order_id": "o-...",
     "status": "picked" | "packed" | "shipped" | "delayed" | "delivered",
     "occurred_at": "<ISO 8601 time in UTC>", "carrier": "..."}   (carrier optional)

and when the message states a content type or encoding, they must say JSON
or text, in UTF-8.

Effect, once per shipment update:

- The table keeps the latest status of each shipment (key ``shipment_id``).
  An update is written only if the shipment is new or its stored
  ``occurred_at`` is earlier, in one conditional write. An update as old as
  the stored one or older (a redelivery, a second publish of the same
  update, an update overtaken by a later one) changes nothing and counts as
  DuplicateShipmentsSkipped. ``carrier`` is kept from an earlier update when
  a later one does not name it.
- A ``delayed`` update that was written is also put on the event bus as
  ``ShipmentDelayed``, so that cloud-native services can react. The write
  adds the update's time to the item's ``unbridged_delays`` set, and the
  time is taken out of the set only once PutEvents has accepted the event.
  So a skipped update is never forwarded; if PutEvents fails after the
  write, the message fails, the batch comes back, the write is skipped as a
  duplicate and, the time being still in the set, the event is forwarded
  then, once. A later update of the same shipment written in between sets
  the status and leaves the set alone, so the delay is not lost. One window
  remains: PutEvents accepted the event and taking the time out of the set
  failed; the redelivery then forwards it a second time. EventBridge
  delivers at least once in any case, so rule targets should be idempotent
  on ``shipment_id`` and ``occurred_at``. Lambda runs one batch at a time per
  RabbitMQ event source mapping, so two deliveries of one update do not race.

Failures: Amazon MQ event source mappings have no partial batch response; an
invocation succeeds or fails as a whole. So every message of the batch is
handled, and if any failed (bad input, or a DynamoDB or EventBridge error)
the invocation raises one BatchFailed that lists each failed message and
its reason. The broker then redelivers the whole batch: the messages that
went through are skipped as duplicates, and once the queue's delivery limit
is reached, the broker dead-letters the messages through the queue's
dead-letter exchange (a policy the infrastructure sets). A message is named
by its AMQP ``message_id`` when the publisher set one, else by its queue and
position in the batch, ``<queue>::<vhost>[<index>]``.

Environment:
    SHIPMENTS_TABLE                 shipments table, partition key shipment_id (S) (required)
    EVENT_BUS_NAME                  event bus name or ARN (required)
    EVENT_SOURCE                    Source of the events put on the bus, default legacy.warehouse
    PUT_MAX_ATTEMPTS                attempts per PutEvents entry within one invocation, default 3
    PUT_RETRY_BASE_DELAY_SECONDS    first backoff ceiling, default 0.2
"""

import base64
import binascii
import json
import os
import random
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from typing import Annotated, Any, Callable, Literal

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes.rabbit_mq_event import RabbitMessage, RabbitMQEvent
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config
from pydantic import AwareDatetime, BaseModel, ConfigDict, StrictInt, StringConstraints, ValidationError, field_validator

SCHEMA_VERSION = 1
DETAIL_TYPE = "ShipmentDelayed"
MAX_BACKOFF_SECONDS = 5.0
MAX_REASON_CHARS = 500
# Entry error codes that the PutEvents reference lists as not retryable.
NON_RETRYABLE_CODES = frozenset(
    {
        "AccessDeniedException",
        "InvalidAccountIdException",
        "InvalidArgument",
        "MalformedDetail",
        "RedactionFailure",
        "NotAuthorizedForSourceException",
        "NotAuthorizedForDetailTypeException",
    }
)

TABLE_NAME = os.environ["SHIPMENTS_TABLE"]
EVENT_BUS_NAME = os.environ["EVENT_BUS_NAME"]
EVENT_SOURCE = os.environ.get("EVENT_SOURCE", "legacy.warehouse")
MAX_ATTEMPTS = max(1, int(os.environ.get("PUT_MAX_ATTEMPTS", "3")))
RETRY_BASE_DELAY_SECONDS = float(os.environ.get("PUT_RETRY_BASE_DELAY_SECONDS", "0.2"))

logger = Logger()
tracer = Tracer()
metrics = Metrics()
dynamodb = boto3.client("dynamodb", config=Config(retries={"mode": "standard", "max_attempts": 3}))
eventbridge = boto3.client("events", config=Config(retries={"mode": "standard", "max_attempts": 3}))

# The pause between PutEvents attempts. Tests replace it to run without waiting.
sleep: Callable[[float], None] = time.sleep


def utc_text(moment: datetime) -> str:
    """A UTC time in one fixed-width form, so that text order is time order (DynamoDB compares it as text)."""
    return moment.astimezone(timezone.utc).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


class ShipmentUpdate(BaseModel):
    """One status change of one shipment, as the warehouse publishes it; other fields are ignored."""

    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")

    schema_version: StrictInt
    shipment_id: Annotated[str, StringConstraints(pattern=r"^s-\S+$", max_length=128)]
    order_id: Annotated[str, StringConstraints(pattern=r"^o-\S+$", max_length=128)]
    status: Literal["picked", "packed", "shipped", "delayed", "delivered"]
    occurred_at: AwareDatetime
    carrier: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None

    @field_validator("schema_version")
    @classmethod
    def _supported_version(cls, value: int) -> int:
        if value != SCHEMA_VERSION:
            raise ValueError(f"unsupported schema_version {value}, expected {SCHEMA_VERSION}")
        return value

    @field_validator("occurred_at")
    @classmethod
    def _in_utc(cls, value: datetime) -> datetime:
        if value.utcoffset():
            raise ValueError(f"must be a UTC time (Z or +00:00), got offset {value.isoformat()[-6:]}")
        return value

    @cached_property
    def occurred_at_text(self) -> str:
        return utc_text(self.occurred_at)

    def detail(self) -> dict[str, Any]:
        """The update as the event bus carries it."""
        detail = {
            "schema_version": self.schema_version,
            "shipment_id": self.shipment_id,
            "order_id": self.order_id,
            "status": self.status,
            "occurred_at": self.occurred_at_text,
        }
        if self.carrier is not None:
            detail["carrier"] = self.carrier
        return detail


class RejectedMessage(ValueError):
    """The message is not a shipment update this function can read; the batch fails and the broker ends by dead-lettering it."""


class BridgeFailed(RuntimeError):
    """EventBridge did not take the ShipmentDelayed event; the batch fails and its redelivery forwards it."""


@dataclass(frozen=True)
class MessageFailure:
    message_id: str
    reason: str


class BatchFailed(RuntimeError):
    """Some messages of the batch failed. Amazon MQ has no partial batch response, so the whole batch is redelivered."""

    def __init__(self, failures: list[MessageFailure], total: int) -> None:
        self.failures = failures
        self.failed_message_ids = [failure.message_id for failure in failures]
        listed = "; ".join(f"{failure.message_id}: {failure.reason[:MAX_REASON_CHARS]}" for failure in failures)
        super().__init__(f"{len(failures)} of {total} messages failed; the broker redelivers the batch: {listed}")


def _json_media_type(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type in ("application/json", "text/plain", "text/json") or media_type.endswith("+json")


def message_body(message: RabbitMessage) -> bytes:
    """The message body, decoded from base64, after a check of what the AMQP properties say it is."""
    properties = message.get("basicProperties") or {}
    content_type = properties.get("contentType")
    if content_type is not None and not _json_media_type(str(content_type)):
        raise RejectedMessage(f"content type {content_type!r} is not JSON or text")
    content_encoding = properties.get("contentEncoding")
    if content_encoding is not None and str(content_encoding).lower() not in ("utf-8", "utf8", "identity"):
        raise RejectedMessage(f"content encoding {content_encoding!r} is not supported (only UTF-8 text)")
    data = message.get("data")
    if not isinstance(data, str):
        raise RejectedMessage("message has no base64 data")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RejectedMessage(f"data is not base64: {exc}") from exc


def parse_update(body: bytes) -> ShipmentUpdate:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RejectedMessage(f"body is not UTF-8 text: {exc}") from exc
    try:
        return ShipmentUpdate.model_validate_json(text)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        if errors and errors[0]["type"] == "json_invalid":
            raise RejectedMessage(f"body is not JSON: {errors[0]['msg']}") from exc
        reason = "; ".join(f"{'.'.join(str(part) for part in error['loc']) or 'body'}: {error['msg']}" for error in errors)
        raise RejectedMessage(f"not a shipment update: {reason}") from exc


def put_delay_on_bus(update: ShipmentUpdate) -> str:
    """Put the ShipmentDelayed event on the bus; returns its event id. Failed entries are retried a few times."""
    entry = {
        "Source": EVENT_SOURCE,
        "DetailType": DETAIL_TYPE,
        "Detail": json.dumps(update.detail(), separators=(",", ":")),
        "EventBusName": EVENT_BUS_NAME,
        "Time": update.occurred_at,
    }
    for attempt in range(1, MAX_ATTEMPTS + 1):
        result = eventbridge.put_events(Entries=[entry])["Entries"][0]
        if result.get("EventId") and not result.get("ErrorCode"):
            return result["EventId"]
        code = result.get("ErrorCode", "NoEventId")
        if code in NON_RETRYABLE_CODES or attempt == MAX_ATTEMPTS:
            raise BridgeFailed(f"PutEvents did not take the {DETAIL_TYPE} event after {attempt} attempt(s): {code}: {result.get('ErrorMessage', '')}")
        logger.warning("PutEvents entry failed, retrying", extra={"error_code": code, "attempt": attempt})
        sleep(random.uniform(0, min(MAX_BACKOFF_SECONDS, RETRY_BASE_DELAY_SECONDS * 2 ** (attempt - 1))))
    raise AssertionError("unreachable")  # the loop returns or raises


def record(update: ShipmentUpdate, message_id: str) -> tuple[bool, dict[str, Any]]:
    """Write the update if it is the latest of its shipment: (written, stored item when not written)."""
    names = {"#status": "status"}
    values: dict[str, Any] = {
        ":order_id": {"S": update.order_id},
        ":status": {"S": update.status},
        ":occurred_at": {"S": update.occurred_at_text},
        ":message_id": {"S": message_id},
    }
    assignments = ["order_id = :order_id", "#status = :status", "occurred_at = :occurred_at", "message_id = :message_id"]
    if update.carrier is not None:
        assignments.append("carrier = :carrier")
        values[":carrier"] = {"S": update.carrier}
    expression = "SET " + ", ".join(assignments)
    if update.status == "delayed":
        expression += " ADD unbridged_delays :delay"
        values[":delay"] = {"SS": [update.occurred_at_text]}
    try:
        dynamodb.update_item(
            TableName=TABLE_NAME,
            Key={"shipment_id": {"S": update.shipment_id}},
            UpdateExpression=expression,
            ConditionExpression="attribute_not_exists(shipment_id) OR occurred_at < :occurred_at",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
    except dynamodb.exceptions.ConditionalCheckFailedException as exc:
        return False, exc.response.get("Item", {})
    return True, {}


def mark_bridged(update: ShipmentUpdate) -> None:
    dynamodb.update_item(
        TableName=TABLE_NAME,
        Key={"shipment_id": {"S": update.shipment_id}},
        UpdateExpression="DELETE unbridged_delays :delay",
        ExpressionAttributeValues={":delay": {"SS": [update.occurred_at_text]}},
    )


def bridge(update: ShipmentUpdate) -> None:
    event_id = put_delay_on_bus(update)
    mark_bridged(update)
    logger.info("Shipment delay put on the event bus", extra={"event_id": event_id})
    metrics.add_metric(name="ShipmentsBridged", unit=MetricUnit.Count, value=1)


@tracer.capture_method
def message_handler(message: RabbitMessage, message_id: str) -> str:
    """Handle one message; returns what was done: recorded, recorded and bridged, skipped, or bridged on redelivery."""
    try:
        update = parse_update(message_body(message))
    except RejectedMessage:
        metrics.add_metric(name="RejectedMessages", unit=MetricUnit.Count, value=1)
        raise
    logger.append_keys(shipment_id=update.shipment_id, status=update.status, occurred_at=update.occurred_at_text)
    try:
        written, stored = record(update, message_id)
        if written:
            logger.info("Shipment status recorded")
            metrics.add_metric(name="ShipmentsRecorded", unit=MetricUnit.Count, value=1)
            if update.status != "delayed":
                return "recorded"
            bridge(update)
            return "recorded and bridged"
        logger.info("Shipment update not newer than the stored one, skipped", extra={"stored_occurred_at": stored.get("occurred_at", {}).get("S")})
        metrics.add_metric(name="DuplicateShipmentsSkipped", unit=MetricUnit.Count, value=1)
        if update.status == "delayed" and update.occurred_at_text in stored.get("unbridged_delays", {}).get("SS", []):
            # Written by an earlier delivery whose PutEvents failed: forward it now.
            bridge(update)
            return "bridged on redelivery"
        return "skipped"
    finally:
        logger.remove_keys(["shipment_id", "status", "occurred_at"])


def message_label(queue: str, index: int, message: RabbitMessage) -> str:
    """The AMQP message_id when the publisher set one, else the message's queue and place in the batch."""
    properties = message.get("basicProperties") or {}
    message_id = properties.get("messageId")
    return message_id if isinstance(message_id, str) and message_id else f"{queue}[{index}]"


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if not isinstance(event, dict) or not isinstance(event.get("rmqMessagesByQueue"), dict):
        raise ValueError("not an Amazon MQ for RabbitMQ event: no rmqMessagesByQueue object")
    batch = RabbitMQEvent(event)
    failures: list[MessageFailure] = []
    outcomes: dict[str, int] = {}
    total = 0
    for queue, messages in batch.rmq_messages_by_queue.items():
        for index, message in enumerate(messages):
            total += 1
            message_id = message_label(queue, index, message)
            logger.append_keys(message_id=message_id, queue=queue, redelivered=message.get("redelivered"))
            try:
                outcome = message_handler(message, message_id)
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
            except Exception as exc:  # every failure is listed; the batch fails after the last message
                reason = str(exc) if isinstance(exc, RejectedMessage) else f"{type(exc).__name__}: {exc}"
                logger.error(
                    "Message failed",
                    extra={"message_id": message_id, "queue": queue, "redelivered": message.get("redelivered"), "reason": reason},
                    exc_info=not isinstance(exc, RejectedMessage),
                )
                failures.append(MessageFailure(message_id=message_id, reason=reason))
            finally:
                logger.remove_keys(["message_id", "queue", "redelivered"])
    if failures:
        raise BatchFailed(failures, total)
    return {"messages": total, **outcomes}
