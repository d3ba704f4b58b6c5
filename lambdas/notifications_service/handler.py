"""Send one notification per business event seen on the event bus.

Reads the ``notifications`` queue, which an EventBridge rule fills with every
``blueprints.*`` event except ``StockReleased``: each message body is a whole
EventBridge event. The function knows these events, and only these:

==================== ====================== ======== =====================
source               detail-type            versions notification kind
==================== ====================== ======== =====================
blueprints.orders    OrderPlaced            1, 2     order_placed
blueprints.orders    OrderCancelled         1, 2     order_cancelled
blueprints.inventory StockReserved          1        stock_reserved
blueprints.inventory StockShortage          1        stock_shortage
blueprints.scheduler DailyReportRequested   1        daily_report
blueprints.warehouse RestockRequested       1        restock_requested
==================== ====================== ======== =====================

Anything else (not JSON, not an EventBridge event, another source,
detail-type or version, a detail that breaks its schema, a StockReleased that
got past the rule) is logged with the reason and reported as a failed item;
after the queue's maximum receives it moves to the dead-letter queue.

Idempotency: EventBridge does not promise that an archive replay keeps the
original event ``id`` (the emulator in moto gives replayed events a new id
and keeps ``time`` and ``detail``; EventBridge adds ``replay-name``), and a
retried producer puts the same business event on the bus under a new id. So
each notification is keyed on the business event: source, detail-type and

- the order id, for order and stock events;
- the report and the UTC day of the event's ``time``, for the daily report
  (one report per day, however often the schedule fires that day);
- the request id the work message carries, for a restock request: the
  pipe puts the message on the bus with a new event ``id`` and ``time`` each
  time it delivers it, so only the request's own id recognises a retry.

Any other error while reading a record (a record without a body included)
is that record's failure, logged and counted the same way. A record Lambda
never sends (not an object, no ``messageId``) cannot be named in the partial
batch response: the invocation fails with a ValueError that says so.

Environment:
    IDEMPOTENCY_TABLE_NAME              idempotency table (required)
    IDEMPOTENCY_EXPIRES_AFTER_SECONDS   how long a notification counts as sent, default 14 days;
                                        keep it at least as long as the archive's retention
"""

import os
from datetime import datetime, timezone
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal, Union

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
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StrictInt,
    StringConstraints,
    Tag,
    TypeAdapter,
    ValidationError,
)

# Long enough to cover a message kept for the longest SQS retention (14 days)
# and then redriven from the dead-letter queue.
DEFAULT_EXPIRES_AFTER_SECONDS = 14 * 24 * 3600

logger = Logger()
tracer = Tracer()
metrics = Metrics()
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def _on_duplicate(response: Any, data_record: DataRecord) -> Any:
    logger.info("Notification already sent, not sending it again", extra={"idempotency_key": data_record.idempotency_key})
    metrics.add_metric(name="DuplicateEventsSkipped", unit=MetricUnit.Count, value=1)
    return response


persistence_layer = DynamoDBPersistenceLayer(table_name=os.environ["IDEMPOTENCY_TABLE_NAME"])
idempotency_config = IdempotencyConfig(
    raise_on_no_idempotency_key=True,
    expires_after_seconds=int(os.environ.get("IDEMPOTENCY_EXPIRES_AFTER_SECONDS", DEFAULT_EXPIRES_AFTER_SECONDS)),
    response_hook=_on_duplicate,
)


def _json_number(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise ValueError("must be a number")
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


OrderId = Annotated[str, StringConstraints(pattern=r"^o-\S+$")]
Sku = Annotated[str, StringConstraints(pattern=r"^SKU-\S+$")]
Quantity = Annotated[StrictInt, Field(ge=1)]


class _Detail(BaseModel):
    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")


class Item(_Detail):
    sku: Sku
    quantity: Quantity


class OrderV1(_Detail):
    version: Literal[1]
    order_id: OrderId
    customer_id: Annotated[str, StringConstraints(pattern=r"^c-\S+$")]
    total: Annotated[Decimal, BeforeValidator(_json_number), Field(ge=0, allow_inf_nan=False)]
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]


class OrderV2(OrderV1):
    version: Literal[2]
    items: Annotated[list[Item], Field(min_length=1, max_length=50)]


class StockReservedV1(_Detail):
    version: Literal[1]
    order_id: OrderId
    items: list[Item]  # empty for an order placed in version 1


class StockShortageV1(_Detail):
    version: Literal[1]
    order_id: OrderId
    missing: Annotated[list[Sku], Field(min_length=1)]


class DailyReportV1(_Detail):
    version: Literal[1]
    report: Literal["daily"]


class RestockV1(_Detail):
    version: Literal[1]
    kind: Literal["restock"]
    request_id: Annotated[str, Field(min_length=1, max_length=128)]
    sku: Sku
    quantity: Quantity


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


class _KnownEvent(EventBridgeModel):
    """An event this function notifies about: its kind, its business key and what the notification says."""

    KIND: ClassVar[str]

    def business_key(self) -> str:
        return self.detail.order_id

    def payload(self) -> dict[str, Any]:
        return self.detail.model_dump(mode="json", exclude={"version"})


class _OrderEvent(_KnownEvent):
    source: Literal["blueprints.orders"]


