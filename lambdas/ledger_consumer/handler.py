"""Post order events to the customer ledger, in order.

Reads the FIFO ``ledger.fifo`` queue, grouped by customer. Order matters
within a customer (a cancellation must follow the placement it reverses), so
when a record fails, that record and every later record *of the same
customer* in the batch are reported as failed, and SQS hands them back in the
same order on the next receive. Other customers' records are still posted:
one poison message holds back only its own customer.

A record that cannot be read as an order event, or whose message group is
not its customer, is logged with the reason and reported as a failed item.

Any other error while reading a record (a record without a body included)
is that record's failure, logged and counted the same way. A record Lambda
never sends (not an object, no ``messageId``) cannot be named in the partial
batch response: the invocation fails with a ValueError that says so.
"""

from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
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

logger = Logger()
tracer = Tracer()
metrics = Metrics()
# After a failure, the rest of that customer's records in the batch are
# reported as failed (so they are retried in order); other customers' records
# go on being processed, so one poison message cannot push healthy messages of
# other customers towards the DLQ.
processor = SqsFifoPartialProcessor(skip_group_on_error=True)
# If every record fails, report them all as failed items rather than failing
# the invocation: the outcome for SQS is the same, and the response stays the
# one place that says what happened.
processor.raise_on_entire_batch_failure = False


def _json_number(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise ValueError("must be a number")
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


class LedgerEvent(BaseModel):
    """An order event as the ledger posts it; other fields are ignored."""

    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")

    event_id: UUID
    event_type: Literal["OrderPlaced", "OrderCancelled"]
    version: StrictInt
    order_id: str = Field(min_length=1)
    customer_id: str = Field(min_length=1)
    total: Annotated[Decimal, BeforeValidator(_json_number), Field(ge=0, allow_inf_nan=False)]
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]

    @field_validator("version")
    @classmethod
    def _supported_version(cls, value: int) -> int:
        if value != SCHEMA_VERSION:
            raise ValueError(f"unsupported version {value}, expected {SCHEMA_VERSION}")
        return value


class RejectedRecord(ValueError):
    """The record cannot be posted; it and the rest of the batch go back to the queue."""


def reject(record: SQSRecord, reason: str) -> RejectedRecord:
    logger.error(
        "Rejected record",
        extra={
            "message_id": record.message_id,
            "message_group_id": record.attributes.message_group_id,
            "sequence_number": record.attributes.sequence_number,
            "receive_count": int(record.attributes.approximate_receive_count),
            "reason": reason,
        },
    )
    metrics.add_metric(name="RejectedRecords", unit=MetricUnit.Count, value=1)
    return RejectedRecord(reason)


def parse_event(record: SQSRecord) -> LedgerEvent:
    body = record.get("body")
    if not isinstance(body, str):
        raise reject(record, "the record has no body")
    try:
        event = LedgerEvent.model_validate_json(body)
    except ValidationError as exc:
        reason = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'body'}: {error['msg']}" for error in exc.errors(include_url=False, include_input=False)
        )
        raise reject(record, reason) from exc
    except Exception as exc:  # any failure to read one record is that record's failure, never the batch's
        raise reject(record, f"the body cannot be read: {type(exc).__name__}: {exc}") from exc
    group = record.attributes.message_group_id
    if group is not None and group != event.customer_id:
        raise reject(record, f"message group {group!r} is not the event's customer {event.customer_id!r}")
    return event


def apply(event: LedgerEvent) -> dict[str, str]:
    """The effect: post a ledger line, a debit for a placed order and a credit for a cancelled one."""
    amount = event.total if event.event_type == "OrderPlaced" else Decimal(0) - event.total
    line = {
        "event_id": str(event.event_id),
        "customer_id": event.customer_id,
        "order_id": event.order_id,
        "amount": str(amount),
        "currency": event.currency,
    }
    logger.info("Ledger line posted", extra=line)
    metrics.add_metric(name="LedgerLinesPosted", unit=MetricUnit.Count, value=1)
    return line


@tracer.capture_method
def record_handler(record: SQSRecord) -> dict[str, str]:
    return apply(parse_event(record))


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
    check_sqs_event(event)
    response = process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
    # Partial failures are not invocation errors, so they get a metric of their own.
    metrics.add_metric(name="FailedRecords", unit=MetricUnit.Count, value=len(response["batchItemFailures"]))
    return response
