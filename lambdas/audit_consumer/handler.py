"""Keep an audit trail of every order event.

Reads the ``audit`` queue, which receives every event from the topic
unfiltered. Each event is checked against the envelope every order event
shares and written to the log as one structured line (the log group is the
trail), with a count per event type. An event that fails the check, or any
record that cannot be read, is logged with the reason and reported as a
failed item, so it reaches the dead-letter queue instead of leaving a gap in
the trail (``messaging_runtime.batch``).
"""

from typing import Any, Literal
from uuid import UUID

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictInt, field_validator

from messaging_runtime import readers
from messaging_runtime.batch import SQS, BatchConsumer

SCHEMA_VERSION = 1

logger = Logger()
tracer = Tracer()
metrics = Metrics()


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


consumer = BatchConsumer(SQS, read=readers.sqs_json(AuditedEvent), logger=logger, metrics=metrics)


def audit(event: AuditedEvent, record: SQSRecord) -> None:
    """The effect: one structured audit line per event (the line is the trail)."""
    logger.info(
        "Order event audited",
        extra={
            "event_id": str(event.event_id),
            "event_type": event.event_type,
            "order_id": event.order_id,
            "occurred_at": event.occurred_at.isoformat(),
            "message_id": record.message_id,
        },
    )
    consumer.count(f"Audited{event.event_type}")


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return consumer.process(event, context, effect=audit)
