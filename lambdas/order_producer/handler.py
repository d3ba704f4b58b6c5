"""Publish order events to the order topics.

Invoked directly (synchronously or asynchronously) with ``{"orders": [...]}``.
Every order is validated before anything is sent, as the order message
contract a producer sends (``messaging_runtime.contracts.orders``, the strict
view: unknown fields refused), so a bad request publishes nothing. Valid
orders get an ``event_id`` (derived from the request id and the order's
position, so Lambda's retries of one invocation reuse it) and an
``occurred_at`` when they lack them, and go to the standard topic
(``TOPIC_ARN``) with an ``event_type`` message attribute for subscription
filters and, when ``FIFO_TOPIC_ARN`` is set, to the FIFO topic as well,
grouped by customer and deduplicated by event id.

Both topics are written with PublishBatch, ten entries per call, by
``messaging_runtime.publishers.SnsPublisher``: entries that SNS reports as
failed (and only those) are retried, regrouped into full calls, with
exponential backoff and full jitter, a bounded number of times and never
past the invocation's time; a sender fault is not retried, and a call that
fails for good stops publishing to that topic. Whatever is still unpublished
at the end makes the invocation fail with the event ids in the error, so an
asynchronous invocation ends in the function's dead-letter queue; the
handler never returns a count that includes an event it could not publish.

On the FIFO topic a call carries at most one event per customer, so a
retried entry can never land behind a later event of the same customer, and
once an event of a customer is lost for good, that customer's later events
are held back (and reported) rather than published out of order.

Environment:
    TOPIC_ARN                          standard topic (required)
    FIFO_TOPIC_ARN                     FIFO topic (optional)
    PUBLISH_MAX_ATTEMPTS               attempts per entry, default 3
    PUBLISH_RETRY_BASE_DELAY_SECONDS   first backoff ceiling, default 0.2
"""

import os
import uuid
from datetime import datetime, timezone
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config
from pydantic import ValidationError

from messaging_runtime.contracts.orders import ORDER_MESSAGES, OrderMessage, message_attributes
from messaging_runtime.publishers import PublishError as TopicPublishError
from messaging_runtime.publishers import PublishResult, Retry, SnsPublisher
from messaging_runtime.rejection import validation_reason

#: Seconds kept back from the invocation's remaining time to report what was not published.
REPORT_SECONDS = 2.0

logger = Logger()
tracer = Tracer()
metrics = Metrics()
# Throttling and 5xx on the call itself are retried by botocore; entries
# that SNS rejects inside a successful call are retried by the publishers.
sns = boto3.client("sns", config=Config(retries={"mode": "standard", "max_attempts": 3}))
retry = Retry(
    max_attempts=max(1, int(os.environ.get("PUBLISH_MAX_ATTEMPTS", "3"))),
    base_delay_seconds=float(os.environ.get("PUBLISH_RETRY_BASE_DELAY_SECONDS", "0.2")),
)
standard_topic = SnsPublisher(sns, os.environ["TOPIC_ARN"], fifo=False, retry=retry)
fifo_topic = SnsPublisher(sns, os.environ["FIFO_TOPIC_ARN"], fifo=True, retry=retry) if os.environ.get("FIFO_TOPIC_ARN") else None


class PublishError(Exception):
    """Some order events were not published.

    ``failed`` maps each topic to {event id: reason}; ``published`` holds the
    counts that did go out. The message is each topic's account of what it
    did not send, the event ids with their reasons.
    """

    def __init__(self, results: list[PublishResult], published: dict[str, int]):
        self.failed = {result.target: {failure.id: failure.reason for failure in result.failed} for result in results if not result.ok}
        self.published = published
        super().__init__("; ".join(str(TopicPublishError(result)) for result in results if not result.ok))


