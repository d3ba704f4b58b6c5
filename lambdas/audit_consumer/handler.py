"""Keep an audit trail of every order event.

Reads the ``audit`` queue, which receives every event from the topic
unfiltered. Each event is read as the order message contract
(``messaging_runtime.contracts.orders.ORDER_MESSAGES``, the consumer's view:
fields it does not know are ignored) and written to the log as one
structured line: the log group is the trail, so this line per event is the
effect itself, not a progress line; everything else is counted and logged
once per batch. An event that breaks the contract, or any record that cannot
be read, is logged with the reason and reported as a failed item, so it
reaches the dead-letter queue instead of leaving a gap in the trail
(``messaging_runtime.batch``).
"""

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from messaging_runtime import readers
from messaging_runtime.batch import SQS, BatchConsumer
from messaging_runtime.contracts.orders import ORDER_MESSAGES, OrderMessage

logger = Logger()
tracer = Tracer()
metrics = Metrics()
consumer = BatchConsumer(SQS, read=readers.sqs_json(ORDER_MESSAGES), logger=logger, metrics=metrics)


def audit(event: OrderMessage, record: SQSRecord) -> None:
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
