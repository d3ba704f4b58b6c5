"""Flag large orders for a manual fraud review.

Reads the ``fraud-review`` queue, whose subscription filters on the message
body so that only events with a total at or above the review threshold
arrive. An event below the threshold means the filter and this function
disagree: it is rejected as a failed item, with the reason logged, rather
than quietly skipped, so that it shows up in the dead-letter queue.

Any other error while reading a record (a record without a body included)
is that record's failure, logged and counted the same way. A record Lambda
never sends (not an object, no ``messageId``) cannot be named in the partial
batch response: the invocation fails with a ValueError that says so.

Environment:
    REVIEW_THRESHOLD   smallest total that needs a review, default 500
"""

import os
from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, ValidationError, field_validator

SCHEMA_VERSION = 1
REVIEW_THRESHOLD = Decimal(os.environ.get("REVIEW_THRESHOLD", "500"))

logger = Logger()
tracer = Tracer()
metrics = Metrics()
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def _json_number(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise ValueError("must be a number")
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


class ReviewCandidate(BaseModel):
    """The part of an order event a reviewer needs; other fields are ignored."""

    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")

    event_id: UUID
    event_type: Literal["OrderPlaced", "OrderCancelled"]
    version: StrictInt
    order_id: str = Field(min_length=1)
    customer_id: str = Field(min_length=1)
    total: Annotated[Decimal, BeforeValidator(_json_number), Field(ge=0, allow_inf_nan=False)]

    @field_validator("version")
    @classmethod
    def _supported_version(cls, value: int) -> int:
        if value != SCHEMA_VERSION:
            raise ValueError(f"unsupported version {value}, expected {SCHEMA_VERSION}")
        return value


class RejectedRecord(ValueError):
    """The record cannot be reviewed as it is; it stays on the queue and ends in the DLQ."""


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


def parse_candidate(record: SQSRecord) -> ReviewCandidate:
    body = record.get("body")
    if not isinstance(body, str):
        raise reject(record, "the record has no body")
    try:
        candidate = ReviewCandidate.model_validate_json(body)
    except ValidationError as exc:
        reason = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'body'}: {error['msg']}" for error in exc.errors(include_url=False, include_input=False)
        )
        raise reject(record, reason) from exc
    except Exception as exc:  # any failure to read one record is that record's failure, never the batch's
        raise reject(record, f"the body cannot be read: {type(exc).__name__}: {exc}") from exc
    if candidate.total < REVIEW_THRESHOLD:
        raise reject(
            record,
            f"total {candidate.total} is below the review threshold {REVIEW_THRESHOLD}; the subscription filter should not have delivered it",
        )
    return candidate


def flag_for_review(candidate: ReviewCandidate) -> dict[str, str]:
    """The effect: put the order in front of a reviewer."""
    flag = {
        "order_id": candidate.order_id,
        "customer_id": candidate.customer_id,
        "event_type": candidate.event_type,
        "total": str(candidate.total),
        "reason": f"total at or above {REVIEW_THRESHOLD}",
    }
    logger.warning("Order flagged for fraud review", extra=flag)
    metrics.add_metric(name="OrdersFlaggedForReview", unit=MetricUnit.Count, value=1)
    return flag


@tracer.capture_method
def record_handler(record: SQSRecord) -> dict[str, str]:
    return flag_for_review(parse_candidate(record))


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