def default_event_id(request_id: str, index: int) -> uuid.UUID:
    """The id an order without one gets: the same on every retry of one invocation.

    Lambda keeps the request id across its own retries of an asynchronous
    invocation, so a retried request republishes the same event ids; the
    FIFO topic drops them as duplicates and consumers can recognise them.
    """
    return uuid.uuid5(uuid.NAMESPACE_URL, f"order-producer/{request_id}/{index}")


def as_message(order: Any, event_id: uuid.UUID, occurred_at: datetime) -> OrderMessage:
    """``order`` as the strict model of its ``event_type``, with the ``event_id`` and ``occurred_at`` it lacks; ValueError saying what is wrong otherwise."""
    tag = order.get("event_type") if isinstance(order, dict) else None
    kind = ORDER_MESSAGES.kinds.get(tag) if isinstance(tag, str) else None
    if kind is None and isinstance(order, dict) and "event_type" in order:
        raise ValueError(f"event_type: Input should be {' or '.join(map(repr, ORDER_MESSAGES.kinds))}")
    model = kind.current if kind is not None else OrderMessage  # the shape every order has, for the errors of the rest
    try:
        return model.model_validate({"event_id": event_id, "occurred_at": occurred_at, **order} if isinstance(order, dict) else order)
    except ValidationError as error:
        raise ValueError(validation_reason(error, root="order")) from None


def validate_orders(event: Any, request_id: str) -> list[OrderMessage]:
    """Return the orders as the messages to publish, or raise ValueError naming every bad one."""
    orders = event.get("orders") if isinstance(event, dict) else None
    if not isinstance(orders, list):
        raise ValueError('the event must be an object with an "orders" list')
    problems: list[str] = []
    messages: list[OrderMessage] = []
    first_index_of: dict[uuid.UUID, int] = {}
    now = datetime.now(timezone.utc)
    for index, order in enumerate(orders):
        try:
            message = as_message(order, default_event_id(request_id, index), now)
            if (first := first_index_of.setdefault(message.event_id, index)) != index:
                raise ValueError(f"event_id {message.event_id} repeats orders[{first}]")
        except ValueError as error:
            problems.append(f"orders[{index}]: {error}")
        else:
            messages.append(message)
    if problems:
        raise ValueError(f"{len(problems)} invalid order(s), nothing published: " + "; ".join(problems))
    return messages


def entry(message: OrderMessage, *, fifo: bool) -> dict[str, Any]:
    """The PublishBatch entry of one message: the event's JSON with its ``event_type`` attribute; on FIFO, grouped by customer."""
    wire = {"Id": str(message.event_id), "Message": message.model_dump_json(), "MessageAttributes": message_attributes(message)}
    return {**wire, "MessageGroupId": message.customer_id, "MessageDeduplicationId": str(message.event_id)} if fifo else wire


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    try:
        messages = validate_orders(event, context.aws_request_id)
    except ValueError as exc:
        logger.error("Request refused, nothing published", extra={"reason": str(exc)})
        metrics.add_metric(name="RequestsRefused", unit=MetricUnit.Count, value=1)
        raise
    results = []
    for topic in (standard_topic, fifo_topic):
        if topic is not None:
            budget = context.get_remaining_time_in_millis() / 1000 - REPORT_SECONDS
            results.append(topic.publish([entry(m, fifo=topic.fifo) for m in messages], time_budget_seconds=budget))

    counts = {"published": results[0].sent_count, "fifo_published": results[1].sent_count if fifo_topic else 0}
    metrics.add_metric(name="OrderEventsPublished", unit=MetricUnit.Count, value=counts["published"])
    metrics.add_metric(name="OrderEventsPublishedFifo", unit=MetricUnit.Count, value=counts["fifo_published"])
    metrics.add_metric(name="OrderEventsFailedToPublish", unit=MetricUnit.Count, value=sum(result.failed_count for result in results))
    if any(not result.ok for result in results):
        error = PublishError(results, counts)
        logger.error("Order events not published", extra={"failed": error.failed})
        raise error
    logger.info("Order events published", extra=counts)
    return counts
