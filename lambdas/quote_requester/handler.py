"""Ask the warehouse for a price quote over AMQP, and wait for the answer.

Invoked directly with ``{"customer_id": "c-...", "items": [{"sku": "SKU-...", "quantity": 3}, ...]}``
(1 to 50 items): a ``QuoteRequest`` (``contracts.quotes``) without its ``schema_version``, which
the function adds. A bad request sends nothing and fails with a ValueError that names the reason.

The request goes to the queue ``REQUEST_QUEUE`` through the default exchange, as persistent JSON
with a fresh ``correlation_id`` and ``reply_to`` set to RabbitMQ's direct reply-to
(``amq.rabbitmq.reply-to``): the reply comes straight back on the requesting channel, with no
reply queue to declare or clean up. The channel consumes that pseudo-queue (no-ack, as RabbitMQ
requires) before it publishes; ``messaging_runtime.amqp`` keeps it, in confirm mode, across
invocations, and publishes ``mandatory``, so a missing request queue or a refused request is an
error, not a request nobody will ever see.

The function then waits for the reply with that ``correlation_id``, for ``REPLY_TIMEOUT_SECONDS``
and never past the invocation's remaining time (less a second, to report the timeout). Replies
with another correlation id (late answers to earlier requests that timed out) are logged and
dropped. The request carries the wait as its ``expiration``, so a request nobody takes in time
leaves the queue (for its dead-letter exchange, if it has one) instead of being answered for a
requester that has gone. A ``QuoteReply`` is returned as ``{"correlation_id": ..., "quote":
{...}}``; a ``QuoteError``, or a reply that is neither, raises QuoteRefused with the reason; no
reply in time raises ReplyTimeout. The broker confirmed the request in both cases.

Environment: REQUEST_QUEUE (required), REPLY_TIMEOUT_SECONDS (default 10), and the broker's
(``AmqpSettings.from_environment``): BROKER_HOST, BROKER_SECRET_ARN (required), BROKER_PORT
(default 5671), BROKER_TLS (default true), VIRTUAL_HOST (default /), SECRET_MAX_AGE_SECONDS (default 300).
"""

import math
import os
import time
import uuid
from typing import Any

import pika
import pika.exceptions
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from messaging_runtime.amazon_mq import environment_number
from messaging_runtime.amqp import DIRECT_REPLY_TO, AmqpClient, AmqpSettings, BrokerError, PublishNotConfirmed
from messaging_runtime.contracts.quotes import QUOTE_ANSWERS, QuoteRequestV1
from messaging_runtime.rejection import reason_of, validation_reason

# Time kept back from the invocation's remaining time, to report a timeout before Lambda stops the function.
SAFETY_MARGIN_SECONDS = 1.0
# Below this there is no point in asking: nobody could answer in time.
MIN_WAIT_SECONDS = 0.5
REQUEST_QUEUE = os.environ["REQUEST_QUEUE"]
REPLY_TIMEOUT_SECONDS = environment_number("REPLY_TIMEOUT_SECONDS", 10.0, low=MIN_WAIT_SECONDS, high=900)

logger, tracer, metrics = Logger(), Tracer(), Metrics()
received: dict[str, bytes] = {}  # the awaited reply, by correlation id
awaited: set[str] = set()


class ReplyTimeout(Exception):
    """The request was confirmed, but no reply came in time."""


class QuoteRefused(Exception):
    """The responder answered with an error, or with something that is not an answer."""


def on_reply(channel: Any, method: Any, properties: pika.BasicProperties, body: bytes) -> None:
    if properties.correlation_id in awaited:
        received[properties.correlation_id] = body
        return
    logger.warning("Reply for no request waiting here, dropped", extra={"correlation_id": properties.correlation_id, "bytes": len(body)})
    metrics.add_metric(name="UnexpectedReplies", unit=MetricUnit.Count, value=1)


# Direct reply-to: each new channel consumes the pseudo-queue before it publishes.
replies = AmqpClient(
    AmqpSettings.from_environment(), logger=logger, on_new_channel=lambda channel: channel.basic_consume(DIRECT_REPLY_TO, on_reply, auto_ack=True)
)


