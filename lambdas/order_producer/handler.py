"""Publish order events to the order topics.

Invoked directly (synchronously or asynchronously) with ``{"orders": [...]}``.
Every order is validated before anything is sent, so a bad request publishes
nothing. Valid orders get an ``event_id`` (derived from the request id and
the order's position, so Lambda's retries of one invocation reuse it) and an
``occurred_at`` when they lack them, and go to the standard topic (``TOPIC_ARN``) with an
``event_type`` message attribute for subscription filters and, when
``FIFO_TOPIC_ARN`` is set, to the FIFO topic as well, grouped by customer and
deduplicated by event id.

Both topics are written with PublishBatch, ten entries per call. Entries that
SNS reports as failed are retried on their own, with exponential backoff and
full jitter, a bounded number of times. Whatever is still unpublished at the
end makes the invocation fail with the event ids in the error, so an
asynchronous invocation ends in the function's dead-letter queue; the
handler never returns a count that includes an event it could not publish.

On the FIFO topic each call carries at most one event per customer, so a
retried entry can never land behind a later event of the same customer, and
once an event of a customer is lost for good, that customer's later events
are held back (and reported) rather than published out of order.

Environment:
    TOPIC_ARN                          standard topic (required)
    FIFO_TOPIC_ARN                     FIFO topic (optional)
    PUBLISH_MAX_ATTEMPTS               attempts per entry, default 3
    PUBLISH_RETRY_BASE_DELAY_SECONDS   first backoff ceiling, default 0.2
"""

