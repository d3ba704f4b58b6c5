"""Publish shipment updates to the warehouse's RabbitMQ exchange.

Invoked directly with ``{"shipments": [{"schema_version": 1, "shipment_id": "s-...",
"order_id": "o-...", "status": "picked" | "packed" | "shipped" | "delayed" | "delivered",
"occurred_at": "2025-03-14T09:26:53Z", "carrier": "DHL"}, ...]}`` (``carrier``
optional). Every update is validated before anything is sent, so a bad request
publishes nothing and fails with a ValueError that names the index and the
reason. ``occurred_at`` needs a time zone and goes on in UTC.

Each update goes to the exchange ``EXCHANGE_NAME`` with the routing key
``shipment.<status>``, as a persistent JSON message whose ``message_id`` is
derived from the shipment, the status and the time it happened (not the
carrier): publishing the same update again gives the same id, so consumers
can drop duplicates.

The channel is in confirm mode and every message is published ``mandatory``:
a message counts as sent only once the broker has confirmed it, and a message
no queue is bound for comes back as unroutable instead of vanishing. Updates
are published in order and publishing stops at the first one that is not
confirmed (returned as unroutable, refused with a nack, or left without an
answer because the connection was lost); the invocation then fails with a
PublishError that says how many were confirmed before it, which ones, and
that the rest were not sent. The response, ``{"published": n, "message_ids":
[...]}``, lists confirmed messages only.

The exchange and its bindings belong to the broker's definitions; the
function only checks, once per channel, that the exchange exists.

One connection is kept per execution environment. At the start of each
invocation it is checked (anything the broker sent while the environment was
frozen is read, so a close or a missed heartbeat shows) and made again if it
is gone. Credentials come from the Secrets Manager secret, cached; when the
broker refuses them the secret is read again once, in case it was rotated.

Environment:
    BROKER_SECRET_ARN           secret with {"username": ..., "password": ...} (required)
    BROKER_HOST                 broker host name (required)
    BROKER_PORT                 default 5671 (AMQPS on Amazon MQ)
    BROKER_TLS                  "true" (default) or "false"; TLS verifies the certificate against
                                the system CA store and checks the host name
    VIRTUAL_HOST                default "/"
    EXCHANGE_NAME               exchange to publish to (required)
    SECRET_MAX_AGE_SECONDS      how long the credentials are cached, default 300
"""

import json
import os
import ssl
import time
import uuid
from datetime import timezone
from typing import Annotated, Any, Literal

import pika
import pika.exceptions
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.typing import LambdaContext
from pika.adapters.blocking_connection import BlockingChannel
from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, StrictInt, StringConstraints, ValidationError, field_validator

SCHEMA_VERSION = 1
MAX_SHIPMENTS = 100
CONTENT_TYPE = "application/json"
# Fixed namespace for the message ids (uuid5), so that an update always gets the same id.
MESSAGE_ID_NAMESPACE = uuid.UUID("8c4f6a0e-5b3d-4f7e-a1c2-3d9e7b6f0a15")
HEARTBEAT_SECONDS = 60
# How long a publish may wait while the broker blocks publishers (memory or disk alarm).
BLOCKED_CONNECTION_TIMEOUT_SECONDS = 10


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
EXCHANGE_NAME = os.environ["EXCHANGE_NAME"]
SECRET_MAX_AGE_SECONDS = int(os.environ.get("SECRET_MAX_AGE_SECONDS", "300"))
BROKER_URL = f"{'amqps' if BROKER_TLS else 'amqp'}://{BROKER_HOST}:{BROKER_PORT}/{VIRTUAL_HOST}"

logger = Logger()
tracer = Tracer()
metrics = Metrics()


class BrokerError(Exception):
    """The broker is not usable: not reachable, the credentials or virtual host refused, or no such exchange."""


