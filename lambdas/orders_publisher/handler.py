"""Put order events on the shared event bus.

Invoked directly (synchronously or asynchronously) with
``{"events": [{"detail_type": "OrderPlaced" | "OrderCancelled", "detail": {...}}, ...]}``,
where each detail is an order in the current version of its contract, the
producer's strict view (``messaging_runtime.contracts.orders``: version 2,
unknown fields refused). Every event is validated, and its size checked
against the 256 KB PutEvents limit, before anything is sent, so a bad request
puts nothing on the bus and fails with a ValueError that names each bad index
and the reason.

Valid events go to the bus in ``BUS_NAME`` (a name or an ARN) with Source
``blueprints.orders`` through ``messaging_runtime.publishers.EventBridgePublisher``:
calls of at most 10 entries and 256 KB (sizes counted the way EventBridge counts
them); only the entries a call reports as failed are sent again, regrouped into
full calls, after a pause with exponential backoff and full jitter, up to
``PUT_MAX_ATTEMPTS`` calls per entry; codes EventBridge documents as not
retryable are not retried; a call that fails whole for any other reason than
throttling or a fault stops the publishing; no retry round starts in the last
seconds of the invocation. Whatever is not on the bus at the end makes the
invocation fail with the failed entries and their reasons in the error, so an
asynchronous invocation ends in the function's dead-letter queue; the handler
never returns a count that includes an event it could not put.

A failed invocation that Lambda retries puts the events that did go through
a second time, under new EventBridge ids; consumers are idempotent on the
order, not on the event id, so this does no double work downstream.

Environment: BUS_NAME (required); PUT_MAX_ATTEMPTS (3); PUT_RETRY_BASE_DELAY_SECONDS (0.2).
"""

import os
from typing import Any, Literal

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config
from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

from messaging_runtime.contracts.orders import ORDER_CANCELLED, ORDER_PLACED, SOURCE, OrderCancelled, OrderPlaced
from messaging_runtime.publishers import EventBridgePublisher, Retry, entry_size
from messaging_runtime.rejection import Rejected, parse_object

MAX_REQUEST_BYTES = 256 * 1024  # the PutEvents limit this function keeps to (EventBridge takes 1 MiB since January 2026)
RESERVE_SECONDS = 2  # no retry round starts in the invocation's last 2 s: the error must be raised before the timeout

logger = Logger()
tracer = Tracer()
metrics = Metrics()
# botocore retries a throttled call; the publisher then retries the entries EventBridge refused.
eventbridge = boto3.client("events", config=Config(retries={"mode": "standard", "max_attempts": 3}))
attempts, first_pause = max(1, int(os.environ.get("PUT_MAX_ATTEMPTS", "3"))), float(os.environ.get("PUT_RETRY_BASE_DELAY_SECONDS", "0.2"))
retry = Retry(max_attempts=attempts, base_delay_seconds=first_pause)
bus = EventBridgePublisher(eventbridge, event_bus_name=os.environ["BUS_NAME"], max_request_bytes=MAX_REQUEST_BYTES, retry=retry)

#: The producer's model of each detail-type: the current version of its contract.
PRODUCED = {kind.name: kind.current for kind in (ORDER_PLACED, ORDER_CANCELLED)}


class OrderEvent(BaseModel):
    """One event of the request (this function's own API): a detail-type, and the order in its contract's strict view."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    detail_type: Literal["OrderPlaced", "OrderCancelled"]
    detail: OrderPlaced | OrderCancelled

    @field_validator("detail", mode="plain")
    @classmethod
    def _by_contract(cls, detail: Any, info: ValidationInfo) -> OrderPlaced | OrderCancelled:
        # An unknown detail_type is reported on its own field; the order is still checked, by the rules they share.
        return PRODUCED.get(info.data.get("detail_type"), OrderPlaced).model_validate(detail)


def to_entry(order_event: OrderEvent) -> dict[str, str]:
    """The PutEvents entry of one event (the publisher adds the bus)."""
    return {"Source": SOURCE, "DetailType": order_event.detail_type, "Detail": order_event.detail.model_dump_json()}


def refused(reason: str) -> ValueError:
    """The error that refuses the whole request, logged and counted."""
    logger.error("Request refused, nothing published", extra={"reason": reason})
    metrics.add_metric(name="RequestsRefused", unit=MetricUnit.Count, value=1)
    return ValueError(reason)


def read(item: Any) -> OrderEvent | Rejected:
    """One event of the request, or why it is refused."""
    try:
        order_event = parse_object(OrderEvent, item, what="event")
    except Rejected as rejected:
        return rejected
    size = entry_size(to_entry(order_event))
    return order_event if size <= MAX_REQUEST_BYTES else Rejected(f"the entry is {size} bytes, over the {MAX_REQUEST_BYTES}-byte PutEvents limit")


def validate_request(event: Any) -> list[OrderEvent]:
    """Return the request's events, or raise ValueError naming every bad one."""
    items = event.get("events") if isinstance(event, dict) else None
    if not isinstance(items, list):
        raise refused('the request must be an object with an "events" list')
    order_events = [read(item) for item in items]
    problems = [f"events[{index}]: {item.reason}" for index, item in enumerate(order_events) if isinstance(item, Rejected)]
    if problems:
        raise refused(f"{len(problems)} invalid event(s), nothing published: " + "; ".join(problems))
    return order_events


class PublishError(Exception):
    """Some order events were not put on the bus.

    ``failed`` maps each event's index in the request to the reason;
    ``published`` counts the events that did go on the bus. The message lists
    the first ``MAX_IN_MESSAGE`` failures (the log line before the raise has
    them all).
    """

    MAX_IN_MESSAGE = 100

    def __init__(self, failed: dict[int, str], published: int, labels: dict[int, str]):
        self.failed = failed
        self.published = published
        shown = sorted(failed)[: self.MAX_IN_MESSAGE]
        listed = "; ".join(f"events[{index}] {labels.get(index, '')}: {failed[index]}" for index in shown)
        if len(failed) > len(shown):
            listed += f"; and {len(failed) - len(shown)} more"
        super().__init__(f"{len(failed)} order event(s) not put on the bus ({published} were): {listed}")


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    order_events = validate_request(event)
    budget = context.get_remaining_time_in_millis() / 1000 - RESERVE_SECONDS
    result = bus.publish([to_entry(order_event) for order_event in order_events], time_budget_seconds=budget)

    metrics.add_metric(name="OrderEventsPublished", unit=MetricUnit.Count, value=result.sent_count)
    metrics.add_metric(name="OrderEventsFailedToPublish", unit=MetricUnit.Count, value=result.failed_count)
    if result.failed:
        labels = {f.index: f"({order_events[f.index].detail_type} {order_events[f.index].detail.order_id})" for f in result.failed}
        logger.error("Order events not published", extra={"failed": [f"events[{f.index}] {labels[f.index]}: {f.reason}" for f in result.failed]})
        raise PublishError(result.reasons, result.sent_count, labels)
    logger.info("Order events published", extra={"published": result.sent_count})
    return {"published": result.sent_count}
