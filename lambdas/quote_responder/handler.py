"""Answer the price-quote requests on the warehouse's request queue.

Invoked by Lambda's RabbitMQ event source mapping with
``{"eventSource": "aws:rmq", "eventSourceArn": ..., "rmqMessagesByQueue":
{"<queue>::<virtual host>": [message, ...]}}``; each message has its AMQP
``basicProperties`` (``correlationId``, ``replyTo``, ``contentType``, ...), a
``redelivered`` flag and its body base64-encoded in ``data``. The body is a
quote request in schema version 1::

    {"schema_version": 1, "customer_id": "c-...", "items": [{"sku": "SKU-...", "quantity": 3}, ...]}

(1 to 50 items, 1 to 10,000 of each; other fields are ignored).

Each request gets one reply, published through the default exchange to the
request's ``replyTo`` with the request's ``correlationId``, as JSON, on a
channel in confirm mode, in the virtual host the request came from:
``{"status": "ok", "quote": {"customer_id", "currency", "lines": [{"sku",
"quantity", "unit_price", "discount", "amount"}], "total"}}`` with amounts as
decimal strings. The price rule: the unit price of a SKU is 5.00 EUR plus the
CRC-32 of its UTF-8 bytes modulo 9,501 in cents (so 5.00 to 100.00 EUR, the same
every time); a line of 10 units or more gets 10 % off, rounded half up to the
cent; the total is the sum of the lines.

Bad requests (``data`` not base64, a body that is not UTF-8 JSON or nested
too deeply to decode, not a valid request, no ``correlationId``, or any other
error while reading it) get ``{"status": "error", "error": "<reason>"}`` when
they have a ``replyTo``. A request without ``replyTo`` cannot be
answered at all: it is logged as an error with its properties and data,
counted (UnanswerableRequests) and fails the batch like an unsent reply, so
that the broker keeps it: after the queue's delivery limit it is in the
dead-letter queue, which alarms, instead of gone. So does a message in a
shape Lambda never sends (not an object, ``basicProperties`` not an object,
a queue's messages not a list), named by its queue and place in the batch.

Failures: Amazon MQ event source mappings have no partial batch response; an
invocation succeeds or fails as a whole. So every message of the batch is
handled first, and if any reply could not be published (the connection was
lost, the broker refused it, a named reply queue does not exist) the
invocation then raises RepliesNotSent, listing each one. The broker
redelivers the whole batch, and dead-letters it once the queue's delivery
limit is reached. The answers are deterministic, so a request answered twice
gets the same quote twice; requesters drop replies they are not waiting for.

Replies to RabbitMQ's direct reply-to addresses (``amq.rabbitmq.reply-to.*``)
are published without ``mandatory``: RabbitMQ 3.x reports such a reply as
unroutable even when it has delivered it, and it drops a reply whose
requester has gone without telling the publisher. For them the confirm means
the broker took the reply, not that the requester got it; the requester's
own timeout covers the rest. Replies to named queues are published
``mandatory``, so a missing queue is an error.

One connection and channel are kept per virtual host and execution
environment, checked at the start of each invocation and made again when
gone. Credentials come from the Secrets Manager secret, cached; when the
broker refuses them the secret is read again once, in case it was rotated.

Environment:
    BROKER_SECRET_ARN           secret with {"username": ..., "password": ...} (required)
    BROKER_HOST                 broker host name (required)
    BROKER_PORT                 default 5671 (AMQPS on Amazon MQ)
    BROKER_TLS                  "true" (default) or "false"; TLS verifies the certificate against
                                the system CA store and checks the host name
    VIRTUAL_HOST                used when an event's queue key names none, default "/"
    SECRET_MAX_AGE_SECONDS      how long the credentials are cached, default 300
"""

import base64
import binascii
import json
import os
import ssl
import time
import zlib
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any

import pika
import pika.exceptions
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.typing import LambdaContext
from pika.adapters.blocking_connection import BlockingChannel
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints, ValidationError, field_validator

SCHEMA_VERSION = 1
MAX_ITEMS = 50
CONTENT_TYPE = "application/json"
CURRENCY = "EUR"
BASE_PRICE_CENTS = 500
PRICE_SPREAD_CENTS = 9_501
VOLUME_DISCOUNT_QUANTITY = 10
VOLUME_DISCOUNT = Decimal("0.10")
CENT = Decimal("0.01")
DIRECT_REPLY_TO_PREFIX = "amq.rabbitmq.reply-to."
HEARTBEAT_SECONDS = 60
BLOCKED_CONNECTION_TIMEOUT_SECONDS = 10
# How much of an unanswerable message's data goes into the log.
MAX_LOGGED_DATA_CHARS = 4096


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
SECRET_MAX_AGE_SECONDS = int(os.environ.get("SECRET_MAX_AGE_SECONDS", "300"))

