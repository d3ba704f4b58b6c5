"""Ask the warehouse for a price quote over AMQP, and wait for the answer.

Invoked directly with ``{"customer_id": "c-...", "items": [{"sku": "SKU-...",
"quantity": 3}, ...]}`` (1 to 50 items); a bad request sends nothing and fails
with a ValueError that names the reason.

The request goes to the queue ``REQUEST_QUEUE`` through the default exchange,
as persistent JSON with a fresh ``correlation_id`` and ``reply_to`` set to
``amq.rabbitmq.reply-to``: RabbitMQ's direct reply-to, where the reply comes
straight back on the requesting channel, with no reply queue to declare or
clean up. The channel consumes from that pseudo-queue (in no-ack mode, as
RabbitMQ requires) before it publishes. The request is published ``mandatory``
on a channel in confirm mode, so a missing request queue or a refused message
is an error, not a request nobody will ever see.

The function then waits for the reply whose ``correlation_id`` matches, for
``REPLY_TIMEOUT_SECONDS`` and never past the invocation's remaining time
(less a second, to report the timeout). Replies with another correlation id
(late answers to earlier, timed-out requests) are logged and dropped. The
request carries the wait as its ``expiration``, so a request nobody takes in
time leaves the queue (and goes to its dead-letter exchange, if it has one)
instead of being answered for a requester that has gone.

A reply ``{"status": "ok", "quote": {...}}`` is returned as ``{"correlation_id":
..., "quote": {...}}``; ``{"status": "error", "error": "..."}`` raises
QuoteRefused with the responder's reason; no reply in time raises
ReplyTimeout. The request was confirmed by the broker in both cases.

One connection and channel are kept per execution environment, checked at
the start of each invocation and made again when gone. Credentials come from
the Secrets Manager secret, cached; when the broker refuses them the secret
is read again once, in case it was rotated.

Environment:
    BROKER_SECRET_ARN           secret with {"username": ..., "password": ...} (required)
    BROKER_HOST                 broker host name (required)
    BROKER_PORT                 default 5671 (AMQPS on Amazon MQ)
    BROKER_TLS                  "true" (default) or "false"; TLS verifies the certificate against
                                the system CA store and checks the host name
    VIRTUAL_HOST                default "/"
    REQUEST_QUEUE               queue the quote responder reads (required)
    REPLY_TIMEOUT_SECONDS       longest wait for the reply, default 10
    SECRET_MAX_AGE_SECONDS      how long the credentials are cached, default 300
"""

import json
import math
import os
import ssl
import time
import uuid
from typing import Annotated, Any

import pika
import pika.exceptions
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.typing import LambdaContext
from pika.adapters.blocking_connection import BlockingChannel
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints, ValidationError

SCHEMA_VERSION = 1
MAX_ITEMS = 50
CONTENT_TYPE = "application/json"
DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
HEARTBEAT_SECONDS = 60
BLOCKED_CONNECTION_TIMEOUT_SECONDS = 10
# Time kept back from the invocation's remaining time, to report a timeout before Lambda stops the function.
SAFETY_MARGIN_SECONDS = 1.0
# Below this there is no point in asking: nobody could answer in time.
MIN_WAIT_SECONDS = 0.5


def _flag(name: str, default: str) -> bool:
    value = os.environ.get(name, default).strip().lower()
    if value not in ("true", "false"):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return value == "true"


BROKER_SECRET_ARN = os.environ["BROKER_SECRET_ARN"]
BROKER_HOST = os.environ["BROKER_HOST"]
BROKER_PORT = int(os.environ.get("BROKER_PORT", "5671"))
BROKER_TLS = _flag("BROKER_TLS", "true")
VIRTUAL_HOST = os.environ.get("VIRTUAL_HOST", "/")
REQUEST_QUEUE = os.environ["REQUEST_QUEUE"]
REPLY_TIMEOUT_SECONDS = float(os.environ.get("REPLY_TIMEOUT_SECONDS", "10"))
SECRET_MAX_AGE_SECONDS = int(os.environ.get("SECRET_MAX_AGE_SECONDS", "300"))
BROKER_URL = f"{'amqps' if BROKER_TLS else 'amqp'}://{BROKER_HOST}:{BROKER_PORT}/{VIRTUAL_HOST}"

logger = Logger()
tracer = Tracer()
metrics = Metrics()


class BrokerError(Exception):
    """The broker is not usable, or did not confirm the request."""


class ReplyTimeout(Exception):
    """The request was confirmed, but no reply came in time."""


class QuoteRefused(Exception):
    """The responder answered with an error."""


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sku: Annotated[str, StringConstraints(strict=True, pattern=r"^SKU-[A-Za-z0-9_-]{1,64}$")]
    quantity: Annotated[StrictInt, Field(ge=1, le=10_000)]