class OrderPlacedV1(_OrderEvent):
    KIND = "order_placed"
    detail_type: Literal["OrderPlaced"] = Field(alias="detail-type")
    detail: OrderV1


class OrderPlacedV2(OrderPlacedV1):
    detail: OrderV2


class OrderCancelledV1(_OrderEvent):
    KIND = "order_cancelled"
    detail_type: Literal["OrderCancelled"] = Field(alias="detail-type")
    detail: OrderV1


class OrderCancelledV2(OrderCancelledV1):
    detail: OrderV2


class StockReserved(_KnownEvent):
    KIND = "stock_reserved"
    source: Literal["blueprints.inventory"]
    detail_type: Literal["StockReserved"] = Field(alias="detail-type")
    detail: StockReservedV1


class StockShortage(_KnownEvent):
    KIND = "stock_shortage"
    source: Literal["blueprints.inventory"]
    detail_type: Literal["StockShortage"] = Field(alias="detail-type")
    detail: StockShortageV1


class DailyReportRequested(_KnownEvent):
    KIND = "daily_report"
    source: Literal["blueprints.scheduler"]
    detail_type: Literal["DailyReportRequested"] = Field(alias="detail-type")
    detail: DailyReportV1

    def business_key(self) -> str:
        return f"{self.detail.report}/{_utc(self.time).date().isoformat()}"

    def payload(self) -> dict[str, Any]:
        return {"report": self.detail.report, "day": _utc(self.time).date().isoformat()}


class RestockRequested(_KnownEvent):
    KIND = "restock_requested"
    source: Literal["blueprints.warehouse"]
    detail_type: Literal["RestockRequested"] = Field(alias="detail-type")
    detail: RestockV1

    def business_key(self) -> str:
        return self.detail.request_id

    def payload(self) -> dict[str, Any]:
        return {"request_id": self.detail.request_id, "sku": self.detail.sku, "quantity": self.detail.quantity}


KNOWN_EVENTS: dict[str, type[_KnownEvent]] = {
    "blueprints.orders/OrderPlaced/v1": OrderPlacedV1,
    "blueprints.orders/OrderPlaced/v2": OrderPlacedV2,
    "blueprints.orders/OrderCancelled/v1": OrderCancelledV1,
    "blueprints.orders/OrderCancelled/v2": OrderCancelledV2,
    "blueprints.inventory/StockReserved/v1": StockReserved,
    "blueprints.inventory/StockShortage/v1": StockShortage,
    "blueprints.scheduler/DailyReportRequested/v1": DailyReportRequested,
    "blueprints.warehouse/RestockRequested/v1": RestockRequested,
}


def event_kind(value: Any) -> str | None:
    """``source/detail-type/v<version>`` of a raw event: which model reads it."""
    if not isinstance(value, dict):
        return None
    detail = value.get("detail")
    version = detail.get("version") if isinstance(detail, dict) else None
    # A JSON true or 1.0 is not a version, though Python compares them equal to 1.
    shown = version if type(version) is int else "?"
    return f"{value.get('source')}/{value.get('detail-type')}/v{shown}"


# The tagged union is built from the table above, so the two cannot drift apart.
NOTIFICATION_EVENT: TypeAdapter[_KnownEvent] = TypeAdapter(
    Annotated[Union[tuple(Annotated[model, Tag(tag)] for tag, model in KNOWN_EVENTS.items())], Discriminator(event_kind)]
)


class RejectedRecord(ValueError):
    """The record is not an event this function knows; it stays on the queue and ends in the DLQ."""


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


def parse_event(record: SQSRecord) -> _KnownEvent:
    body = record.get("body")
    if not isinstance(body, str):
        raise reject(record, "the record has no body")
    try:
        return parse(event=body, model=NOTIFICATION_EVENT)
    except ValidationError as exc:
        reason = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'body'}: {error['msg']}" for error in exc.errors(include_url=False, include_input=False)
        )
        raise reject(record, reason) from exc
    except Exception as exc:  # any failure to read one record is that record's failure, never the batch's
        raise reject(record, f"the body cannot be read: {type(exc).__name__}: {exc}") from exc


def idempotency_key(event: _KnownEvent) -> str:
    """The business event: the same for a redelivery, a replay and a producer retry."""
    return f"{event.source}/{event.detail_type}/{event.business_key()}"


def notify(kind: str, payload: dict[str, Any]) -> None:
    """The side effect this function exists for: tell the people concerned."""
    logger.info("Notification sent", extra={"kind": kind, "payload": payload})
    metrics.add_metric(name="NotificationsSent", unit=MetricUnit.Count, value=1)


@idempotent_function(data_keyword_argument="idempotency_key", persistence_store=persistence_layer, config=idempotency_config)
def notify_once(*, idempotency_key: str, kind: str, payload: dict[str, Any]) -> dict[str, str]:
    notify(kind, payload)
    return {"kind": kind}


@tracer.capture_method
def record_handler(record: SQSRecord) -> dict[str, str]:
    event = parse_event(record)
    logger.append_keys(event_id=event.id, detail_type=event.detail_type, replay_name=event.replay_name)
    try:
        return notify_once(idempotency_key=idempotency_key(event), kind=event.KIND, payload=event.payload())
    finally:
        logger.remove_keys(["event_id", "detail_type", "replay_name"])


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
