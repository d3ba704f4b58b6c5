"""Charge placed orders, once per order.

Reads the ``billing`` queue, whose subscription only lets ``OrderPlaced``
events through. SNS and SQS deliver at least once, and a producer retry can
publish the same order under a new event id, so the charge is made
idempotent on the order id: the first delivery charges and stores the
invoice in the idempotency table, later ones get the stored invoice back.

A record that cannot be read as a placed order is logged with the reason and
reported as a failed item; after the queue's maximum receives it moves to the
dead-letter queue.

Any other error while reading a record (a record without a body included)
is that record's failure, logged and counted the same way. A record Lambda
never sends (not an object, no ``messageId``) cannot be named in the partial
batch response: the invocation fails with a ValueError that says so.

Environment:
    IDEMPOTENCY_TABLE_NAME              idempotency table (required)
    IDEMPOTENCY_EXPIRES_AFTER_SECONDS   how long an order stays charged, default 14 days
"""

import os
from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID

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
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StringConstraints,
    ValidationError,
    field_validator,
)

SCHEMA_VERSION = 1
# Long enough to cover a message kept for the longest SQS retention (14 days)
# and then redriven from the dead-letter queue.
DEFAULT_EXPIRES_AFTER_SECONDS = 14 * 24 * 3600

logger = Logger()
tracer = Tracer()
metrics = Metrics()
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def _on_duplicate(response: Any, data_record: DataRecord) -> Any:
    logger.info(
        "Order already charged, returning the stored invoice",
        extra={"idempotency_key": data_record.idempotency_key},
    )
    metrics.add_metric(name="DuplicateOrdersSkipped", unit=MetricUnit.Count, value=1)
    return response


persistence_layer = DynamoDBPersistenceLayer(table_name=os.environ["IDEMPOTENCY_TABLE_NAME"])
idempotency_config = IdempotencyConfig(
    event_key_jmespath="order_id",
    raise_on_no_idempotency_key=True,
    expires_after_seconds=int(os.environ.get("IDEMPOTENCY_EXPIRES_AFTER_SECONDS", DEFAULT_EXPIRES_AFTER_SECONDS)),
    response_hook=_on_duplicate,
)


def _json_number(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise ValueError("must be a number")
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


class PlacedOrder(BaseModel):
    """What billing reads from an OrderPlaced event; other fields are ignored."""

    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")

    event_id: UUID
    event_type: Literal["OrderPlaced"]
    version: StrictInt
    order_id: Annotated[str, StringConstraints(pattern=r"^o-\S+$")]
    customer_id: Annotated[str, StringConstraints(pattern=r"^c-\S+$")]
    total: Annotated[Decimal, BeforeValidator(_json_number), Field(ge=0, allow_inf_nan=False)]
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]

    @field_validator("version")
    @classmethod
    def _supported_version(cls, value: int) -> int:
        if value != SCHEMA_VERSION:
            raise ValueError(f"unsupported version {value}, expected {SCHEMA_VERSION}")
        return value


class RejectedRecord(ValueError):
    """The record cannot be billed as it is; it stays on the queue and ends in the DLQ."""


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


def parse_order(record: SQSRecord) -> PlacedOrder:
    body = record.get("body")
    if not isinstance(body, str):
        raise reject(record, "the record has no body")
    try:
        return PlacedOrder.model_validate_json(body)
    except ValidationError as exc:
        reason = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'body'}: {error['msg']}" for error in exc.errors(include_url=False, include_input=False)
        )
        raise reject(record, reason) from exc
    except Exception as exc:  # any failure to read one record is that record's failure, never the batch's
        raise reject(record, f"the body cannot be read: {type(exc).__name__}: {exc}") from exc


def charge(order: PlacedOrder) -> dict[str, str]:
    """The side effect billing exists for: charge the customer, return the invoice."""
    invoice = {
        "invoice_id": f"inv-{order.order_id}",
        "order_id": order.order_id,
        "customer_id": order.customer_id,
        "amount": str(order.total),
        "currency": order.currency,
    }
    logger.info("Order charged", extra=invoice)
    metrics.add_metric(name="OrdersCharged", unit=MetricUnit.Count, value=1)
    return invoice


@idempotent_function(data_keyword_argument="order", persistence_store=persistence_layer, config=idempotency_config)
def charge_once(order: PlacedOrder) -> dict[str, str]:
    return charge(order)


@tracer.capture_method
def record_handler(record: SQSRecord) -> dict[str, str]:
    order = parse_order(record)
    logger.append_keys(order_id=order.order_id, event_id=str(order.event_id))
    try:
        return charge_once(order=order)
    finally:
        logger.remove_keys(["order_id", "event_id"])


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