def validate_request(event: Any) -> QuoteRequestV1:
    try:
        return QuoteRequestV1.model_validate({"schema_version": 1, **event} if isinstance(event, dict) else event)
    except ValidationError as exc:
        raise ValueError(f"invalid quote request, nothing sent: {validation_reason(exc, root='request')}") from exc


def request_quote(request: QuoteRequestV1, wait_seconds: float) -> tuple[str, dict[str, Any]]:
    """Publish the request, wait for its reply; return the correlation id and the quote."""
    correlation_id = str(uuid.uuid4())
    properties = pika.BasicProperties(
        content_type="application/json",
        delivery_mode=pika.DeliveryMode.Persistent,
        correlation_id=correlation_id,
        reply_to=DIRECT_REPLY_TO,
        message_id=correlation_id,
        expiration=str(math.ceil(wait_seconds * 1000)),
        timestamp=int(time.time()),
    )
    awaited.add(correlation_id)
    deadline = time.monotonic() + wait_seconds
    try:
        replies.publish("", REQUEST_QUEUE, request.model_dump_json().encode(), properties)
        logger.info("Quote request sent", extra={"correlation_id": correlation_id, "queue": REQUEST_QUEUE})
        while correlation_id not in received and (left := deadline - time.monotonic()) > 0:
            replies.process_events(min(left, 1.0))
    except PublishNotConfirmed as exc:
        raise BrokerError(f"request {correlation_id} {exc.reason}") from exc
    except pika.exceptions.AMQPError as exc:
        replies.reset()
        raise BrokerError(f"request {correlation_id} was confirmed, but the connection was lost while waiting for its reply ({exc!r})") from exc
    finally:
        awaited.discard(correlation_id)
    if correlation_id not in received:
        raise ReplyTimeout(
            f"no reply to quote request {correlation_id} within {wait_seconds:.1f} s; the broker confirmed the request, "
            f"which leaves queue {REQUEST_QUEUE!r} unanswered when its {wait_seconds:.1f} s expiration passes"
        )
    try:
        answer = QUOTE_ANSWERS.parse(received.pop(correlation_id))
    except Exception as exc:  # not JSON, nested too deeply, neither answer: whatever reading it raises
        raise QuoteRefused(f"the reply to quote request {correlation_id} is not a quote answer: {reason_of(exc, what='the reply')}") from exc
    if answer.status == "error":
        raise QuoteRefused(f"the quote service refused request {correlation_id}: {answer.error}")
    return correlation_id, answer.quote.model_dump(mode="json")


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    wait_seconds = min(REPLY_TIMEOUT_SECONDS, context.get_remaining_time_in_millis() / 1000 - SAFETY_MARGIN_SECONDS)
    try:
        request = validate_request(event)
        if wait_seconds < MIN_WAIT_SECONDS:
            raise ValueError(f"only {wait_seconds:.1f} s would be left to wait for a reply (at least {MIN_WAIT_SECONDS} s needed), nothing sent")
    except ValueError as exc:
        logger.error("Request refused, nothing sent", extra={"reason": str(exc)})
        metrics.add_metric(name="RequestsRefused", unit=MetricUnit.Count, value=1)
        raise
    outcome = "QuoteRequestsNotSent"
    try:
        correlation_id, quote = request_quote(request, wait_seconds)
        outcome = "QuotesReceived"
    except (ReplyTimeout, QuoteRefused, BrokerError) as exc:
        outcome = {ReplyTimeout: "QuoteRequestsTimedOut", QuoteRefused: "QuoteRequestsRefused"}.get(type(exc), outcome)
        logger.error("No quote", extra={"reason": str(exc), "outcome": outcome})
        raise
    finally:
        metrics.add_metric(name=outcome, unit=MetricUnit.Count, value=1)
    logger.info("Quote received", extra={"correlation_id": correlation_id})
    return {"correlation_id": correlation_id, "quote": quote}
