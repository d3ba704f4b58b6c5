"""Keep an audit trail of every order event.

Reads the ``audit`` queue, which receives every event from the topic
unfiltered. Each event is checked against the envelope every order event
shares and written to the log as one structured line (the log group is the
trail), with a count per event type. An event that fails the check is
logged with the reason and reported as a failed item, so it reaches the
dead-letter queue instead of leaving a gap in the trail.

Any other error while reading a record (a record without a body included)
is that record's failure, logged and counted the same way. A record Lambda
never sends (not an object, no ``messageId``) cannot be named in the partial
batch response: the invocation fails with a ValueError that says so.
"""

from typing import Any, Literal
from uuid import UUID

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator

SCHEMA_VERSION = 1

logger = Logger()
tracer = Tracer()
metrics = Metrics()
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


class AuditedEvent(BaseModel):
    """The envelope of an order event; the order's own fields are not audited here."""

    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")

    event_id: UUID
    event_type: Literal["OrderPlaced", "OrderCancelled"]
    version: StrictInt
    order_id: str = Field(min_length=1)
    occurred_at: AwareDatetime

    @field_validator("version")
    @classmethod
    def _supported_version(cls, value: int) -> int:
        if value != SCHEMA_VERSION:
            raise ValueError(f"unsupported version {value}, expected {SCHEMA_VERSION}")
        return value


class RejectedRecord(ValueError):
    """The record is not an order event; it stays on the queue and ends in the DLQ."""


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


def parse_event(record: SQSRecord) -> AuditedEvent:
    body = record.get("body")
    if not isinstance(body, str):
        raise reject(record, "the record has no body")
    try:
        return AuditedEvent.model_validate_json(body)
    except ValidationError as exc:
        reason = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'body'}: {error['msg']}" for error in exc.errors(include_url=False, include_input=False)
        )
        raise reject(record, reason) from exc
    except Exception as exc:  # any failure to read one record is that record's failure, never the batch's
        raise reject(record, f"the body cannot be read: {type(exc).__name__}: {exc}") from exc


def audit(event: AuditedEvent, record: SQSRecord) -> dict[str, str]:
    """The effect: one structured audit line per event."""
    entry = {
        "event_id": str(event.event_id),
        "event_type": event.event_type,
        "order_id": event.order_id,
        "occurred_at": event.occurred_at.isoformat(),
        "message_id": record.message_id,
    }
    logger.info("Order event audited", extra=entry)
    metrics.add_metric(name=f"Audited{event.event_type}", unit=MetricUnit.Count, value=1)
    return entry


@tracer.capture_method
def record_handler(record: SQSRecord) -> dict[str, str]:
    return audit(parse_event(record), record)


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
