"""Send invoices to the ERP's queue on the ActiveMQ broker, over STOMP.

Invoked directly with ``{"invoices": [{"schema_version": 1, "invoice_id": "inv-...",
"order_id": "o-...", "customer_id": "c-...", "amount": "123.45", "currency": "EUR",
"status": "issued" | "paid" | "voided", "issued_at": "2025-03-14T09:26:53Z"}, ...]}``.
``amount`` is a decimal with at most 4 places, as a string or a JSON number; it
goes on as a string, so that no reader turns it into a binary float.
``issued_at`` needs a time zone and goes on in UTC. Every invoice is validated
before anything is sent, so a bad request sends nothing and fails with a
ValueError that names the index and the reason.

Each invoice is a SEND to ``DESTINATION_PREFIX + QUEUE_NAME`` (``/queue/<name>``,
which ActiveMQ maps to the JMS queue ``<name>``) with ``persistent:true``,
``content-type:application/json``, ``invoice_id`` and ``invoice_status``
headers (JMS properties; an invoice event is one invoice in one status, which
is what a consumer drops duplicates on) and a ``receipt`` header. The broker sends the
receipt once it has taken the message (for a persistent message, once it is
stored). The invoices are sent one after the other without waiting, then the
function waits for every receipt, at most ``RECEIPT_TIMEOUT_SECONDS`` and never
past the invocation's remaining time. An invoice counts as sent only when its
receipt has come back.

If a receipt is missing at the end of the wait, or the broker answers with an
ERROR frame (after which it closes the connection), or the connection is
lost, the invocation fails with a PublishError that says how many invoices
were confirmed, which were sent without a receipt (they may or may not be on
the queue) and which were not sent at all. The response, ``{"published": n,
"invoices": [{"invoice_id": ..., "status": ...}, ...]}``, lists confirmed
invoice events only.

One connection is kept per execution environment. It is made again when it
is closed, after any failure, and when it has been idle for more than
``IDLE_RECONNECT_SECONDS``: a frozen execution environment cannot notice that
the broker or the network dropped an idle connection. Credentials come from
the Secrets Manager secret, cached; when the broker refuses them the secret is
read again once, in case it was rotated.

Environment:
    BROKER_SECRET_ARN           secret with {"username": ..., "password": ...} (required)
    BROKER_HOST                 broker host name (required); for an active/standby broker the
                                host names of both endpoints, comma-separated, tried in order
    BROKER_PORT                 default 61614 (STOMP over TLS on Amazon MQ)
    BROKER_TLS                  "true" (default) or "false"; TLS verifies the certificate against
                                the system CA store and checks the host name
    VIRTUAL_HOST                the CONNECT frame's host header; unset (the default) sends the
                                broker host name, which ActiveMQ expects; a RabbitMQ broker takes
                                its virtual host here
    QUEUE_NAME                  queue to send to (required)
    DESTINATION_PREFIX          default "/queue/"
    RECEIPT_TIMEOUT_SECONDS     longest wait for the receipts, default 10
    SECRET_MAX_AGE_SECONDS      how long the credentials are cached, default 300
"""

import json
import os
import re
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timezone
from decimal import Decimal
from typing import Annotated, Any, Literal

import stomp
import stomp.exception
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, StringConstraints, ValidationError, field_validator

SCHEMA_VERSION = 1
MAX_INVOICES = 100
DECIMAL_TEXT = re.compile(r"(0|[1-9][0-9]*)(\.[0-9]+)?")
CONTENT_TYPE = "application/json"
CONNECT_TIMEOUT_SECONDS = 10.0
IDLE_RECONNECT_SECONDS = 60.0
# Time kept back from the invocation's remaining time, to report a failure before Lambda stops the function.
SAFETY_MARGIN_SECONDS = 1.0


def _flag(name: str, default: str) -> bool:
    value = os.environ.get(name, default).strip().lower()
    if value not in ("true", "false"):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return value == "true"


BROKER_SECRET_ARN = os.environ["BROKER_SECRET_ARN"]
BROKER_HOSTS = [host.strip() for host in os.environ["BROKER_HOST"].split(",") if host.strip()]
if not BROKER_HOSTS:
    raise ValueError("BROKER_HOST must name at least one host")