logger = Logger()
tracer = Tracer()
metrics = Metrics()


def broker_url(vhost: str) -> str:
    return f"{'amqps' if BROKER_TLS else 'amqp'}://{BROKER_HOST}:{BROKER_PORT}/{vhost}"


class BrokerError(Exception):
    """The broker is not usable: not reachable, or the credentials or virtual host refused."""


class BadRequest(ValueError):
    """The message is not a request that can be quoted."""


class ReplyNotSent(Exception):
    """The broker did not confirm a reply."""


class RepliesNotSent(Exception):
    """Some requests of the batch could not be answered; the batch goes back to the broker."""

    def __init__(self, failures: list[str], total: int):
        self.failures = failures
        super().__init__(f"{len(failures)} of {total} request(s) not answered, the batch goes back to the broker: " + "; ".join(failures))


class Item(BaseModel):
    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")

    sku: Annotated[str, StringConstraints(pattern=r"^SKU-[A-Za-z0-9_-]{1,64}$")]
    quantity: Annotated[StrictInt, Field(ge=1, le=10_000)]


class QuoteRequest(BaseModel):
    """A quote request as requesters send it; other fields are ignored."""

    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")

    schema_version: StrictInt
    customer_id: Annotated[str, StringConstraints(pattern=r"^c-[A-Za-z0-9_-]{1,64}$")]
    items: Annotated[list[Item], Field(min_length=1, max_length=MAX_ITEMS)]

    @field_validator("schema_version")
    @classmethod
    def _supported_version(cls, value: int) -> int:
        if value != SCHEMA_VERSION:
            raise ValueError(f"unsupported schema_version {value}, expected {SCHEMA_VERSION}")
        return value


def unit_price(sku: str) -> Decimal:
    """The same price for a SKU every time: 5.00 to 100.00."""
    return Decimal(BASE_PRICE_CENTS + zlib.crc32(sku.encode()) % PRICE_SPREAD_CENTS) / 100


def price(request: QuoteRequest) -> dict[str, Any]:
    lines = []
    total = Decimal("0.00")
    for item in request.items:
        unit = unit_price(item.sku)
        gross = unit * item.quantity
        discount = (gross * VOLUME_DISCOUNT).quantize(CENT, rounding=ROUND_HALF_UP) if item.quantity >= VOLUME_DISCOUNT_QUANTITY else Decimal("0.00")
        amount = gross - discount
        total += amount
        lines.append({"sku": item.sku, "quantity": item.quantity, "unit_price": f"{unit:.2f}", "discount": f"{discount:.2f}", "amount": f"{amount:.2f}"})
    return {"customer_id": request.customer_id, "currency": CURRENCY, "lines": lines, "total": f"{total:.2f}"}


def parse_request(message: dict[str, Any]) -> QuoteRequest:
    data = message.get("data")
    if not isinstance(data, str):
        raise BadRequest("the message has no data")
    try:
        body = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest(f"the data is not base64 ({exc})") from exc
    try:
        document = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise BadRequest(f"the body is not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise BadRequest(f"the body is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from exc
    except Exception as exc:  # RecursionError for a body nested too deeply, or anything else decoding raises
        raise BadRequest(f"the body is not JSON this service can read ({type(exc).__name__}: {exc})") from exc
    try:
        return QuoteRequest.model_validate(document, strict=True)
    except ValidationError as exc:
        reason = ", ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'body'}: {error['msg']}" for error in exc.errors(include_url=False, include_input=False)
        )
        raise BadRequest(f"not a valid quote request: {reason}") from exc
    except Exception as exc:  # any failure to read one request is that request's error reply
        raise BadRequest(f"not a valid quote request: {type(exc).__name__}: {exc}") from exc


def _credentials(force_fetch: bool) -> pika.PlainCredentials:
    try:
        secret = parameters.get_secret(BROKER_SECRET_ARN, transform="json", max_age=SECRET_MAX_AGE_SECONDS, force_fetch=force_fetch)
    except (parameters.exceptions.GetParameterError, parameters.exceptions.TransformParameterError) as exc:
        raise BrokerError(f"could not read the broker credentials from {BROKER_SECRET_ARN}: {exc}") from exc
    if not (isinstance(secret, dict) and isinstance(secret.get("username"), str) and isinstance(secret.get("password"), str)):
        raise BrokerError(f'the secret {BROKER_SECRET_ARN} must be a JSON object with string "username" and "password"')
    return pika.PlainCredentials(secret["username"], secret["password"])


