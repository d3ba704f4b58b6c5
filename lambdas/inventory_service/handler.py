"""Reserve and release stock for orders, and say so on the event bus.

Reads the ``inventory`` queue, which an EventBridge rule fills with the
orders service's events: each message body is a whole EventBridge event.
``OrderPlaced`` and ``OrderCancelled`` are read in versions 1 and 2 of the
order schema (version 1 has no ``items``):

- OrderPlaced: when every SKU of the order asks for at most
  ``MAX_UNITS_PER_SKU`` units (quantities of a SKU listed twice are added
  up), the stock is reserved and ``StockReserved`` is put on the bus with
  the order's items (none for a version 1 order); otherwise ``StockShortage``
  is put on the bus with the SKUs over the limit.
- OrderCancelled: ``StockReleased`` is put on the bus with the order's items.

Events go out with Source ``blueprints.inventory`` through PutEvents. Entries
that EventBridge reports as failed are sent again with exponential backoff and
full jitter, a bounded number of times; if the event still is not on the bus,
the record fails, SQS delivers it again later, and the idempotency record is
removed so that the next delivery does the work.

Idempotency: an archive replay must not reserve stock twice. EventBridge's
documentation says that replayed events carry a ``replay-name`` field (the
archive's managed rule filters on ``"replay-name": [{"exists": false}]``),
but it does not promise that a replayed event keeps its original ``id``; the
EventBridge emulator in moto, whose tests assert the behaviour, gives each
replayed event a new ``id`` and keeps the original ``time`` and ``detail``.
A retried invocation of the orders publisher also puts the same order on the
bus under a new id. So the idempotency key is the business event, not the
EventBridge id: source, detail-type and order id. The version is left out on
purpose, so an order put on the bus once as version 1 and again as version 2
(a producer retry across a deployment) is still reserved once.

A record that cannot be read as one of these events (not JSON, not an
EventBridge event, another source or detail-type, an unknown version, a
detail that breaks the schema) is logged with the reason and reported as a
failed item; after the queue's maximum receives it moves to the dead-letter
queue.

Any other error while reading a record (a record without a body included)
is that record's failure, logged and counted the same way. A record Lambda
never sends (not an object, no ``messageId``) cannot be named in the partial
batch response: the invocation fails with a ValueError that says so.

Environment:
    BUS_NAME                            event bus name or ARN (required)
    IDEMPOTENCY_TABLE_NAME              idempotency table (required)
    IDEMPOTENCY_EXPIRES_AFTER_SECONDS   how long an order stays handled, default 14 days;
                                        keep it at least as long as the archive's retention
    MAX_UNITS_PER_SKU                   largest quantity of one SKU that can be reserved, default 10
    PUT_MAX_ATTEMPTS                    attempts per PutEvents entry, default 3
    PUT_RETRY_BASE_DELAY_SECONDS        first backoff ceiling, default 0.2
"""

import json
import os
import random
import time
from typing import Annotated, Any, Callable, Literal

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictInt,
    StringConstraints,
    Tag,
    TypeAdapter,
    ValidationError,
)

ORDERS_SOURCE = "blueprints.orders"
SOURCE = "blueprints.inventory"
INVENTORY_EVENT_VERSION = 1
# Long enough to cover a message kept for the longest SQS retention (14 days)
# and then redriven from the dead-letter queue.
DEFAULT_EXPIRES_AFTER_SECONDS = 14 * 24 * 3600
MAX_BACKOFF_SECONDS = 5.0
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

BUS_NAME = os.environ["BUS_NAME"]
MAX_UNITS_PER_SKU = int(os.environ.get("MAX_UNITS_PER_SKU", "10"))
MAX_ATTEMPTS = max(1, int(os.environ.get("PUT_MAX_ATTEMPTS", "3")))
RETRY_BASE_DELAY_SECONDS = float(os.environ.get("PUT_RETRY_BASE_DELAY_SECONDS", "0.2"))

logger = Logger()
tracer = Tracer()
metrics = Metrics()
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
eventbridge = boto3.client("events", config=Config(retries={"mode": "standard", "max_attempts": 3}))

# The pause between attempts. Tests replace it to run without waiting.
sleep: Callable[[float], None] = time.sleep


def _on_duplicate(response: Any, data_record: DataRecord) -> Any:
    logger.info("Order already handled, nothing put on the bus", extra={"idempotency_key": data_record.idempotency_key, "result": response})
    metrics.add_metric(name="DuplicateEventsSkipped", unit=MetricUnit.Count, value=1)
    return response