BROKER_PORT = int(os.environ.get("BROKER_PORT", "61614"))
BROKER_TLS = _flag("BROKER_TLS", "true")
VIRTUAL_HOST = os.environ.get("VIRTUAL_HOST") or None
QUEUE_NAME = os.environ["QUEUE_NAME"]
DESTINATION = os.environ.get("DESTINATION_PREFIX", "/queue/") + QUEUE_NAME
RECEIPT_TIMEOUT_SECONDS = float(os.environ.get("RECEIPT_TIMEOUT_SECONDS", "10"))
SECRET_MAX_AGE_SECONDS = int(os.environ.get("SECRET_MAX_AGE_SECONDS", "300"))
BROKER_URL = ", ".join(f"{'stomp+ssl' if BROKER_TLS else 'stomp'}://{host}:{BROKER_PORT}" for host in BROKER_HOSTS)

logger = Logger()
tracer = Tracer()
metrics = Metrics()


class BrokerError(Exception):
    """The broker is not usable: not reachable, or it refused the connection."""


class PublishError(Exception):
    """Not every invoice was confirmed with a receipt.

    Each list names invoice events as ``"<invoice_id> <status>"``, in request
    order: ``confirmed`` have their receipt; ``unconfirmed`` were sent without
    one coming back (they may or may not be on the queue); ``not_sent`` never
    left the function.
    """

    def __init__(self, confirmed: list[str], unconfirmed: list[str], not_sent: list[str], reason: str):
        self.confirmed = confirmed
        self.unconfirmed = unconfirmed
        self.not_sent = not_sent
        total = len(confirmed) + len(unconfirmed) + len(not_sent)
        parts = [f"{len(confirmed)} of {total} invoice(s) confirmed by the broker: {reason}"]
        if unconfirmed:
            parts.append(f"sent without a receipt (may or may not be on the queue): {', '.join(unconfirmed)}")
        if not_sent:
            parts.append(f"not sent: {', '.join(not_sent)}")
        super().__init__("; ".join(parts))