class PublishError(Exception):
    """Publishing stopped at an update the broker did not confirm.

    ``confirmed_message_ids`` are the updates the broker confirmed (the first
    ``len(confirmed_message_ids)`` of the request); ``failed_index`` is the
    update that failed; the ones after it were not sent.
    """

    def __init__(self, confirmed_message_ids: list[str], failed_index: int, total: int, label: str, reason: str):
        self.confirmed_message_ids = confirmed_message_ids
        self.failed_index = failed_index
        self.not_sent = total - failed_index - 1
        super().__init__(
            f"{len(confirmed_message_ids)} of {total} shipment update(s) confirmed by the broker before "
            f"shipments[{failed_index}] {label} failed: {reason}; {self.not_sent} later update(s) not sent"
        )


def _time_text(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError("must be an ISO 8601 date-time string with a time zone")
    return value


class ShipmentUpdate(BaseModel):
    """A shipment update in the current schema; unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: StrictInt
    shipment_id: Annotated[str, StringConstraints(strict=True, pattern=r"^s-[A-Za-z0-9_-]{1,64}$")]
    order_id: Annotated[str, StringConstraints(strict=True, pattern=r"^o-[A-Za-z0-9_-]{1,64}$")]
    status: Literal["picked", "packed", "shipped", "delayed", "delivered"]
    occurred_at: Annotated[AwareDatetime, BeforeValidator(_time_text)]
    carrier: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=128)] | None = None

    @field_validator("schema_version")
    @classmethod
    def _current_version(cls, value: int) -> int:
        if value != SCHEMA_VERSION:
            raise ValueError(f"unsupported schema_version {value}, expected {SCHEMA_VERSION}")
        return value

    @property
    def occurred_at_utc(self) -> str:
        return self.occurred_at.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")

    @property
    def routing_key(self) -> str:
        return f"shipment.{self.status}"

    @property
    def message_id(self) -> str:
        return str(uuid.uuid5(MESSAGE_ID_NAMESPACE, f"{self.shipment_id}|{self.status}|{self.occurred_at_utc}"))

    @property
    def label(self) -> str:
        return f"({self.shipment_id} {self.status})"

    def body(self) -> bytes:
        document = {
            "schema_version": self.schema_version,
            "shipment_id": self.shipment_id,
            "order_id": self.order_id,
            "status": self.status,
            "occurred_at": self.occurred_at_utc,
        }
        if self.carrier is not None:
            document["carrier"] = self.carrier
        return json.dumps(document, separators=(",", ":")).encode()

    def properties(self) -> pika.BasicProperties:
        return pika.BasicProperties(
            content_type=CONTENT_TYPE,
            delivery_mode=pika.DeliveryMode.Persistent,
            message_id=self.message_id,
            timestamp=int(time.time()),
            type=self.routing_key,
        )


def _describe(exc: ValidationError) -> str:
    return ", ".join(
        f"{'.'.join(str(part) for part in error['loc']) or 'shipment'}: {error['msg']}" for error in exc.errors(include_url=False, include_input=False)
    )


def validate_request(event: Any) -> list[ShipmentUpdate]:
    """Return the request's updates, or raise ValueError naming every bad one."""
    items = event.get("shipments") if isinstance(event, dict) else None
    if not isinstance(items, list) or not items:
        raise ValueError('the request must be an object with a non-empty "shipments" list')
    if len(items) > MAX_SHIPMENTS:
        raise ValueError(f"{len(items)} shipments in one request, at most {MAX_SHIPMENTS}")
    problems: list[str] = []
    updates: list[ShipmentUpdate] = []
    first_index: dict[str, int] = {}
    for index, item in enumerate(items):
        try:
            update = ShipmentUpdate.model_validate(item)
        except ValidationError as exc:
            problems.append(f"shipments[{index}]: {_describe(exc)}")
            continue
        if update.message_id in first_index:
            problems.append(f"shipments[{index}]: the same update as shipments[{first_index[update.message_id]}]")
            continue
        first_index[update.message_id] = index
        updates.append(update)
    if problems:
        raise ValueError(f"{len(problems)} invalid shipment update(s), nothing published: " + "; ".join(problems))
    return updates


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
        client_properties={"connection_name": os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "shipment_publisher")},
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