def connection_parameters(credentials: pika.PlainCredentials, vhost: str) -> pika.ConnectionParameters:
    ssl_options = None
    if BROKER_TLS:
        # The system CA store, certificate required, host name checked.
        context = ssl.create_default_context()
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        ssl_options = pika.SSLOptions(context, server_hostname=BROKER_HOST)
    return pika.ConnectionParameters(
        host=BROKER_HOST,
        port=BROKER_PORT,
        virtual_host=vhost,
        credentials=credentials,
        ssl_options=ssl_options,
        heartbeat=HEARTBEAT_SECONDS,
        blocked_connection_timeout=BLOCKED_CONNECTION_TIMEOUT_SECONDS,
        connection_attempts=2,
        retry_delay=1,
        socket_timeout=5,
        stack_timeout=15,
        client_properties={"connection_name": os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "quote_responder")},
    )


def _connect(vhost: str) -> pika.BlockingConnection:
    for attempt in (1, 2):
        credentials = _credentials(force_fetch=attempt == 2)
        try:
            return pika.BlockingConnection(connection_parameters(credentials, vhost))
        except (pika.exceptions.ProbableAuthenticationError, pika.exceptions.AuthenticationError) as exc:
            if attempt == 1:
                logger.warning("The broker refused the credentials; reading the secret again in case it was rotated")
                continue
            raise BrokerError(f"{broker_url(vhost)} refused the credentials in {BROKER_SECRET_ARN} (user {credentials.username!r}): {exc}") from exc
        except pika.exceptions.ProbableAccessDeniedError as exc:
            raise BrokerError(f"{broker_url(vhost)}: user {credentials.username!r} may not use virtual host {vhost!r}: {exc}") from exc
        except (pika.exceptions.AMQPError, OSError) as exc:  # OSError: socket and TLS errors pika lets through
            raise BrokerError(f"could not connect to {broker_url(vhost)}: {exc!r}") from exc
    raise AssertionError("unreachable")


class Broker:
    """One connection and one confirming channel to a virtual host, made again when gone."""

    def __init__(self, vhost: str) -> None:
        self.vhost = vhost
        self.connection: pika.BlockingConnection | None = None
        self.channel: BlockingChannel | None = None

    def _alive(self) -> bool:
        if self.connection is None or self.channel is None or not self.connection.is_open or not self.channel.is_open:
            return False
        try:
            # Reads what arrived while the environment was frozen: a close from the broker, end of stream, missed heartbeats.
            self.connection.process_data_events(time_limit=0)
        except pika.exceptions.AMQPError as exc:
            logger.info("The broker connection is gone; connecting again", extra={"reason": repr(exc), "vhost": self.vhost})
            return False
        return self.connection.is_open and self.channel.is_open

    def reply_channel(self) -> BlockingChannel:
        if self._alive():
            return self.channel
        self.reset()
        if self.connection is None:
            self.connection = _connect(self.vhost)
        try:
            channel = self.connection.channel()
            channel.confirm_delivery()
        except pika.exceptions.AMQPError as exc:
            self.reset()
            raise BrokerError(f"could not open a channel on {broker_url(self.vhost)}: {exc!r}") from exc
        self.channel = channel
        return channel

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


brokers: dict[str, Broker] = {}


def broker_for(vhost: str) -> Broker:
    if vhost not in brokers:
        brokers[vhost] = Broker(vhost)
    return brokers[vhost]


def send_reply(vhost: str, reply_to: str, correlation_id: str | None, document: dict[str, Any]) -> None:
    """Publish one reply and wait for the broker's confirm; raise BrokerError or ReplyNotSent otherwise."""
    broker = broker_for(vhost)
    channel = broker.reply_channel()  # BrokerError when the virtual host cannot be reached
    properties = pika.BasicProperties(
        content_type=CONTENT_TYPE,
        delivery_mode=pika.DeliveryMode.Persistent,
        correlation_id=correlation_id,
        timestamp=int(time.time()),
    )
    mandatory = not reply_to.startswith(DIRECT_REPLY_TO_PREFIX)
    try:
        channel.basic_publish("", reply_to, json.dumps(document, separators=(",", ":")).encode(), properties, mandatory=mandatory)
    except pika.exceptions.UnroutableError as exc:
        raise ReplyNotSent(f"unroutable: there is no queue {reply_to!r} in virtual host {vhost!r}") from exc
    except pika.exceptions.NackError as exc:
        raise ReplyNotSent("the broker refused the reply (nack)") from exc
    except pika.exceptions.AMQPError as exc:
        broker.reset()
        raise ReplyNotSent(f"the connection was lost before the broker confirmed the reply ({exc!r})") from exc


def _queue_and_vhost(key: str) -> tuple[str, str]:
    if "::" in key:
        queue, _, vhost = key.rpartition("::")
        return queue, vhost
    return key, VIRTUAL_HOST


