"""Amazon MQ: the events Lambda's event source mappings send, their all-or-nothing batches, and the broker secret.

Decoding (parse)::

    batch = decode_rabbitmq_event(event)          # or decode_activemq_event(event), or decode_event(event)
    results = process_batch(batch, handle, logger=logger, metrics=metrics)

The event shapes are those of AWS's Lambda developer guide, "Using Lambda with
Amazon MQ" (https://docs.aws.amazon.com/lambda/latest/dg/with-mq.html,
"Example Amazon MQ record events"):

- RabbitMQ: ``{"eventSource": "aws:rmq", "eventSourceArn": ..., "rmqMessagesByQueue":
  {"<queue>::<virtual host>": [{"basicProperties": {...}, "redelivered": false,
  "data": "<base64>"}, ...]}}``. ``basicProperties`` holds the AMQP properties
  (``contentType``, ``contentEncoding``, ``headers``, ``deliveryMode``,
  ``priority``, ``correlationId``, ``replyTo``, ``expiration``, ``messageId``,
  ``timestamp``, ``type``, ``userId``, ``appId``, ``clusterId``, ``bodySize``);
  text header values arrive as ``{"bytes": [...]}``, numbers as numbers.
- ActiveMQ: ``{"eventSource": "aws:mq", "eventSourceArn": ..., "messages": [{"messageID",
  "messageType", "deliveryMode", "replyTo", "type", "expiration", "priority",
  "correlationId" (real events spell it ``correlationID``), "redelivered",
  "destination": {"physicalName"}, "data", "timestamp", "brokerInTime",
  "brokerOutTime", "properties": {...}}]}``. The guide says Lambda consumes
  only JMS ``TextMessage`` and ``BytesMessage`` (``jms/text-message``,
  ``jms/bytes-message``), and supports JMS custom properties. An older edition
  of the guide spelled the source ``aws:amq`` and the queue ``physicalname``;
  both are read.

Each message becomes an :class:`MQMessage` (queue, body bytes or text,
properties, redelivered flag, ids). A message in a shape Lambda never sends
(not an object, ``basicProperties`` or ``properties`` not an object, a
queue's messages not a list) becomes a :class:`MalformedMessage` at its place
in the batch, with the reason: that message's failure, never the batch's. An
event that is not the expected kind at all raises :class:`NotAnAmazonMQEvent`
(a ``ValueError``) that names what was expected.

Batches (report): Amazon MQ event source mappings have no partial batch
response. "If your function returns an error for any of the messages in a
batch, Lambda retries the whole batch of messages until processing succeeds
or the messages expire" (the guide above); the broker then dead-letters them
(ActiveMQ's redelivery policy, RabbitMQ's delivery limit). So
:func:`process_batch` handles every message, collects each failure with its
reason, and raises one :class:`BatchFailed` at the end that names every
failed message by its place and id. The messages that went through are
delivered again with the rest: their effect must be idempotent, keyed on
:attr:`MQMessage.id` or on a business id.

Broker clients (``messaging_runtime.amqp``, ``messaging_runtime.stomp``) share
:func:`read_broker_credentials` (the Secrets Manager secret
``{"username", "password"}`` that Amazon MQ users are kept in), :class:`BrokerError`
and the environment readers.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, TypeVar

from .rejection import Rejected

T = TypeVar("T")

RABBITMQ_EVENT_SOURCE = "aws:rmq"
ACTIVEMQ_EVENT_SOURCE = "aws:mq"
#: The ActiveMQ source as an older edition of the Lambda developer guide spelled it; read as ``aws:mq``.
ACTIVEMQ_EVENT_SOURCE_OLD = "aws:amq"
TEXT_MESSAGE = "jms/text-message"
BYTES_MESSAGE = "jms/bytes-message"
#: The JMS message types Lambda delivers (the guide: only TextMessage and BytesMessage).
BODY_MESSAGE_TYPES = (TEXT_MESSAGE, BYTES_MESSAGE)
#: How much of a reason a BatchFailed message keeps per failure (the full reason is on ``failures``).
MAX_REASON_CHARS = 500

_log = logging.getLogger(__name__)

_RABBITMQ_SHAPE = (
    f'an object with "eventSource": "{RABBITMQ_EVENT_SOURCE}" and "rmqMessagesByQueue", an object mapping "<queue>::<virtual host>" to a list of messages'
)
_ACTIVEMQ_SHAPE = f'an object with "eventSource": "{ACTIVEMQ_EVENT_SOURCE}" and "messages", a list of messages'


# --- errors -----------------------------------------------------------------------


class NotAnAmazonMQEvent(ValueError):
    """The event is not one an Amazon MQ event source mapping sends; the message names what was expected."""


class UndecodableMessage(Rejected):
    """A message whose body cannot be had (no base64 data, not base64, a JMS type without a body, not text): that message's failure."""