class Broker:
    """One connection and one confirming channel per execution environment, made again when gone."""

    def __init__(self) -> None:
        self.connection: pika.BlockingConnection | None = None
        self.channel: BlockingChannel | None = None

    def _alive(self) -> bool:
        if self.connection is None or self.channel is None or not self.connection.is_open or not self.channel.is_open:
            return False
        try:
            # Reads what arrived while the environment was frozen: a close from the broker, end of stream, missed heartbeats.
            self.connection.process_data_events(time_limit=0)
        except pika.exceptions.AMQPError as exc:
            logger.info("The broker connection is gone; connecting again", extra={"reason": repr(exc)})
            return False
        return self.connection.is_open and self.channel.is_open

    def publishing_channel(self) -> BlockingChannel:
        if self._alive():
            return self.channel
        self.reset()
        if self.connection is None or not self.connection.is_open:
            self.connection = _connect()
        try:
            channel = self.connection.channel()
            channel.exchange_declare(EXCHANGE_NAME, passive=True)
            channel.confirm_delivery()
        except pika.exceptions.ChannelClosedByBroker as exc:
            raise BrokerError(f"exchange {EXCHANGE_NAME!r} is not usable in virtual host {VIRTUAL_HOST!r}: {exc.reply_text}") from exc
        except pika.exceptions.AMQPError as exc:
            self.reset()
            raise BrokerError(f"could not open a channel on {BROKER_URL}: {exc!r}") from exc
        self.channel = channel
        return channel

    def reset(self) -> None:
        """Drop the channel, and the connection unless it is still open."""
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


broker = Broker()


@tracer.capture_method
def publish_all(updates: list[ShipmentUpdate]) -> list[str]:
    """Publish the updates in order; return the confirmed message ids, or raise PublishError at the first one not confirmed."""
    channel = broker.publishing_channel()
    confirmed: list[str] = []
    for index, update in enumerate(updates):
        try:
            channel.basic_publish(EXCHANGE_NAME, update.routing_key, update.body(), update.properties(), mandatory=True)
        except pika.exceptions.UnroutableError as exc:
            reason = f"unroutable: no queue is bound to exchange {EXCHANGE_NAME!r} for routing key {update.routing_key!r} (returned by the broker)"
            raise PublishError(confirmed, index, len(updates), update.label, reason) from exc
        except pika.exceptions.NackError as exc:
            raise PublishError(confirmed, index, len(updates), update.label, "the broker refused it (nack)") from exc
        except pika.exceptions.AMQPError as exc:
            broker.reset()
            reason = f"the connection or channel was lost before the broker confirmed it, so it may or may not be on a queue ({exc!r})"
            raise PublishError(confirmed, index, len(updates), update.label, reason) from exc
        confirmed.append(update.message_id)
    return confirmed


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        updates = validate_request(event)
    except ValueError as exc:
        logger.error("Request refused, nothing published", extra={"reason": str(exc)})
        metrics.add_metric(name="RequestsRefused", unit=MetricUnit.Count, value=1)
        raise
    try:
        message_ids = publish_all(updates)
    except PublishError as exc:
        metrics.add_metric(name="ShipmentUpdatesPublished", unit=MetricUnit.Count, value=len(exc.confirmed_message_ids))
        metrics.add_metric(name="ShipmentUpdatesNotConfirmed", unit=MetricUnit.Count, value=len(updates) - len(exc.confirmed_message_ids))
        logger.error("Shipment updates not all confirmed", extra={"reason": str(exc), "confirmed_message_ids": exc.confirmed_message_ids})
        raise
    except BrokerError as exc:
        metrics.add_metric(name="ShipmentUpdatesNotConfirmed", unit=MetricUnit.Count, value=len(updates))
        logger.error("Broker not usable, nothing published", extra={"reason": str(exc)})
        raise
    metrics.add_metric(name="ShipmentUpdatesPublished", unit=MetricUnit.Count, value=len(message_ids))
    logger.info("Shipment updates published", extra={"published": len(message_ids), "exchange": EXCHANGE_NAME})
    return {"published": len(message_ids), "message_ids": message_ids}
