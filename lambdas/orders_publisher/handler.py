"""Put order events on the shared event bus.

Invoked directly (synchronously or asynchronously) with
``{"events": [{"detail_type": "OrderPlaced" | "OrderCancelled", "detail": {...}}, ...]}``,
where each detail is an order in the current schema (version 2). Every event
is validated before anything is sent, so a bad request puts nothing on the
bus and fails with a ValueError that names the index and the reason.

Valid events go to the bus in ``BUS_NAME`` (a name or an ARN) with Source
``blueprints.orders``, through PutEvents calls of at most 10 entries and at
most 256 KB (the PutEvents limits, sizes counted the way EventBridge counts
them). When calls report failed entries, only those entries (matched by
position in the response's ``Entries``) are sent again, regrouped into full
calls, after a pause with exponential backoff and full jitter, a bounded
number of times; error codes that EventBridge documents as not retryable are
not retried. Whatever is still not
on the bus at the end makes the invocation fail with the failed entries and
their ErrorCode/ErrorMessage in the error, so an asynchronous invocation ends
in the function's dead-letter queue; the handler never returns a count that
includes an event it could not put.

A failed invocation that Lambda retries puts the events that did go through
a second time, under new EventBridge ids; consumers are idempotent on the
order, not on the event id, so this does no double work downstream.

Environment:
    BUS_NAME                        event bus name or ARN (required)
    PUT_MAX_ATTEMPTS                attempts per entry, default 3
    PUT_RETRY_BASE_DELAY_SECONDS    first backoff ceiling, default 0.2
"""

import json
import os
import random
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Annotated, Any, Callable, Literal

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
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

SOURCE = "blueprints.orders"
SCHEMA_VERSION = 2
MAX_ITEMS = 50
MAX_ENTRIES_PER_CALL = 10  # the PutEvents limit
MAX_REQUEST_BYTES = 256 * 1024  # the PutEvents limit on the sum of the entry sizes
MAX_BACKOFF_SECONDS = 5.0
# Entry error codes that the PutEvents reference lists as not retryable;
# any other code (InternalFailure, ThrottlingException, new ones) is retried.
NON_RETRYABLE_CODES = frozenset(
    {
        "AccessDeniedException",
        "InvalidAccountIdException",
        "InvalidArgument",
        "MalformedDetail",
        "RedactionFailure",
        "NotAuthorizedForSourceException",
        "NotAuthorizedForDetailTypeException",
    }
)
Entry = dict[str, Any]  # one PutEventsRequestEntry

BUS_NAME = os.environ["BUS_NAME"]
MAX_ATTEMPTS = max(1, int(os.environ.get("PUT_MAX_ATTEMPTS", "3")))
RETRY_BASE_DELAY_SECONDS = float(os.environ.get("PUT_RETRY_BASE_DELAY_SECONDS", "0.2"))

logger = Logger()
tracer = Tracer()
metrics = Metrics()
# Throttling and 5xx on the call itself are retried by botocore; entries
# that EventBridge rejects inside a successful call are retried below.
eventbridge = boto3.client("events", config=Config(retries={"mode": "standard", "max_attempts": 3}))

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
CustomerId = Annotated[str, StringConstraints(strict=True, pattern=r"^c-[A-Za-z0-9_-]{1,64}$")]
Currency = Annotated[str, StringConstraints(strict=True, pattern=r"^[A-Z]{3}$")]
Sku = Annotated[str, StringConstraints(strict=True, pattern=r"^SKU-[A-Za-z0-9_-]{1,64}$")]


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sku: Sku
    quantity: Annotated[StrictInt, Field(ge=1)]


class OrderDetail(BaseModel):
    """An order as it goes on the bus: the current schema, unknown fields refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: StrictInt
    order_id: OrderId
    customer_id: CustomerId
    total: Amount
    currency: Currency
    items: Annotated[tuple[Item, ...], Field(min_length=1, max_length=MAX_ITEMS)]

    @field_validator("version")
    @classmethod
    def _current_version(cls, value: int) -> int:
        if value != SCHEMA_VERSION:
            raise ValueError(f"unsupported version {value}, expected {SCHEMA_VERSION}")
        return value

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": self.version,
                "order_id": self.order_id,
                "customer_id": self.customer_id,
                "total": float(self.total),
                "currency": self.currency,
                "items": [{"sku": item.sku, "quantity": item.quantity} for item in self.items],
            },
            separators=(",", ":"),
        )


class OrderEvent(BaseModel):
    """One event of the request."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    detail_type: Literal["OrderPlaced", "OrderCancelled"]
    detail: OrderDetail


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


@dataclass
class PutOutcome:
    event_ids: dict[int, str] = field(default_factory=dict)  # request index -> EventBridge event id
    failed: dict[int, str] = field(default_factory=dict)  # request index -> reason


def validate_request(event: Any) -> list[OrderEvent]:
    """Return the request's events, or raise ValueError naming every bad one."""
    items = event.get("events") if isinstance(event, dict) else None
    if not isinstance(items, list):
        raise ValueError('the request must be an object with an "events" list')
    problems: list[str] = []
    order_events: list[OrderEvent] = []
    for index, item in enumerate(items):
        try:
            order_event = OrderEvent.model_validate(item)
        except ValidationError as exc:
            problems.append(f"events[{index}]: {_describe(exc)}")
            continue
        size = entry_size(to_entry(order_event))
        if size > MAX_REQUEST_BYTES:
            problems.append(f"events[{index}]: the entry is {size} bytes, over the {MAX_REQUEST_BYTES}-byte PutEvents limit")
            continue
        order_events.append(order_event)
    if problems:
        raise ValueError(f"{len(problems)} invalid event(s), nothing published: " + "; ".join(problems))
    return order_events