import json
import os
import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Annotated, Any, Callable, Literal

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import (
    AwareDatetime,
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
MAX_ENTRIES_PER_CALL = 10  # the PublishBatch limit
MAX_BACKOFF_SECONDS = 5.0
Entry = dict[str, Any]  # one PublishBatchRequestEntries item

TOPIC_ARN = os.environ["TOPIC_ARN"]
FIFO_TOPIC_ARN = os.environ.get("FIFO_TOPIC_ARN") or None
MAX_ATTEMPTS = max(1, int(os.environ.get("PUBLISH_MAX_ATTEMPTS", "3")))
RETRY_BASE_DELAY_SECONDS = float(os.environ.get("PUBLISH_RETRY_BASE_DELAY_SECONDS", "0.2"))

logger = Logger()
tracer = Tracer()
metrics = Metrics()
# Throttling and 5xx on the call itself are retried by botocore; entries
# that SNS rejects inside a successful call are retried below.
sns = boto3.client("sns", config=Config(retries={"mode": "standard", "max_attempts": 3}))

# The pause between attempts. Tests replace it to run without waiting.
sleep: Callable[[float], None] = time.sleep


def _json_number(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise ValueError("must be a number")
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


Amount = Annotated[
    Decimal,
    BeforeValidator(_json_number),
    # 15 significant digits survive the trip through a JSON number exactly.
    Field(ge=0, max_digits=15, allow_inf_nan=False),
]
OrderId = Annotated[str, StringConstraints(strict=True, pattern=r"^o-[A-Za-z0-9_-]{1,64}$")]
# The customer id is the FIFO message group id, so it keeps to safe characters.
CustomerId = Annotated[str, StringConstraints(strict=True, pattern=r"^c-[A-Za-z0-9_-]{1,64}$")]
Currency = Annotated[str, StringConstraints(strict=True, pattern=r"^[A-Z]{3}$")]


class OrderEvent(BaseModel):
    """An order event as published: the full schema, unknown fields refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    event_type: Literal["OrderPlaced", "OrderCancelled"]
    version: StrictInt
    order_id: OrderId
    customer_id: CustomerId
    total: Amount
    currency: Currency
    occurred_at: AwareDatetime = Field(default_factory=lambda: datetime.now(timezone.utc))

    @field_validator("version")
    @classmethod
    def _supported_version(cls, value: int) -> int:
        if value != SCHEMA_VERSION:
            raise ValueError(f"unsupported version {value}, expected {SCHEMA_VERSION}")
        return value

    def to_message(self) -> str:
        return json.dumps(
            {
                "event_id": str(self.event_id),
                "event_type": self.event_type,
                "version": self.version,
                "order_id": self.order_id,
                "customer_id": self.customer_id,
                "total": float(self.total),
                "currency": self.currency,
                "occurred_at": self.occurred_at.isoformat(),
            },
            separators=(",", ":"),
        )


class PublishError(Exception):
    """Some order events were not published.

    ``failed`` maps each topic to {event id: reason}; ``published`` holds the
    counts that did go out. The message lists the ids (the first
    ``MAX_IDS_IN_MESSAGE`` per topic; the log line before the raise has them all).
    """

    MAX_IDS_IN_MESSAGE = 100

    def __init__(self, failed: dict[str, dict[str, str]], published: dict[str, int]):
        self.failed = failed
        self.published = published
        parts = []
        for topic, reasons in failed.items():
            shown = list(reasons.items())[: self.MAX_IDS_IN_MESSAGE]
            listed = ", ".join(f"{event_id} ({reason})" for event_id, reason in shown)
            if len(reasons) > len(shown):
                listed += f", and {len(reasons) - len(shown)} more"
            parts.append(f"{len(reasons)} not published to {topic}: {listed}")
        super().__init__("; ".join(parts))


@dataclass
class PublishOutcome:
    published: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def default_event_id(request_id: str, index: int) -> uuid.UUID:
    """The id an order without one gets: the same on every retry of one invocation.

    Lambda keeps the request id across its own retries of an asynchronous
    invocation, so a retried request republishes the same event ids; the
    FIFO topic drops them as duplicates and consumers can recognise them.
    """
    return uuid.uuid5(uuid.NAMESPACE_URL, f"order-producer/{request_id}/{index}")


def validate_orders(event: dict[str, Any], request_id: str = "") -> list[OrderEvent]:
    """Return the orders as events, or raise ValueError naming every bad one."""
    orders = event.get("orders") if isinstance(event, dict) else None
    if not isinstance(orders, list):
        raise ValueError('the event must be an object with an "orders" list')
    problems: list[str] = []
    events: list[OrderEvent] = []
    first_index_of: dict[uuid.UUID, int] = {}
    for index, order in enumerate(orders):
        if request_id and isinstance(order, dict) and "event_id" not in order:
            order = {**order, "event_id": default_event_id(request_id, index)}
        try:
            order_event = OrderEvent.model_validate(order)
        except ValidationError as exc:
            problems.append(f"orders[{index}]: {_describe(exc)}")
            continue
        if order_event.event_id in first_index_of:
            first = first_index_of[order_event.event_id]
            problems.append(f"orders[{index}]: event_id {order_event.event_id} repeats orders[{first}]")
            continue
        first_index_of[order_event.event_id] = index
        events.append(order_event)
    if problems:
        raise ValueError(f"{len(problems)} invalid order(s), nothing published: " + "; ".join(problems))
    return events


def _describe(exc: ValidationError) -> str:
    return ", ".join(
        f"{'.'.join(str(part) for part in error['loc']) or 'order'}: {error['msg']}" for error in exc.errors(include_url=False, include_input=False)
    )


def standard_entry(order_event: OrderEvent) -> Entry:
    return {
        "Id": str(order_event.event_id),
        "Message": order_event.to_message(),
        "MessageAttributes": {"event_type": {"DataType": "String", "StringValue": order_event.event_type}},
    }


def fifo_entry(order_event: OrderEvent) -> Entry:
    entry = standard_entry(order_event)
    entry["MessageGroupId"] = order_event.customer_id
    entry["MessageDeduplicationId"] = str(order_event.event_id)
    return entry


def backoff_delay(retry: int) -> float:
    """Full jitter: a random pause below an exponentially growing ceiling."""
    ceiling = min(MAX_BACKOFF_SECONDS, RETRY_BASE_DELAY_SECONDS * 2 ** (retry - 1))
    return random.uniform(0, ceiling)


def next_batch(pending: list[Entry], *, one_per_group: bool) -> tuple[list[Entry], list[Entry]]:
    """Split off the next call's entries, keeping the rest in order.

    On a FIFO topic a call carries at most one entry per message group, so
    retrying a failed entry can never put it behind a later event of the same
    group that went through in the same call.
    """
    if not one_per_group:
        return pending[:MAX_ENTRIES_PER_CALL], pending[MAX_ENTRIES_PER_CALL:]
    batch: list[Entry] = []
    rest: list[Entry] = []
    groups: set[str] = set()
    for entry in pending:
        if len(batch) < MAX_ENTRIES_PER_CALL and entry["MessageGroupId"] not in groups:
            groups.add(entry["MessageGroupId"])
            batch.append(entry)
        else:
            rest.append(entry)
    return batch, rest


def send_with_retries(topic_arn: str, batch: list[Entry]) -> tuple[PublishOutcome, str | None]:
    """Publish one call's entries, retrying only the entries SNS reports as failed.

    Returns the outcome and, if the call itself failed, the error that should
    stop further publishing to this topic.
    """
    outcome = PublishOutcome()
    pending = batch
    last_reason: dict[str, str] = {}
    for attempt in range(1, MAX_ATTEMPTS + 1):
        if attempt > 1:
            sleep(backoff_delay(attempt - 1))
        try:
            response = sns.publish_batch(TopicArn=topic_arn, PublishBatchRequestEntries=pending)
        except (ClientError, BotoCoreError) as exc:
            # After botocore's own retries: the entries' fate is unknown, so they count as failed.
            error = _error_name(exc)
            for entry in pending:
                outcome.failed[entry["Id"]] = error
            return outcome, error
        outcome.published.extend(item["Id"] for item in response.get("Successful", []))
        retry_ids: set[str] = set()
        for item in response.get("Failed", []):
            code, message = item.get("Code", "Unknown"), item.get("Message")
            reason = f"{code}: {message}" if message else code
            if item.get("SenderFault"):
                outcome.failed[item["Id"]] = reason  # the request is wrong; repeating it will not help
            else:
                retry_ids.add(item["Id"])
                last_reason[item["Id"]] = reason
        answered = {item["Id"] for item in response.get("Successful", [])} | {item["Id"] for item in response.get("Failed", [])}
        for entry in pending:
            if entry["Id"] not in answered:
                retry_ids.add(entry["Id"])
                last_reason[entry["Id"]] = "no result in the response"
        pending = [entry for entry in pending if entry["Id"] in retry_ids]
        if not pending:
            return outcome, None
        logger.warning(
            "SNS did not accept some entries",
            extra={"topic_arn": topic_arn, "attempt": attempt, "event_ids": [entry["Id"] for entry in pending]},
        )
    for entry in pending:
        outcome.failed[entry["Id"]] = f"{last_reason[entry['Id']]} (after {MAX_ATTEMPTS} attempts)"
    return outcome, None


def _error_name(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        return exc.response.get("Error", {}).get("Code", "ClientError")
    return type(exc).__name__


@tracer.capture_method
def publish(topic_arn: str, entries: list[Entry], *, fifo: bool) -> PublishOutcome:
    """Publish every entry to the topic; report what was and was not published."""
    outcome = PublishOutcome()
    pending = list(entries)
    while pending:
        batch, pending = next_batch(pending, one_per_group=fifo)
        batch_outcome, stop_error = send_with_retries(topic_arn, batch)
        outcome.published.extend(batch_outcome.published)
        outcome.failed.update(batch_outcome.failed)
        if stop_error is not None:
            for entry in pending:
                outcome.failed[entry["Id"]] = f"not sent: publishing stopped after {stop_error}"
            break
        if fifo and batch_outcome.failed:
            # Keep each group in order: nothing after a lost event of a group goes out.
            lost_groups = {entry["MessageGroupId"] for entry in batch if entry["Id"] in batch_outcome.failed}
            kept = []
            for entry in pending:
                if entry["MessageGroupId"] in lost_groups:
                    outcome.failed[entry["Id"]] = "not sent: an earlier event of its message group was not published"
                else:
                    kept.append(entry)
            pending = kept
    return outcome


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    try:
        order_events = validate_orders(event, context.aws_request_id)
    except ValueError as exc:
        logger.error("Request refused, nothing published", extra={"reason": str(exc)})
        metrics.add_metric(name="RequestsRefused", unit=MetricUnit.Count, value=1)
        raise
    outcomes = {TOPIC_ARN: publish(TOPIC_ARN, [standard_entry(e) for e in order_events], fifo=False)}
    if FIFO_TOPIC_ARN:
        outcomes[FIFO_TOPIC_ARN] = publish(FIFO_TOPIC_ARN, [fifo_entry(e) for e in order_events], fifo=True)

    published = len(outcomes[TOPIC_ARN].published)
    fifo_published = len(outcomes[FIFO_TOPIC_ARN].published) if FIFO_TOPIC_ARN else 0
    failed = {topic: outcome.failed for topic, outcome in outcomes.items() if outcome.failed}
    failed_count = sum(len(reasons) for reasons in failed.values())
    metrics.add_metric(name="OrderEventsPublished", unit=MetricUnit.Count, value=published)
    metrics.add_metric(name="OrderEventsPublishedFifo", unit=MetricUnit.Count, value=fifo_published)
    metrics.add_metric(name="OrderEventsFailedToPublish", unit=MetricUnit.Count, value=failed_count)

    if failed:
        logger.error("Order events not published", extra={"failed": failed})
        raise PublishError(failed, {"published": published, "fifo_published": fifo_published})
    logger.info("Order events published", extra={"published": published, "fifo_published": fifo_published})
    return {"published": published, "fifo_published": fifo_published}