persistence_layer = DynamoDBPersistenceLayer(table_name=os.environ["IDEMPOTENCY_TABLE_NAME"])
idempotency_config = IdempotencyConfig(
    raise_on_no_idempotency_key=True,
    expires_after_seconds=int(os.environ.get("IDEMPOTENCY_EXPIRES_AFTER_SECONDS", DEFAULT_EXPIRES_AFTER_SECONDS)),
    response_hook=_on_duplicate,
)

Sku = Annotated[str, StringConstraints(pattern=r"^SKU-\S+$")]


class Item(BaseModel):
    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")

    sku: Sku
    quantity: Annotated[StrictInt, Field(ge=1)]


class OrderV1(BaseModel):
    """What inventory reads from an order detail; other fields are ignored."""

    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")

    version: Literal[1]
    order_id: Annotated[str, StringConstraints(pattern=r"^o-\S+$")]

    @property
    def order_items(self) -> list[Item]:
        return []


class OrderV2(OrderV1):
    version: Literal[2]
    items: Annotated[list[Item], Field(min_length=1, max_length=50)]

    @property
    def order_items(self) -> list[Item]:
        return self.items


class _OrderEvent(EventBridgeModel):
    source: Literal["blueprints.orders"]


class OrderPlacedV1(_OrderEvent):
    detail_type: Literal["OrderPlaced"] = Field(alias="detail-type")
    detail: OrderV1


class OrderPlacedV2(_OrderEvent):
    detail_type: Literal["OrderPlaced"] = Field(alias="detail-type")
    detail: OrderV2


class OrderCancelledV1(_OrderEvent):
    detail_type: Literal["OrderCancelled"] = Field(alias="detail-type")
    detail: OrderV1


class OrderCancelledV2(_OrderEvent):
    detail_type: Literal["OrderCancelled"] = Field(alias="detail-type")
    detail: OrderV2


OrderEvent = OrderPlacedV1 | OrderPlacedV2 | OrderCancelledV1 | OrderCancelledV2


def event_kind(value: Any) -> str | None:
    """``source/detail-type/v<version>`` of a raw event: which model reads it."""
    if not isinstance(value, dict):
        return None
    detail = value.get("detail")
    version = detail.get("version") if isinstance(detail, dict) else None
    # A JSON true or 1.0 is not a version, though Python compares them equal to 1.
    shown = version if type(version) is int else "?"
    return f"{value.get('source')}/{value.get('detail-type')}/v{shown}"


INVENTORY_EVENT: TypeAdapter[OrderEvent] = TypeAdapter(
    Annotated[
        Annotated[OrderPlacedV1, Tag(f"{ORDERS_SOURCE}/OrderPlaced/v1")]
        | Annotated[OrderPlacedV2, Tag(f"{ORDERS_SOURCE}/OrderPlaced/v2")]
        | Annotated[OrderCancelledV1, Tag(f"{ORDERS_SOURCE}/OrderCancelled/v1")]
        | Annotated[OrderCancelledV2, Tag(f"{ORDERS_SOURCE}/OrderCancelled/v2")],
        Discriminator(event_kind),
    ]
)


class RejectedRecord(ValueError):
    """The record is not an event inventory handles; it stays on the queue and ends in the DLQ."""


class PublishError(RuntimeError):
    """The inventory event did not get on the bus; the record fails and is delivered again."""


def reject(record: SQSRecord, reason: str) -> RejectedRecord:
    logger.error(
        "Rejected record",
        extra={
            "message_id": record.message_id,
            "receive_count": int(record.attributes.approximate_receive_count),
            "reason": reason,
        },
    )
    metrics.add_metric(name="RejectedRecords", unit=MetricUnit.Count, value=1)
    return RejectedRecord(reason)


def parse_event(record: SQSRecord) -> OrderEvent:
    body = record.get("body")
    if not isinstance(body, str):
        raise reject(record, "the record has no body")
    try:
        return parse(event=body, model=INVENTORY_EVENT)
    except ValidationError as exc:
        reason = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'body'}: {error['msg']}" for error in exc.errors(include_url=False, include_input=False)
        )
        raise reject(record, reason) from exc
    except Exception as exc:  # any failure to read one record is that record's failure, never the batch's
        raise reject(record, f"the body cannot be read: {type(exc).__name__}: {exc}") from exc


def idempotency_key(event: OrderEvent) -> str:
    """The business event: the same for a redelivery, a replay and a producer retry."""
    return f"{event.source}/{event.detail_type}/{event.detail.order_id}"


def over_the_limit(items: list[Item]) -> list[str]:
    """The SKUs whose total quantity in the order is more than can be reserved, in order of appearance."""
    totals: dict[str, int] = {}
    for item in items:
        totals[item.sku] = totals.get(item.sku, 0) + item.quantity
    return [sku for sku, quantity in totals.items() if quantity > MAX_UNITS_PER_SKU]