class BrokerError(Exception):
    """The broker is not usable: not reachable, the credentials or virtual host refused, or its secret unreadable."""


class SecretError(BrokerError):
    """The broker secret cannot be read, or is not a JSON object with string ``username`` and ``password``."""


class CredentialsRefused(BrokerError):
    """The broker refused the connection with the secret's credentials, read again once in case they were rotated."""


class BrokerUnreachable(BrokerError):
    """No connection could be made: every attempt failed, or failed in a way another attempt cannot mend."""


# --- messages ---------------------------------------------------------------------


@dataclass(frozen=True)
class MQMessage:
    """One message of an Amazon MQ batch, decoded from the shape Lambda sends.

    :ivar source: ``"aws:rmq"`` or ``"aws:mq"``.
    :ivar place: where the message is in the event: ``"<queue>::<virtual host>[<index>]"``
        (RabbitMQ: the event's own key) or ``"messages[<index>]"`` (ActiveMQ).
    :ivar index: its position in its queue's list (RabbitMQ) or in ``messages`` (ActiveMQ).
    :ivar queue: the RabbitMQ queue, or the ActiveMQ destination's ``physicalName``; None when absent.
    :ivar virtual_host: the RabbitMQ virtual host (ActiveMQ: None).
    :ivar queue_key: the queue as the event names it, which logs and failures use: RabbitMQ's
        ``"<queue>::<virtual host>"`` key, ActiveMQ's destination.
    :ivar message_id: the AMQP ``messageId`` or the JMS ``messageID``; None when the publisher set none.
    :ivar redelivered: the broker's redelivered flag (False unless it is ``true``).
    :ivar properties: what the publisher attached as key/values: RabbitMQ's AMQP headers
        (``{"bytes": [...]}`` decoded to text, or to bytes when not UTF-8) or ActiveMQ's JMS
        properties (STOMP headers become either). Empty when there are none.
    :ivar correlation_id: ``correlationId`` / ``correlationID``; None when absent or empty.
    :ivar reply_to: ``replyTo``; None when absent, empty or the text ``"null"`` ActiveMQ sends.
    :ivar content_type: RabbitMQ's ``contentType`` (ActiveMQ: None).
    :ivar content_encoding: RabbitMQ's ``contentEncoding`` (ActiveMQ: None).
    :ivar message_type: ActiveMQ's ``messageType`` (RabbitMQ: None).
    :ivar data: the ``data`` field as sent (base64 text); :attr:`body` decodes it.
    :ivar raw: the message as Lambda sent it, for anything else (``basicProperties``, broker times).
    """

    source: str
    place: str
    index: int
    queue: str | None
    virtual_host: str | None
    message_id: str | None
    redelivered: bool
    properties: Mapping[str, Any]
    correlation_id: str | None = None
    reply_to: str | None = None
    content_type: str | None = None
    content_encoding: str | None = None
    message_type: str | None = None
    queue_key: str | None = None
    data: Any = field(default=None, repr=False)
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def basic_properties(self) -> Mapping[str, Any]:
        """RabbitMQ's ``basicProperties`` as sent (empty for ActiveMQ, or when null)."""
        return (self.raw.get("basicProperties") or {}) if self.source == RABBITMQ_EVENT_SOURCE else {}

    @property
    def label(self) -> str:
        """How failures and logs name the message: its message id, or its place when it has none."""
        return self.message_id or self.place

    @cached_property
    def digest(self) -> str:
        """SHA-256 of what the message carries (queue, properties, data; not the redelivery fields): the same on every delivery."""
        volatile = ("redelivered", "brokerInTime", "brokerOutTime")
        content = {name: value for name, value in self.raw.items() if name not in volatile}
        canonical = json.dumps([self.source, self.queue, self.virtual_host, content], sort_keys=True, separators=(",", ":"), default=repr)
        return hashlib.sha256(canonical.encode()).hexdigest()

    @property
    def id(self) -> str:
        """A stable id: the message id, or ``"sha256:<digest>"`` of its content when the publisher set none. The same on redelivery."""
        return self.message_id or f"sha256:{self.digest}"

    @cached_property
    def body(self) -> bytes:
        """The body, decoded from base64; :class:`UndecodableMessage` when it cannot be had."""
        if self.source == ACTIVEMQ_EVENT_SOURCE and self.message_type not in BODY_MESSAGE_TYPES:
            raise UndecodableMessage(f"message type {self.message_type!r} is not supported, expected one of {', '.join(BODY_MESSAGE_TYPES)}")
        if not isinstance(self.data, str):
            raise UndecodableMessage("message has no base64 data")
        try:
            return base64.b64decode(self.data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise UndecodableMessage(f"data is not base64: {exc}") from exc

    def text(self, encoding: str = "utf-8") -> str:
        """The body as text; :class:`UndecodableMessage` when it is not text in ``encoding``. Default: UTF-8."""
        body = self.body
        try:
            return body.decode(encoding)
        except UnicodeDecodeError as exc:
            raise UndecodableMessage(f"body is not {encoding.upper()} text: {exc}") from exc


@dataclass(frozen=True)
class MalformedMessage:
    """A message in a shape Lambda never sends, at its place in the batch; handled as that message's failure."""

    source: str
    place: str
    reason: str
    queue: str | None = None
    virtual_host: str | None = None
    queue_key: str | None = None
    raw: Any = field(default=None, repr=False)

    # What a well-formed message has and a malformed one cannot: None (class attributes, not fields).
    message_id = None
    redelivered = None

    @property
    def label(self) -> str:
        return self.place


@dataclass(frozen=True)
class AmazonMQBatch:
    """A decoded Amazon MQ event: every entry in the order Lambda sent it, well-formed or not."""

    source: str
    event_source_arn: str | None
    entries: tuple[MQMessage | MalformedMessage, ...]

    @property
    def messages(self) -> list[MQMessage]:
        """The well-formed messages."""
        return [entry for entry in self.entries if isinstance(entry, MQMessage)]

    @property
    def malformed(self) -> list[MalformedMessage]:
        return [entry for entry in self.entries if isinstance(entry, MalformedMessage)]

    def __iter__(self) -> Iterator[MQMessage | MalformedMessage]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)