def malformed(message: Any) -> str | None:
    """Why a message is not in the shape Lambda sends, or None when it is."""
    if not isinstance(message, dict):
        return f"not a message object ({type(message).__name__})"
    properties = message.get("basicProperties")
    if properties is not None and not isinstance(properties, dict):
        return f"basicProperties is {type(properties).__name__}, expected an object"
    return None


def unanswerable(label: str, reason: str, message: Any) -> str:
    """Log and count a message that cannot be answered; the failure that sends the batch back to the broker."""
    logger.error(
        "Message cannot be answered, left to the broker's dead-lettering",
        extra={"at": label, "reason": reason, "data": str(message)[:MAX_LOGGED_DATA_CHARS]},
    )
    metrics.add_metric(name="UnanswerableRequests", unit=MetricUnit.Count, value=1)
    return f"{label}: {reason}"


@dataclass
class Outcome:
    answered: bool
    failure: str | None = None  # set when the request could not be answered and the batch must come back


@tracer.capture_method
def answer(message: dict[str, Any], queue: str, vhost: str, unreachable: dict[str, str]) -> Outcome:
    """Answer one request. ``unreachable`` maps the virtual hosts this invocation could not connect to to the reason."""
    properties = message.get("basicProperties") or {}
    reply_to = properties.get("replyTo") or None
    correlation_id = properties.get("correlationId") or None
    try:
        request = parse_request(message)
        if correlation_id is None:
            raise BadRequest("no correlationId: the requester could not match a reply to its request")
        document = {"status": "ok", "quote": price(request)}
    except BadRequest as exc:
        document = {"status": "error", "error": str(exc)}
    if reply_to is None:
        logger.error(
            "Request without replyTo cannot be answered, left to the broker's dead-lettering",
            extra={
                "queue": queue,
                "reason": document.get("error", "no replyTo"),
                "basic_properties": properties,
                "redelivered": message.get("redelivered"),
                "data": str(message.get("data"))[:MAX_LOGGED_DATA_CHARS],
            },
        )
        metrics.add_metric(name="UnanswerableRequests", unit=MetricUnit.Count, value=1)
        return Outcome(answered=False, failure=f"{queue}: a request without replyTo ({document.get('error', 'no replyTo')})")
    if document["status"] == "error":
        logger.warning("Bad request, answering with an error", extra={"queue": queue, "correlation_id": correlation_id, "reason": document["error"]})
    label = f"{queue} correlationId {correlation_id}"
    if vhost in unreachable:
        return Outcome(answered=False, failure=f"{label}: {unreachable[vhost]}")
    try:
        send_reply(vhost, reply_to, correlation_id, document)
    except BrokerError as exc:
        unreachable[vhost] = str(exc)
        return Outcome(answered=False, failure=f"{label}: {exc}")
    except ReplyNotSent as exc:
        return Outcome(answered=False, failure=f"{label}: {exc}")
    metrics.add_metric(name="QuotesSent" if document["status"] == "ok" else "ErrorRepliesSent", unit=MetricUnit.Count, value=1)
    logger.info("Reply sent", extra={"queue": queue, "correlation_id": correlation_id, "status": document["status"], "redelivered": message.get("redelivered")})
    return Outcome(answered=True)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    by_queue = event.get("rmqMessagesByQueue") if isinstance(event, dict) else None
    if not isinstance(by_queue, dict):
        metrics.add_metric(name="EventsRefused", unit=MetricUnit.Count, value=1)
        logger.error("Not a RabbitMQ event", extra={"keys": sorted(event) if isinstance(event, dict) else type(event).__name__})
        raise ValueError('not a RabbitMQ event: no "rmqMessagesByQueue" object')
    failures: list[str] = []
    unreachable: dict[str, str] = {}
    total = answered = 0
    for key, messages in by_queue.items():
        queue, vhost = _queue_and_vhost(key)
        if not isinstance(messages, list):
            total += 1
            failures.append(unanswerable(queue, f"the messages are {type(messages).__name__}, expected a list", messages))
            continue
        for index, message in enumerate(messages):
            total += 1
            problem = malformed(message)
            if problem is not None:
                failures.append(unanswerable(f"{queue}[{index}]", problem, message))
                continue
            outcome = answer(message, queue, vhost, unreachable)
            answered += outcome.answered
            if outcome.failure is not None:
                failures.append(outcome.failure)
    if failures:
        metrics.add_metric(name="RepliesNotSent", unit=MetricUnit.Count, value=len(failures))
        error = RepliesNotSent(failures, total)
        logger.error("Requests not answered", extra={"reason": str(error)})
        raise error
    return {"requests": total, "answered": answered}
