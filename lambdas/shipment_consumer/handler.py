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
  Updates are ordered by a key that cannot tie between distinct updates,
  ``update_key``: ``occurred_at``, then the status's place in the lifecycle
  (picked, packed, shipped, delayed, delivered), then a digest of the
  update's content. The warehouse's clock has whole seconds and its messages
  carry no sequence number, so two status changes can share an
  ``occurred_at``; the key makes the outcome the same whatever order they
  arrive in. An update is written only if the shipment is new or its stored
  key is lower, in one conditional write. The same update again (a
  redelivery, a second publish) changes nothing and counts as
  DuplicateShipmentsSkipped, as does one overtaken by a later update. A
  distinct update of the same time that ranks lower is superseded,
  deliberately and visibly: logged as a warning and counted
  (ShipmentUpdatesSuperseded), whether it arrives after the one that
  outranks it or is overwritten by it. ``carrier`` is kept from an earlier
  update when a later one does not name it. Items written before
  ``update_key`` existed are compared by ``occurred_at`` alone until their
  next write.
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
position in the batch, ``<queue>::<vhost>[<index>]``. A message in a shape
Lambda never sends (not an object, ``basicProperties`` not an object, a
queue's messages not a list) fails the same way, with that reason.

Environment:
    SHIPMENTS_TABLE                 shipments table, partition key shipment_id (S) (required)
    EVENT_BUS_NAME                  event bus name or ARN (required)
    EVENT_SOURCE                    Source of the events put on the bus, default legacy.warehouse
    PUT_MAX_ATTEMPTS                attempts per PutEvents entry within one invocation, default 3
    PUT_RETRY_BASE_DELAY_SECONDS    first backoff ceiling, default 0.2
"""

import base64
import binascii
import hashlib
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
from aws_lambda_powertools.utilities.data_classes.rabbit_mq_event import RabbitMessage
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config
from pydantic import AwareDatetime, BaseModel, ConfigDict, StrictInt, StringConstraints, ValidationError, field_validator

SCHEMA_VERSION = 1
DETAIL_TYPE = "ShipmentDelayed"
# The order of the statuses in a shipment's life: of two updates of the same time, the later status wins.
STATUS_RANK = {"picked": 1, "packed": 2, "shipped": 3, "delayed": 4, "delivered": 5}
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

    @cached_property
    def update_key(self) -> str:
        """What orders updates, without ties between distinct ones: the time, the status's rank, a digest of the content.

        Fixed-width text, so that DynamoDB's text order is this order.
        """
        digest = hashlib.sha256(json.dumps(self.detail(), sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]
        return f"{self.occurred_at_text}#{STATUS_RANK[self.status]}#{digest}"

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


def _properties(message: RabbitMessage) -> dict[str, Any]:
    properties = message.get("basicProperties") or {}
    if not isinstance(properties, dict):
        raise RejectedMessage(f"basicProperties is {type(properties).__name__}, expected an object")
    return properties


def message_body(message: RabbitMessage) -> bytes:
    """The message body, decoded from base64, after a check of what the AMQP properties say it is."""
    properties = _properties(message)
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
    """Write the update if it is the latest of its shipment: (written, the values it replaced or the stored item that outranks it)."""
    names = {"#status": "status"}
    values: dict[str, Any] = {
        ":order_id": {"S": update.order_id},
        ":status": {"S": update.status},
        ":occurred_at": {"S": update.occurred_at_text},
        ":message_id": {"S": message_id},
        ":update_key": {"S": update.update_key},
    }
    assignments = ["order_id = :order_id", "#status = :status", "occurred_at = :occurred_at", "message_id = :message_id", "update_key = :update_key"]
    if update.carrier is not None:
        assignments.append("carrier = :carrier")
        values[":carrier"] = {"S": update.carrier}
    expression = "SET " + ", ".join(assignments)
    if update.status == "delayed":
        expression += " ADD unbridged_delays :delay"
        values[":delay"] = {"SS": [update.occurred_at_text]}
    try:
        replaced = dynamodb.update_item(
            TableName=TABLE_NAME,
            Key={"shipment_id": {"S": update.shipment_id}},
            UpdateExpression=expression,
            ConditionExpression=(
                "attribute_not_exists(shipment_id) OR update_key < :update_key OR (attribute_not_exists(update_key) AND occurred_at < :occurred_at)"
            ),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
            ReturnValues="ALL_OLD",
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
    except dynamodb.exceptions.ConditionalCheckFailedException as exc:
        return False, exc.response.get("Item", {})
    return True, replaced.get("Attributes", {})


def _text(item: dict[str, Any], name: str) -> str | None:
    return item.get(name, {}).get("S")


def is_same_update(update: ShipmentUpdate, stored: dict[str, Any]) -> bool:
    """Whether the stored item holds this very update (an item written before update_key: the same time and status)."""
    key = _text(stored, "update_key")
    if key is None:
        return _text(stored, "occurred_at") == update.occurred_at_text and _text(stored, "status") == update.status
    return key == update.update_key


def superseded(kept_status: str | None, superseded_status: str | None, update: ShipmentUpdate) -> None:
    """A distinct update of the same time lost to one that ranks higher: not an error, but never silent."""
    logger.warning(
        "Shipment update superseded by another of the same time",
        extra={"occurred_at": update.occurred_at_text, "kept_status": kept_status, "superseded_status": superseded_status},
    )
    metrics.add_metric(name="ShipmentUpdatesSuperseded", unit=MetricUnit.Count, value=1)


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
    except Exception as exc:  # any failure to read one message is that message's rejection
        metrics.add_metric(name="RejectedMessages", unit=MetricUnit.Count, value=1)
        raise RejectedMessage(f"message cannot be read: {type(exc).__name__}: {exc}") from exc
    logger.append_keys(shipment_id=update.shipment_id, status=update.status, occurred_at=update.occurred_at_text)
    try:
        written, stored = record(update, message_id)
        same_time = _text(stored, "occurred_at") == update.occurred_at_text
        if written:
            logger.info("Shipment status recorded")
            metrics.add_metric(name="ShipmentsRecorded", unit=MetricUnit.Count, value=1)
            if same_time:  # it outranks a distinct update of the same time, recorded before it
                superseded(update.status, _text(stored, "status"), update)
            if update.status != "delayed":
                return "recorded"
            bridge(update)
            return "recorded and bridged"
        if same_time and not is_same_update(update, stored):
            superseded(_text(stored, "status"), update.status, update)
            outcome = "superseded"
        else:
            logger.info("Shipment update not newer than the stored one, skipped", extra={"stored_occurred_at": stored.get("occurred_at", {}).get("S")})
            metrics.add_metric(name="DuplicateShipmentsSkipped", unit=MetricUnit.Count, value=1)
            outcome = "skipped"
        if update.status == "delayed" and update.occurred_at_text in stored.get("unbridged_delays", {}).get("SS", []):
            # Written by an earlier delivery whose PutEvents failed (and outranked since, maybe): forward it now.
            bridge(update)
            return "bridged on redelivery"
        return outcome
    finally:
        logger.remove_keys(["shipment_id", "status", "occurred_at"])


def message_label(queue: str, index: int, message: RabbitMessage) -> str:
    """The AMQP message_id when the publisher set one, else the message's queue and place in the batch."""
    properties = message.get("basicProperties")
    message_id = properties.get("messageId") if isinstance(properties, dict) else None
    return message_id if isinstance(message_id, str) and message_id else f"{queue}[{index}]"


def malformed(label: str, reason: str) -> MessageFailure:
    """A message in a shape Lambda never sends: rejected by its place in the batch."""
    logger.error("Message failed", extra={"message_id": label, "reason": reason})
    metrics.add_metric(name="RejectedMessages", unit=MetricUnit.Count, value=1)
    return MessageFailure(message_id=label, reason=reason)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if not isinstance(event, dict) or not isinstance(event.get("rmqMessagesByQueue"), dict):
        raise ValueError("not an Amazon MQ for RabbitMQ event: no rmqMessagesByQueue object")
    failures: list[MessageFailure] = []
    outcomes: dict[str, int] = {}
    total = 0
    for queue, messages in event["rmqMessagesByQueue"].items():
        if not isinstance(messages, list):
            total += 1
            failures.append(malformed(queue, f"the messages are {type(messages).__name__}, expected a list"))
            continue
        for index, raw in enumerate(messages):
            total += 1
            if not isinstance(raw, dict):
                failures.append(malformed(f"{queue}[{index}]", f"not a message object ({type(raw).__name__})"))
                continue
            message = RabbitMessage(raw)
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