# --- decoding ---------------------------------------------------------------------


def _describe(event: Any) -> str:
    """What the event is, for an error message (never its values)."""
    if not isinstance(event, dict):
        return type(event).__name__
    source = event.get("eventSource")
    keys = ", ".join(repr(key) for key in sorted(map(str, event))) or "no keys"
    return f"eventSource {source!r} with keys {keys}" if source is not None else f"an object with keys {keys}"


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _shape_problem(name: str, value: Any) -> str | None:
    if value is not None and not isinstance(value, dict):
        return f"{name} is {type(value).__name__}, expected an object"
    return None


def decode_header_value(value: Any) -> Any:
    """An AMQP header value as the RabbitMQ event carries it, decoded: ``{"bytes": [...]}`` to text (bytes when not UTF-8), recursively."""
    if isinstance(value, dict):
        raw = value.get("bytes")
        if len(value) == 1 and isinstance(raw, list) and all(isinstance(b, int) and 0 <= b <= 255 for b in raw):
            try:
                return bytes(raw).decode("utf-8")
            except UnicodeDecodeError:
                return bytes(raw)
        return {name: decode_header_value(item) for name, item in value.items()}
    if isinstance(value, list):
        return [decode_header_value(item) for item in value]
    return value


def _rabbitmq_message(key: str, queue: str, vhost: str | None, index: int, raw: Any) -> MQMessage | MalformedMessage:
    place = f"{key}[{index}]"
    if not isinstance(raw, dict):
        return MalformedMessage(RABBITMQ_EVENT_SOURCE, place, f"not a message object ({type(raw).__name__})", queue, vhost, key, raw)
    properties = raw.get("basicProperties")
    problem = _shape_problem("basicProperties", properties)
    properties = properties or {}
    problem = problem or _shape_problem("basicProperties.headers", properties.get("headers"))
    if problem is not None:
        return MalformedMessage(RABBITMQ_EVENT_SOURCE, place, problem, queue, vhost, key, raw)
    return MQMessage(
        source=RABBITMQ_EVENT_SOURCE,
        place=place,
        index=index,
        queue=queue,
        virtual_host=vhost,
        message_id=_text(properties.get("messageId")),
        redelivered=raw.get("redelivered") is True,
        properties=decode_header_value(properties.get("headers") or {}),
        correlation_id=_text(properties.get("correlationId")),
        reply_to=_text(properties.get("replyTo")),
        content_type=_text(properties.get("contentType")),
        content_encoding=_text(properties.get("contentEncoding")),
        queue_key=key,
        data=raw.get("data"),
        raw=raw,
    )