class QuoteRequest(BaseModel):
    """What a caller asks a quote for; unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    customer_id: Annotated[str, StringConstraints(strict=True, pattern=r"^c-[A-Za-z0-9_-]{1,64}$")]
    items: Annotated[tuple[Item, ...], Field(min_length=1, max_length=MAX_ITEMS)]

    def body(self) -> bytes:
        document = {
            "schema_version": SCHEMA_VERSION,
            "customer_id": self.customer_id,
            "items": [{"sku": item.sku, "quantity": item.quantity} for item in self.items],
        }
        return json.dumps(document, separators=(",", ":")).encode()


def validate_request(event: Any) -> QuoteRequest:
    try:
        return QuoteRequest.model_validate(event)
    except ValidationError as exc:
        reason = ", ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'request'}: {error['msg']}" for error in exc.errors(include_url=False, include_input=False)
        )
        raise ValueError(f"invalid quote request, nothing sent: {reason}") from exc


def _credentials(force_fetch: bool) -> pika.PlainCredentials:
    try:
        secret = parameters.get_secret(BROKER_SECRET_ARN, transform="json", max_age=SECRET_MAX_AGE_SECONDS, force_fetch=force_fetch)
    except (parameters.exceptions.GetParameterError, parameters.exceptions.TransformParameterError) as exc:
        raise BrokerError(f"could not read the broker credentials from {BROKER_SECRET_ARN}: {exc}") from exc
    if not (isinstance(secret, dict) and isinstance(secret.get("username"), str) and isinstance(secret.get("password"), str)):
        raise BrokerError(f'the secret {BROKER_SECRET_ARN} must be a JSON object with string "username" and "password"')
    return pika.PlainCredentials(secret["username"], secret["password"])


def connection_parameters(credentials: pika.PlainCredentials) -> pika.ConnectionParameters:
    ssl_options = None
    if BROKER_TLS:
        # The system CA store, certificate required, host name checked.
        context = ssl.create_default_context()
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        ssl_options = pika.SSLOptions(context, server_hostname=BROKER_HOST)
    return pika.ConnectionParameters(
        host=BROKER_HOST,
        port=BROKER_PORT,
        virtual_host=VIRTUAL_HOST,
        credentials=credentials,
        ssl_options=ssl_options,
        heartbeat=HEARTBEAT_SECONDS,
        blocked_connection_timeout=BLOCKED_CONNECTION_TIMEOUT_SECONDS,
        connection_attempts=2,
        retry_delay=1,
        socket_timeout=5,
        stack_timeout=15,
        client_properties={"connection_name": os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "quote_requester")},
    )


def _connect() -> pika.BlockingConnection:
    for attempt in (1, 2):
        credentials = _credentials(force_fetch=attempt == 2)
        try:
            return pika.BlockingConnection(connection_parameters(credentials))
        except (pika.exceptions.ProbableAuthenticationError, pika.exceptions.AuthenticationError) as exc:
            if attempt == 1:
                logger.warning("The broker refused the credentials; reading the secret again in case it was rotated")
                continue
            raise BrokerError(f"{BROKER_URL} refused the credentials in {BROKER_SECRET_ARN} (user {credentials.username!r}): {exc}") from exc
        except pika.exceptions.ProbableAccessDeniedError as exc:
            raise BrokerError(f"{BROKER_URL}: user {credentials.username!r} may not use virtual host {VIRTUAL_HOST!r}: {exc}") from exc
        except (pika.exceptions.AMQPError, OSError) as exc:  # OSError: socket and TLS errors pika lets through
            raise BrokerError(f"could not connect to {BROKER_URL}: {exc!r}") from exc
    raise AssertionError("unreachable")


class Replies:
    """One connection and channel per execution environment, consuming its direct reply-to pseudo-queue.

    Replies are kept by correlation id until the invocation waiting for one takes it.
    """

    def __init__(self) -> None:
        self.connection: pika.BlockingConnection | None = None
        self.channel: BlockingChannel | None = None
        self.awaited: str | None = None
        self.received: dict[str, tuple[pika.BasicProperties, bytes]] = {}

    def _on_reply(self, channel: BlockingChannel, method: Any, properties: pika.BasicProperties, body: bytes) -> None:
        correlation_id = properties.correlation_id
        if correlation_id is not None and correlation_id == self.awaited:
            self.received[correlation_id] = (properties, body)
            return
        logger.warning("Reply for no request waiting here, dropped", extra={"correlation_id": correlation_id, "bytes": len(body)})
        metrics.add_metric(name="UnexpectedReplies", unit=MetricUnit.Count, value=1)

    def _alive(self) -> bool:
        if self.connection is None or self.channel is None or not self.connection.is_open or not self.channel.is_open:
            return False
        try:
            # Reads what arrived while the environment was frozen: a close from the broker, end of stream,
            # missed heartbeats, late replies.
            self.connection.process_data_events(time_limit=0)
        except pika.exceptions.AMQPError as exc:
            logger.info("The broker connection is gone; connecting again", extra={"reason": repr(exc)})
            return False
        return self.connection.is_open and self.channel.is_open

    def channel_for_requests(self) -> BlockingChannel:
        if self._alive():
            return self.channel
        self.channel = None
        if self.connection is None or not self.connection.is_open:
            self.connection = _connect()
        try:
            channel = self.connection.channel()
            # Direct reply-to: consume (no-ack) on the channel that will publish, before publishing.
            channel.basic_consume(DIRECT_REPLY_TO, self._on_reply, auto_ack=True)
            channel.confirm_delivery()
        except pika.exceptions.AMQPError as exc:
            self.reset()
            raise BrokerError(f"could not open a reply channel on {BROKER_URL}: {exc!r}") from exc
        self.channel = channel
        return channel

    def wait_for(self, correlation_id: str, seconds: float) -> tuple[pika.BasicProperties, bytes] | None:
        """Process the connection's events until the reply comes or the time is up."""
        deadline = time.monotonic() + seconds
        while correlation_id not in self.received:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.connection.process_data_events(time_limit=min(left, 1.0))
        return self.received.pop(correlation_id)

    def reset(self) -> None:
        self.channel = None
        if self.connection is not None and not self.connection.is_open:
            self.connection = None

    def close(self) -> None:
        if self.connection is not None and self.connection.is_open:
            try:
                self.connection.close()
            except pika.exceptions.AMQPError:
                pass
        self.connection = None
        self.channel = None