def _describe(exc: ValidationError) -> str:
    return ", ".join(
        f"{'.'.join(str(part) for part in error['loc']) or 'event'}: {error['msg']}" for error in exc.errors(include_url=False, include_input=False)
    )


def to_entry(order_event: OrderEvent) -> Entry:
    return {
        "Source": SOURCE,
        "DetailType": order_event.detail_type,
        "Detail": order_event.detail.to_json(),
        "EventBusName": BUS_NAME,
    }


def entry_size(entry: Entry) -> int:
    """The size EventBridge counts against the request limit (see "Calculating PutEvents entry size")."""
    size = 14 if "Time" in entry else 0
    size += len(entry["Source"].encode()) + len(entry["DetailType"].encode())
    size += len(entry.get("Detail", "").encode())
    size += sum(len(resource.encode()) for resource in entry.get("Resources", []))
    return size


def batches(indexed: list[tuple[int, Entry]]) -> list[list[tuple[int, Entry]]]:
    """Split the entries, in order, into calls of at most 10 entries and 256 KB."""
    calls: list[list[tuple[int, Entry]]] = []
    current: list[tuple[int, Entry]] = []
    current_bytes = 0
    for index, entry in indexed:
        size = entry_size(entry)
        if current and (len(current) == MAX_ENTRIES_PER_CALL or current_bytes + size > MAX_REQUEST_BYTES):
            calls.append(current)
            current, current_bytes = [], 0
        current.append((index, entry))
        current_bytes += size
    if current:
        calls.append(current)
    return calls


def backoff_delay(retry: int) -> float:
    """Full jitter: a random pause below an exponentially growing ceiling."""
    ceiling = min(MAX_BACKOFF_SECONDS, RETRY_BASE_DELAY_SECONDS * 2 ** (retry - 1))
    return random.uniform(0, ceiling)


def _error_name(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code", "ClientError")
        return f"{code}: {error['Message']}" if error.get("Message") else code
    return type(exc).__name__


@tracer.capture_method
def put_all(entries: list[Entry]) -> PutOutcome:
    """Put every entry on the bus; report what went and what did not.

    Each attempt is a pass over the entries still pending, in calls of at most
    10 entries and 256 KB. The entries a pass leaves failed (matched by their
    position in the response) are regrouped into full calls for the next pass,
    after one backoff pause, so a failed entry costs a share of a call rather
    than a call of its own.
    """
    outcome = PutOutcome()
    pending = list(enumerate(entries))
    last_reason: dict[int, str] = {}
    for attempt in range(1, MAX_ATTEMPTS + 1):
        if attempt > 1:
            sleep(backoff_delay(attempt - 1))
        retry: list[tuple[int, Entry]] = []
        calls = batches(pending)
        for number, batch in enumerate(calls):
            try:
                response = eventbridge.put_events(Entries=[entry for _, entry in batch])
            except (ClientError, BotoCoreError) as exc:
                # After botocore's own retries: these entries' fate is unknown, so they count as failed,
                # and nothing more is sent.
                error = _error_name(exc)
                outcome.failed.update({index: error for index, _ in batch})
                outcome.failed.update({index: f"not sent: publishing stopped after {error}" for later in calls[number + 1 :] for index, _ in later})
                outcome.failed.update({index: f"{last_reason[index]} (not retried: publishing stopped after {error})" for index, _ in retry})
                return outcome
            results = response.get("Entries", [])
            for position, (index, entry) in enumerate(batch):
                result = results[position] if position < len(results) else {"ErrorCode": "NoResult", "ErrorMessage": "no result in the response"}
                if result.get("EventId") and not result.get("ErrorCode"):
                    outcome.event_ids[index] = result["EventId"]
                    continue
                code = result.get("ErrorCode") or "Unknown"
                reason = f"{code}: {result['ErrorMessage']}" if result.get("ErrorMessage") else code
                if code in NON_RETRYABLE_CODES:
                    outcome.failed[index] = reason  # the entry is wrong or not allowed; sending it again will not help
                else:
                    retry.append((index, entry))
                    last_reason[index] = reason
        pending = retry
        if not pending:
            return outcome
        logger.warning(
            "EventBridge did not accept some entries",
            extra={"attempt": attempt, "failed": {index: last_reason[index] for index, _ in pending}},
        )
    outcome.failed.update({index: f"{last_reason[index]} (after {MAX_ATTEMPTS} attempts)" for index, _ in pending})
    return outcome


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    try:
        order_events = validate_request(event)
    except ValueError as exc:
        logger.error("Request refused, nothing published", extra={"reason": str(exc)})
        metrics.add_metric(name="RequestsRefused", unit=MetricUnit.Count, value=1)
        raise
    outcome = put_all([to_entry(order_event) for order_event in order_events])

    published = len(outcome.event_ids)
    metrics.add_metric(name="OrderEventsPublished", unit=MetricUnit.Count, value=published)
    metrics.add_metric(name="OrderEventsFailedToPublish", unit=MetricUnit.Count, value=len(outcome.failed))
    if outcome.failed:
        labels = {index: f"({order_events[index].detail_type} {order_events[index].detail.order_id})" for index in outcome.failed}
        logger.error(
            "Order events not published",
            extra={"failed": [f"events[{index}] {labels[index]}: {reason}" for index, reason in sorted(outcome.failed.items())]},
        )
        raise PublishError(outcome.failed, published, labels)
    logger.info("Order events published", extra={"published": published})
    return {"published": published}
