"""Flag large orders for a manual fraud review.

Reads the ``fraud-review`` queue, whose subscription filters on the message
body so that only events with a total at or above the review threshold
arrive; each record is read as the order message contract
(``messaging_runtime.contracts.orders.ORDER_MESSAGES``, the consumer's view).
An event below the threshold means the filter and this function disagree: it
is rejected as a failed item, with the reason logged, rather than quietly
skipped, so that it shows up in the dead-letter queue.

The flag is a WARNING line per flagged order, which is what puts the order
in front of a reviewer (the effect itself, not a progress line); everything
else is counted and logged once per batch. Any record that cannot be read is
that record's failure, logged with the reason and reported
(``messaging_runtime.batch``).

Environment:
    REVIEW_THRESHOLD   smallest total that needs a review, default 500
"""

import os
from decimal import Decimal
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from messaging_runtime import readers
from messaging_runtime.batch import SQS, BatchConsumer
from messaging_runtime.contracts.orders import ORDER_MESSAGES, OrderMessage
from messaging_runtime.rejection import Rejected

REVIEW_THRESHOLD = Decimal(os.environ.get("REVIEW_THRESHOLD", "500"))
REVIEW_REASON = f"total at or above {REVIEW_THRESHOLD}"

logger = Logger()
tracer = Tracer()
metrics = Metrics()
read_order = readers.sqs_json(ORDER_MESSAGES)


def needs_review(order: OrderMessage) -> OrderMessage:
    """``order`` if its total needs a review; ``Rejected`` otherwise."""
    if order.total < REVIEW_THRESHOLD:
        raise Rejected(f"total {order.total} is below the review threshold {REVIEW_THRESHOLD}; the subscription filter should not have delivered it")
    return order


consumer = BatchConsumer(SQS, read=lambda record: needs_review(read_order(record)), logger=logger, metrics=metrics)


def flag_for_review(order: OrderMessage) -> None:
    """The effect: put the order in front of a reviewer, as one WARNING line that says what and why."""
    consumer.count("OrdersFlaggedForReview")
    flag = {"order_id": order.order_id, "customer_id": order.customer_id, "event_type": order.event_type, "total": str(order.total)}
    logger.warning("Order flagged for fraud review", extra={**flag, "reason": REVIEW_REASON})


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return consumer.process(event, context, effect=lambda order, _record: flag_for_review(order))