replies = Replies()


@tracer.capture_method
def request_quote(request: QuoteRequest, wait_seconds: float) -> tuple[str, dict[str, Any]]:
    """Publish the request, wait for its reply; return the correlation id and the decoded reply."""
    channel = replies.channel_for_requests()
    correlation_id = str(uuid.uuid4())
    properties = pika.BasicProperties(
        content_type=CONTENT_TYPE,
        delivery_mode=pika.DeliveryMode.Persistent,
        correlation_id=correlation_id,
        reply_to=DIRECT_REPLY_TO,
        message_id=correlation_id,
        expiration=str(math.ceil(wait_seconds * 1000)),
        timestamp=int(time.time()),
    )
    replies.awaited = correlation_id
    try:
        try:
            channel.basic_publish("", REQUEST_QUEUE, request.body(), properties, mandatory=True)
        except pika.exceptions.UnroutableError as exc:
            raise BrokerError(f"request {correlation_id} unroutable: there is no queue {REQUEST_QUEUE!r} in virtual host {VIRTUAL_HOST!r}") from exc
        except pika.exceptions.NackError as exc:
            raise BrokerError(f"the broker refused request {correlation_id} (nack)") from exc
        except pika.exceptions.AMQPError as exc:
            replies.reset()
            reason = f"the connection was lost before the broker confirmed request {correlation_id}, so it may or may not be queued ({exc!r})"
            raise BrokerError(reason) from exc
        logger.info("Quote request sent", extra={"correlation_id": correlation_id, "queue": REQUEST_QUEUE})
        try:
            reply = replies.wait_for(correlation_id, wait_seconds)
        except pika.exceptions.AMQPError as exc:
            replies.reset()
            raise BrokerError(f"request {correlation_id} was confirmed, but the connection was lost while waiting for its reply ({exc!r})") from exc
    finally:
        replies.awaited = None
    if reply is None:
        raise ReplyTimeout(
            f"no reply to quote request {correlation_id} within {wait_seconds:.1f} s; the broker confirmed the request, "
            f"which leaves queue {REQUEST_QUEUE!r} unanswered when its {wait_seconds:.1f} s expiration passes"
        )
    properties, body = reply
    try:
        document = json.loads(body)
    except Exception as exc:  # not UTF-8, not JSON, nested too deeply (RecursionError): whatever decoding raises
        raise QuoteRefused(f"the reply to quote request {correlation_id} is not JSON: {type(exc).__name__}: {exc}") from exc
    if not isinstance(document, dict) or document.get("status") not in ("ok", "error"):
        raise QuoteRefused(f'the reply to quote request {correlation_id} has no "status" of "ok" or "error"')
    if document["status"] == "error":
        raise QuoteRefused(f"the quote service refused request {correlation_id}: {document.get('error', 'no reason given')}")
    if not isinstance(document.get("quote"), dict):
        raise QuoteRefused(f'the reply to quote request {correlation_id} has no "quote" object')
    return correlation_id, document["quote"]


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
    try:
        correlation_id, quote = request_quote(request, wait_seconds)
    except ReplyTimeout as exc:
        metrics.add_metric(name="QuoteRequestsTimedOut", unit=MetricUnit.Count, value=1)
        logger.error("No reply in time", extra={"reason": str(exc)})
        raise
    except QuoteRefused as exc:
        metrics.add_metric(name="QuoteRequestsRefused", unit=MetricUnit.Count, value=1)
        logger.error("Quote refused", extra={"reason": str(exc)})
        raise
    except BrokerError as exc:
        metrics.add_metric(name="QuoteRequestsNotSent", unit=MetricUnit.Count, value=1)
        logger.error("Quote request failed", extra={"reason": str(exc)})
        raise
    metrics.add_metric(name="QuotesReceived", unit=MetricUnit.Count, value=1)
    logger.info("Quote received", extra={"correlation_id": correlation_id})
    return {"correlation_id": correlation_id, "quote": quote}