def decode_rabbitmq_event(event: Any, *, default_virtual_host: str | None = None) -> AmazonMQBatch:
    """The messages of a RabbitMQ event (``"eventSource": "aws:rmq"``), queue by queue, in the event's order.

    :param default_virtual_host: the virtual host of a queue key without ``::<virtual host>``
        (Lambda always names one). Default: None.
    :raises NotAnAmazonMQEvent: the event has no ``rmqMessagesByQueue`` object, or names another source.
    """
    by_queue = event.get("rmqMessagesByQueue") if isinstance(event, dict) else None
    source = event.get("eventSource") if isinstance(event, dict) else None
    if not isinstance(by_queue, dict) or source not in (None, RABBITMQ_EVENT_SOURCE):
        raise NotAnAmazonMQEvent(f"not an Amazon MQ for RabbitMQ event: expected {_RABBITMQ_SHAPE}; got {_describe(event)}")
    entries: list[MQMessage | MalformedMessage] = []
    for key, messages in by_queue.items():
        key = str(key)
        queue, separator, vhost = key.rpartition("::")
        if not separator:
            queue, vhost = key, default_virtual_host
        if not isinstance(messages, list):
            entries.append(
                MalformedMessage(RABBITMQ_EVENT_SOURCE, key, f"the messages are {type(messages).__name__}, expected a list", queue, vhost, key, messages)
            )
            continue
        entries.extend(_rabbitmq_message(key, queue, vhost, index, raw) for index, raw in enumerate(messages))
    return AmazonMQBatch(RABBITMQ_EVENT_SOURCE, _text(event.get("eventSourceArn")), tuple(entries))


def _activemq_message(index: int, raw: Any) -> MQMessage | MalformedMessage:
    place = f"messages[{index}]"
    if not isinstance(raw, dict):
        return MalformedMessage(ACTIVEMQ_EVENT_SOURCE, place, f"not a message object ({type(raw).__name__})", raw=raw)
    destination = raw.get("destination")
    queue = None
    if isinstance(destination, dict):
        queue = _text(destination.get("physicalName")) or _text(destination.get("physicalname"))
    problem = _shape_problem("destination", destination) or _shape_problem("properties", raw.get("properties"))
    if problem is not None:
        return MalformedMessage(ACTIVEMQ_EVENT_SOURCE, place, problem, queue, queue_key=queue, raw=raw)
    reply_to = _text(raw.get("replyTo"))
    return MQMessage(
        source=ACTIVEMQ_EVENT_SOURCE,
        place=place,
        index=index,
        queue=queue,
        virtual_host=None,
        message_id=_text(raw.get("messageID")),
        redelivered=raw.get("redelivered") is True,
        properties=dict(raw.get("properties") or {}),
        correlation_id=_text(raw.get("correlationID")) or _text(raw.get("correlationId")),
        reply_to=None if reply_to == "null" else reply_to,
        message_type=_text(raw.get("messageType")),
        queue_key=queue,
        data=raw.get("data"),
        raw=raw,
    )