def decide(event: OrderEvent) -> tuple[str, dict[str, Any]]:
    """The inventory event an order event leads to: its detail-type and detail."""
    order = event.detail
    items = [{"sku": item.sku, "quantity": item.quantity} for item in order.order_items]
    if event.detail_type == "OrderCancelled":
        return "StockReleased", {"version": INVENTORY_EVENT_VERSION, "order_id": order.order_id, "items": items}
    missing = over_the_limit(order.order_items)
    if missing:
        return "StockShortage", {"version": INVENTORY_EVENT_VERSION, "order_id": order.order_id, "missing": missing}
    return "StockReserved", {"version": INVENTORY_EVENT_VERSION, "order_id": order.order_id, "items": items}


def backoff_delay(retry: int) -> float:
    """Full jitter: a random pause below an exponentially growing ceiling."""
    ceiling = min(MAX_BACKOFF_SECONDS, RETRY_BASE_DELAY_SECONDS * 2 ** (retry - 1))
    return random.uniform(0, ceiling)


def put_event(detail_type: str, detail: dict[str, Any]) -> str:
    """Put one event on the bus, retrying a failed entry; return its EventBridge id or raise PublishError."""
    entry = {"Source": SOURCE, "DetailType": detail_type, "Detail": json.dumps(detail, separators=(",", ":")), "EventBusName": BUS_NAME}
    reason = ""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        if attempt > 1:
            sleep(backoff_delay(attempt - 1))
        try:
            response = eventbridge.put_events(Entries=[entry])
        except (ClientError, BotoCoreError) as exc:
            # botocore has already retried the call; SQS delivers the record again later.
            raise PublishError(f"{detail_type} not put on the bus: {exc}") from exc
        [result] = response.get("Entries") or [{"ErrorCode": "NoResult", "ErrorMessage": "no result in the response"}]
        if result.get("EventId") and not result.get("ErrorCode"):
            return result["EventId"]
        code = result.get("ErrorCode") or "Unknown"
        reason = f"{code}: {result['ErrorMessage']}" if result.get("ErrorMessage") else code
        if code in NON_RETRYABLE_CODES:
            raise PublishError(f"{detail_type} not put on the bus: {reason}")
        logger.warning("EventBridge did not accept the entry", extra={"attempt": attempt, "detail_type": detail_type, "reason": reason})
    raise PublishError(f"{detail_type} not put on the bus: {reason} (after {MAX_ATTEMPTS} attempts)")


@idempotent_function(data_keyword_argument="idempotency_key", persistence_store=persistence_layer, config=idempotency_config)
def react_once(*, idempotency_key: str, event: OrderEvent) -> dict[str, str]:
    """Decide and publish; once per business event. A raise leaves no record, so a redelivery tries again."""
    detail_type, detail = decide(event)
    event_id = put_event(detail_type, detail)
    logger.info("Inventory event published", extra={"detail_type": detail_type, "published_event_id": event_id})
    metrics.add_metric(name=detail_type, unit=MetricUnit.Count, value=1)
    return {"detail_type": detail_type, "event_id": event_id}


@tracer.capture_method
def record_handler(record: SQSRecord) -> dict[str, str]:
    event = parse_event(record)
    logger.append_keys(order_id=event.detail.order_id, event_id=event.id, replay_name=event.replay_name)
    try:
        return react_once(idempotency_key=idempotency_key(event), event=event)
    except PublishError as exc:
        logger.error("Record failed, SQS will deliver it again", extra={"message_id": record.message_id, "reason": str(exc)})
        metrics.add_metric(name="PublishFailures", unit=MetricUnit.Count, value=1)
        raise
    finally:
        logger.remove_keys(["order_id", "event_id", "replay_name"])


def check_sqs_event(event: Any) -> None:
    """Every record must be one the response can name (by its messageId); the rest of a record is read record by record."""
    records = event.get("Records") if isinstance(event, dict) else None
    if not isinstance(records, list):
        raise ValueError('not an SQS event: expected "Records", a list of records')
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise ValueError(f"not an SQS event: Records[{index}] is {type(record).__name__}, expected a record object")
        if not isinstance(record.get("messageId"), str) or not record["messageId"]:
            raise ValueError(f"not an SQS event: Records[{index}] has no messageId, which names a record in the partial batch response")


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    idempotency_config.register_lambda_context(context)
    check_sqs_event(event)
    response = process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
    # Partial failures are not invocation errors, so they get a metric of their own.
    metrics.add_metric(name="FailedRecords", unit=MetricUnit.Count, value=len(response["batchItemFailures"]))
    return response