def _decimal(value: Any) -> Decimal:
    if isinstance(value, str):
        if not DECIMAL_TEXT.fullmatch(value):
            raise ValueError("must be a decimal such as 123.45")
        return Decimal(value)
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise ValueError("must be a decimal string or a number")
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def _time_text(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError("must be an ISO 8601 date-time string with a time zone")
    return value


class Invoice(BaseModel):
    """An invoice in the current schema; unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: StrictInt
    invoice_id: Annotated[str, StringConstraints(strict=True, pattern=r"^inv-[A-Za-z0-9_-]{1,64}$")]
    order_id: Annotated[str, StringConstraints(strict=True, pattern=r"^o-[A-Za-z0-9_-]{1,64}$")]
    customer_id: Annotated[str, StringConstraints(strict=True, pattern=r"^c-[A-Za-z0-9_-]{1,64}$")]
    amount: Annotated[Decimal, BeforeValidator(_decimal), Field(ge=0, max_digits=18, decimal_places=4, allow_inf_nan=False)]
    currency: Annotated[str, StringConstraints(strict=True, pattern=r"^[A-Z]{3}$")]
    status: Literal["issued", "paid", "voided"]
    issued_at: Annotated[AwareDatetime, BeforeValidator(_time_text)]

    @field_validator("schema_version")
    @classmethod
    def _current_version(cls, value: int) -> int:
        if value != SCHEMA_VERSION:
            raise ValueError(f"unsupported schema_version {value}, expected {SCHEMA_VERSION}")
        return value

    @property
    def label(self) -> str:
        return f"{self.invoice_id} {self.status}"

    def body(self) -> str:
        return json.dumps(
            {
                "schema_version": self.schema_version,
                "invoice_id": self.invoice_id,
                "order_id": self.order_id,
                "customer_id": self.customer_id,
                "amount": format(self.amount, "f"),
                "currency": self.currency,
                "status": self.status,
                "issued_at": self.issued_at.astimezone(timezone.utc).isoformat().replace("+00:00", "Z"),
            },
            separators=(",", ":"),
        )


def _describe(exc: ValidationError) -> str:
    return ", ".join(
        f"{'.'.join(str(part) for part in error['loc']) or 'invoice'}: {error['msg']}" for error in exc.errors(include_url=False, include_input=False)
    )


def validate_request(event: Any) -> list[Invoice]:
    """Return the request's invoices, or raise ValueError naming every bad one."""
    items = event.get("invoices") if isinstance(event, dict) else None
    if not isinstance(items, list) or not items:
        raise ValueError('the request must be an object with a non-empty "invoices" list')
    if len(items) > MAX_INVOICES:
        raise ValueError(f"{len(items)} invoices in one request, at most {MAX_INVOICES}")
    problems: list[str] = []
    invoices: list[Invoice] = []
    first_index: dict[tuple[str, str], int] = {}
    for index, item in enumerate(items):
        try:
            invoice = Invoice.model_validate(item)
        except ValidationError as exc:
            problems.append(f"invoices[{index}]: {_describe(exc)}")
            continue
        key = (invoice.invoice_id, invoice.status)
        if key in first_index:
            problems.append(f"invoices[{index}]: {invoice.invoice_id} {invoice.status} is also invoices[{first_index[key]}]")
            continue
        first_index[key] = index
        invoices.append(invoice)
    if problems:
        raise ValueError(f"{len(problems)} invalid invoice(s), nothing sent: " + "; ".join(problems))
    return invoices


class FrameListener(stomp.ConnectionListener):
    """What the broker sent on one connection: CONNECTED, receipts, an ERROR, the end of the connection."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self.connected = False
        self.closed = False
        self.error: str | None = None
        self.receipts: set[str] = set()

    def _update(self, change: Callable[[], None]) -> None:
        with self._condition:
            change()
            self._condition.notify_all()

    def on_connected(self, frame: Any) -> None:
        self._update(lambda: setattr(self, "connected", True))

    def on_receipt(self, frame: Any) -> None:
        self._update(lambda: self.receipts.add(frame.headers.get("receipt-id", "")))

    def on_error(self, frame: Any) -> None:
        text = f"{frame.headers.get('message', '')}: {(frame.body or '').strip()}".strip(": ")
        self._update(lambda: setattr(self, "error", self.error or text or "ERROR frame without a message"))

    def on_disconnected(self) -> None:
        self._update(lambda: setattr(self, "closed", True))

    def wait_for(self, done: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``done()``, an ERROR, the end of the connection or the timeout; return ``done()``."""
        with self._condition:
            self._condition.wait_for(lambda: done() or self.error is not None or self.closed, timeout=max(0.0, timeout))
            return done()


def _credentials(force_fetch: bool) -> tuple[str, str]:
    try:
        secret = parameters.get_secret(BROKER_SECRET_ARN, transform="json", max_age=SECRET_MAX_AGE_SECONDS, force_fetch=force_fetch)
    except (parameters.exceptions.GetParameterError, parameters.exceptions.TransformParameterError) as exc:
        raise BrokerError(f"could not read the broker credentials from {BROKER_SECRET_ARN}: {exc}") from exc
    if not (isinstance(secret, dict) and isinstance(secret.get("username"), str) and isinstance(secret.get("password"), str)):
        raise BrokerError(f'the secret {BROKER_SECRET_ARN} must be a JSON object with string "username" and "password"')
    return secret["username"], secret["password"]


def new_connection() -> stomp.Connection12:
    """A STOMP 1.2 connection object, not connected yet: one try per host, no automatic reconnection, no heartbeats."""
    endpoints = [(host, BROKER_PORT) for host in BROKER_HOSTS]
    connection = stomp.Connection12(
        endpoints,
        prefer_localhost=False,
        try_loopback_connect=False,
        reconnect_attempts_max=1,
        timeout=CONNECT_TIMEOUT_SECONDS,
        vhost=VIRTUAL_HOST,
    )
    if BROKER_TLS:
        # No ca_certs: the system CA store; verify: certificate required and host name checked.
        connection.set_ssl(for_hosts=endpoints, ssl_version=ssl.PROTOCOL_TLS_CLIENT, verify=True)
    return connection


def _drop(connection: stomp.Connection12) -> None:
    try:
        connection.transport.disconnect_socket()
    except Exception:  # the socket may already be gone; nothing more to release
        pass


class Session:
    """One STOMP connection per execution environment, made again when closed, failed or idle."""

    def __init__(self) -> None:
        self.connection: stomp.Connection12 | None = None
        self.listener: FrameListener | None = None
        self.last_used = 0.0

    def _usable(self) -> bool:
        return (
            self.connection is not None
            and self.listener is not None
            and self.connection.is_connected()
            and not self.listener.closed
            and self.listener.error is None
            and time.monotonic() - self.last_used < IDLE_RECONNECT_SECONDS
        )

    def open(self, deadline: float) -> tuple[stomp.Connection12, FrameListener]:
        if self._usable():
            return self.connection, self.listener
        self.reset()
        for attempt in (1, 2):
            username, password = _credentials(force_fetch=attempt == 2)
            connection, listener = new_connection(), FrameListener()
            connection.set_listener("frames", listener)
            try:
                connection.connect(username, password, wait=False)
            except (stomp.exception.StompException, OSError) as exc:
                _drop(connection)
                raise BrokerError(f"could not connect to {BROKER_URL} ({type(exc).__name__}; the log has the socket error)") from exc
            timeout = min(CONNECT_TIMEOUT_SECONDS, deadline - time.monotonic())
            if listener.wait_for(lambda listener=listener: listener.connected, timeout):
                self.connection, self.listener, self.last_used = connection, listener, time.monotonic()
                return connection, listener
            _drop(connection)
            if listener.error is not None and attempt == 1:
                logger.warning("The broker refused the connection; reading the secret again in case it was rotated", extra={"reason": listener.error})
                continue
            if listener.error is not None:
                raise BrokerError(f"{BROKER_URL} refused the connection for user {username!r}: {listener.error}")
            if listener.closed:
                raise BrokerError(f"{BROKER_URL} closed the connection before it was established")
            raise BrokerError(f"{BROKER_URL} sent no CONNECTED frame within {timeout:.1f} s")
        raise AssertionError("unreachable")

    def reset(self) -> None:
        if self.connection is not None:
            _drop(self.connection)
        self.connection = None
        self.listener = None


session = Session()


@tracer.capture_method
def publish_all(invoices: list[Invoice], deadline: float) -> list[dict[str, str]]:
    """Send every invoice and wait for the receipts; return the confirmed invoice events, or raise PublishError."""
    connection, listener = session.open(deadline)
    receipts: list[str] = []
    send_failure: str | None = None
    for invoice in invoices:
        receipt = f"{invoice.invoice_id}/{invoice.status}/{uuid.uuid4().hex}"
        headers = {"persistent": "true", "receipt": receipt, "invoice_id": invoice.invoice_id, "invoice_status": invoice.status, "type": "invoice"}
        try:
            connection.send(DESTINATION, invoice.body(), content_type=CONTENT_TYPE, headers=headers)
        except (stomp.exception.StompException, OSError) as exc:
            send_failure = f"the connection failed while sending ({exc!r})"
            break
        receipts.append(receipt)
    wait = min(RECEIPT_TIMEOUT_SECONDS, deadline - time.monotonic())
    all_confirmed = listener.wait_for(lambda: all(receipt in listener.receipts for receipt in receipts), wait)
    if all_confirmed and send_failure is None:
        session.last_used = time.monotonic()
        return [{"invoice_id": invoice.invoice_id, "status": invoice.status} for invoice in invoices]

    # Sending stopped at the first failure, so ``receipts`` covers the first invoices only.
    confirmed = [invoice.label for invoice, receipt in zip(invoices, receipts, strict=False) if receipt in listener.receipts]
    unconfirmed = [invoice.label for invoice, receipt in zip(invoices, receipts, strict=False) if receipt not in listener.receipts]
    not_sent = [invoice.label for invoice in invoices[len(receipts) :]]
    if listener.error is not None:
        reason = f"the broker sent an ERROR frame ({listener.error}) and closed the connection"
    elif send_failure is not None:
        reason = send_failure
    elif listener.closed:
        reason = "the connection was closed before every receipt came back"
    else:
        reason = f"no receipt for {len(unconfirmed)} invoice(s) within {wait:.1f} s"
    session.reset()
    raise PublishError(confirmed, unconfirmed, not_sent, reason)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    deadline = time.monotonic() + context.get_remaining_time_in_millis() / 1000 - SAFETY_MARGIN_SECONDS
    try:
        invoices = validate_request(event)
    except ValueError as exc:
        logger.error("Request refused, nothing sent", extra={"reason": str(exc)})
        metrics.add_metric(name="RequestsRefused", unit=MetricUnit.Count, value=1)
        raise
    try:
        published = publish_all(invoices, deadline)
    except PublishError as exc:
        metrics.add_metric(name="InvoicesPublished", unit=MetricUnit.Count, value=len(exc.confirmed))
        metrics.add_metric(name="InvoicesNotConfirmed", unit=MetricUnit.Count, value=len(invoices) - len(exc.confirmed))
        logger.error("Invoices not all confirmed", extra={"reason": str(exc), "destination": DESTINATION})
        raise
    except BrokerError as exc:
        metrics.add_metric(name="InvoicesNotConfirmed", unit=MetricUnit.Count, value=len(invoices))
        logger.error("Broker not usable, nothing sent", extra={"reason": str(exc)})
        raise
    metrics.add_metric(name="InvoicesPublished", unit=MetricUnit.Count, value=len(published))
    logger.info("Invoices published", extra={"published": len(published), "destination": DESTINATION})
    return {"published": len(published), "invoices": published}