def decode_activemq_event(event: Any) -> AmazonMQBatch:
    """The messages of an ActiveMQ event (``"eventSource": "aws:mq"``), in the event's order.

    :raises NotAnAmazonMQEvent: the event has no ``messages`` list, or names another source.
    """
    messages = event.get("messages") if isinstance(event, dict) else None
    source = event.get("eventSource") if isinstance(event, dict) else None
    if not isinstance(messages, list) or source not in (None, ACTIVEMQ_EVENT_SOURCE, ACTIVEMQ_EVENT_SOURCE_OLD):
        raise NotAnAmazonMQEvent(f"not an Amazon MQ for ActiveMQ event: expected {_ACTIVEMQ_SHAPE}; got {_describe(event)}")
    entries = tuple(_activemq_message(index, raw) for index, raw in enumerate(messages))
    return AmazonMQBatch(ACTIVEMQ_EVENT_SOURCE, _text(event.get("eventSourceArn")), entries)


def decode_event(event: Any, *, default_virtual_host: str | None = None) -> AmazonMQBatch:
    """An Amazon MQ event of either broker, told apart by ``eventSource`` (or, without one, by its shape)."""
    source = event.get("eventSource") if isinstance(event, dict) else None
    if source == RABBITMQ_EVENT_SOURCE or (source is None and isinstance(event, dict) and "rmqMessagesByQueue" in event):
        return decode_rabbitmq_event(event, default_virtual_host=default_virtual_host)
    if source in (ACTIVEMQ_EVENT_SOURCE, ACTIVEMQ_EVENT_SOURCE_OLD) or (source is None and isinstance(event, dict) and "messages" in event):
        return decode_activemq_event(event)
    raise NotAnAmazonMQEvent(f"not an Amazon MQ event: expected {_RABBITMQ_SHAPE}, or {_ACTIVEMQ_SHAPE}; got {_describe(event)}")


# --- all-or-nothing batches --------------------------------------------------------


@dataclass(frozen=True)
class MessageFailure:
    """One message that failed: where it is, its message id (None when it has none), and why; ``queue`` is the event's queue key."""

    place: str
    message_id: str | None
    reason: str
    queue: str | None = None
    rejected: bool = True

    @property
    def label(self) -> str:
        return self.message_id or self.place

    def describe(self) -> str:
        named = f"{self.place} ({self.message_id})" if self.message_id else self.place
        return f"{named}: {self.reason[:MAX_REASON_CHARS]}"


class BatchFailed(RuntimeError):
    """Some messages of the batch failed. Amazon MQ has no partial batch response: the whole batch comes back.

    ``failures`` lists them in batch order; ``failed_message_ids`` names each by its
    message id, or by its place when it has none.
    """

    def __init__(self, failures: list[MessageFailure], total: int) -> None:
        self.failures = failures
        self.total = total
        self.failed_message_ids = [failure.label for failure in failures]
        listed = "; ".join(failure.describe() for failure in failures)
        super().__init__(f"{len(failures)} of {total} messages failed; the broker redelivers the batch: {listed}")


def process_batch(batch: AmazonMQBatch, handle: Callable[[MQMessage], T], *, logger: Any = None, metrics: Any = None, log_keys: bool = False) -> list[T]:
    """Handle every message of the batch; return the results in order, or raise one BatchFailed naming every failure.

    - a :class:`MalformedMessage` fails with its reason, without ``handle``;
    - ``handle`` raising :class:`~messaging_runtime.rejection.Rejected` (an undecodable
      body is one) fails the message with the rejection's reason, logged without a
      traceback; any other exception fails it with ``"<type>: <message>"`` and the traceback;
    - each failure is logged once at ERROR, ``"Message failed"``, with ``message_id``
      (the id, or the place), ``place``, ``queue`` (the event's ``queue_key``),
      ``redelivered`` and ``reason``;
      with ``log_keys=True``, while a message is handled its ``message_id``, ``queue``
      and ``redelivered`` are appended to a Powertools logger's keys (off by default:
      adding and removing keys costs more per message than decoding it);
    - with ``metrics``, ``RejectedMessages`` and ``FailedMessages`` are added once per batch.

    The batch fails after its last message, so every good message has had its
    effect and will have it again when the batch comes back: keep effects idempotent.

    :param logger: the handler's Powertools logger (or any ``logging.Logger``). Default: this module's logger.
    :param metrics: the handler's Powertools metrics. Default: none published.
    """
    log = logger if logger is not None else _log
    keyed = log_keys and callable(getattr(log, "append_keys", None)) and callable(getattr(log, "remove_keys", None))
    failures: list[MessageFailure] = []
    results: list[T] = []
    for entry in batch.entries:
        if isinstance(entry, MalformedMessage):
            log.error("Message failed", extra={"message_id": entry.place, "place": entry.place, "queue": entry.queue_key, "reason": entry.reason})
            failures.append(MessageFailure(entry.place, None, entry.reason, entry.queue_key, rejected=True))
            continue
        keys = {"message_id": entry.label, "queue": entry.queue_key, "redelivered": entry.redelivered}
        if keyed:
            log.append_keys(**keys)
        try:
            results.append(handle(entry))
        except Exception as exc:  # every failure is listed; the batch fails after the last message
            rejected = isinstance(exc, Rejected)
            reason = exc.reason if rejected else f"{type(exc).__name__}: {exc}"
            log.error("Message failed", extra={**keys, "place": entry.place, "reason": reason}, exc_info=not rejected)
            failures.append(MessageFailure(entry.place, entry.message_id, reason, entry.queue_key, rejected=rejected))
        finally:
            if keyed:
                log.remove_keys(list(keys))
    if metrics is not None:
        from aws_lambda_powertools.metrics import MetricUnit

        metrics.add_metric(name="RejectedMessages", unit=MetricUnit.Count, value=sum(failure.rejected for failure in failures))
        metrics.add_metric(name="FailedMessages", unit=MetricUnit.Count, value=len(failures))
    if failures:
        raise BatchFailed(failures, len(batch))
    return results


# --- the broker secret and settings -----------------------------------------------------


@dataclass(frozen=True)
class BrokerCredentials:
    """A broker user's name and password, as its Secrets Manager secret holds them (the password is left out of ``repr``)."""

    username: str
    password: str = field(repr=False)


def read_broker_credentials(secret_arn: str, *, max_age_seconds: int = 300, force_fetch: bool = False) -> BrokerCredentials:
    """The credentials in the secret ``{"username": ..., "password": ...}``, through Powertools' cache.

    :param max_age_seconds: how long a value read is reused. Default: 300 seconds.
    :param force_fetch: read the secret again now (after the broker refused the cached one). Default: False.
    :raises SecretError: the secret cannot be read, or is not such an object (the error never holds its value).
    """
    from aws_lambda_powertools.utilities import parameters

    try:
        secret = parameters.get_secret(secret_arn, transform="json", max_age=max_age_seconds, force_fetch=force_fetch)
    except (parameters.exceptions.GetParameterError, parameters.exceptions.TransformParameterError) as exc:
        raise SecretError(f"could not read the broker credentials from {secret_arn}: {exc}") from exc
    if not (isinstance(secret, dict) and isinstance(secret.get("username"), str) and isinstance(secret.get("password"), str)):
        raise SecretError(f'the secret {secret_arn} must be a JSON object with string "username" and "password"')
    return BrokerCredentials(secret["username"], secret["password"])


def environment_text(name: str, default: str | None = None, *, environ: Mapping[str, str] | None = None) -> str:
    """The variable's value, stripped; ``default`` when unset or empty; ValueError when neither (the variable is required)."""
    value = (os.environ if environ is None else environ).get(name, "").strip()
    if value:
        return value
    if default is None:
        raise ValueError(f"{name} is not set")
    return default


def environment_flag(name: str, default: bool, *, environ: Mapping[str, str] | None = None) -> bool:
    """``"true"`` or ``"false"`` (any case); ``default`` when unset; ValueError otherwise."""
    value = (os.environ if environ is None else environ).get(name, "").strip().lower()
    if not value:
        return default
    if value not in ("true", "false"):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return value == "true"


def environment_number(name: str, default: float, *, low: float, high: float, environ: Mapping[str, str] | None = None) -> float:
    """A number from ``low`` to ``high`` (a whole one when ``default`` is an int); ``default`` when unset; ValueError naming the variable otherwise."""
    raw = (os.environ if environ is None else environ).get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    whole = isinstance(default, int)
    if not low <= value <= high or (whole and not value.is_integer()):
        raise ValueError(f"{name} must be {'a whole number' if whole else 'a number'} from {low:g} to {high:g}, got {raw!r}")
    return int(value) if whole else value
