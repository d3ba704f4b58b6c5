"""STOMP to Amazon MQ for ActiveMQ: one connection per execution environment, a receipt for every message sent.

::

    client = StompClient(StompSettings.from_environment(), logger=logger)

    def lambda_handler(event, context):
        deadline = time.monotonic() + context.get_remaining_time_in_millis() / 1000 - 1
        client.send_with_receipts("/queue/erp.invoices", [StompMessage(body, label="inv-1 issued", headers={...})], deadline=deadline)

What it guarantees:

- TLS by default (``stomp+ssl``, port 61614, as Amazon MQ listens): the server
  certificate is verified against the system's CA store and its host name
  checked. Plain STOMP only when asked for (``tls=False``, ``BROKER_TLS=false``),
  for a broker on the test machine.
- An active/standby broker has two endpoints; the hosts are tried in the
  order given on every attempt (the standby does not listen until it takes
  over), and every host gets the same TLS settings.
- Credentials come from the broker secret, cached; when the broker answers
  the CONNECT frame with ERROR the secret is read again, once, in case it was
  rotated. Connection failures are tried again with exponential backoff and
  jitter, ``connect_attempts`` times in all and never past the caller's
  deadline; a connect that gets no CONNECTED frame in time is not repeated.
- One connection is kept per execution environment. It is made again when it
  is closed, after any failure, and when it has been idle for more than
  ``idle_reconnect_seconds``: a frozen environment cannot notice that the
  broker or the network dropped an idle connection, and a SEND on a dead one
  would only fail after the receipt timeout. (Over plain STOMP, stomp.py's
  socket read timeout also ends a connection idle for ``connect_timeout_seconds``;
  over TLS its socket has none.)
- :meth:`StompClient.send_with_receipts` sends every message with a
  ``receipt`` header, one after the other without waiting, then waits for
  every receipt (a broker sends it once it has taken the message; for a
  persistent one, once it is stored). A message counts as sent only when its
  receipt is back. Otherwise :class:`ReceiptsMissing` says which messages were
  confirmed, which were sent without a receipt (they may or may not be on the
  queue) and which were not sent, and why: an ERROR frame, a lost connection,
  or no receipt within the timeout.

stomp.py comes from the ``mq_clients`` layer. This module imports without it;
using it without stomp.py raises an ImportError that says so.
"""

from __future__ import annotations

import errno
import logging
import os
import random
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .amazon_mq import (
    BrokerCredentials,
    BrokerError,
    BrokerUnreachable,
    CredentialsRefused,
    SecretError,
    environment_flag,
    environment_number,
    environment_text,
    read_broker_credentials,
)

try:
    import stomp
    import stomp.exception
except ImportError as _missing:  # the function has no mq_clients layer: fail when used, not when imported
    stomp = None
    _STOMP_MISSING: ImportError | None = _missing
else:
    _STOMP_MISSING = None

__all__ = [
    "STOMP_TLS_PORT",
    "BrokerCredentials",
    "BrokerError",
    "BrokerUnreachable",
    "CredentialsRefused",
    "FrameListener",
    "ReceiptsMissing",
    "SecretError",
    "StompClient",
    "StompMessage",
    "StompSettings",
]

STOMP_TLS_PORT = 61614

_log = logging.getLogger(__name__)


#: Socket errors, while CONNECT is written, that mean the peer closed the connection (not that nothing listens);
#: EBADF: stomp.py's receiver thread saw the close first and closed the socket under the writer.
_CLOSED_BY_PEER = frozenset({errno.ECONNRESET, errno.EPIPE, errno.ENOTCONN, errno.ECONNABORTED, errno.EBADF})


def _require_stomp() -> Any:
    if stomp is None:
        raise ImportError(
            "messaging_runtime.stomp needs stomp.py, which the mq_clients layer provides: add that layer to the function "
            f"(or pip install stomp-py==9.0.0) ({_STOMP_MISSING})"
        ) from _STOMP_MISSING
    return stomp


class ReceiptsMissing(Exception):
    """Not every message came back with a receipt.

    Each list names messages by their label, in the order given: ``confirmed``
    have their receipt; ``refused`` were answered with an ERROR frame (not on the
    queue); ``unconfirmed`` were sent without an answer coming back (they may or
    may not be on the queue); ``not_sent`` never left the function. ``reason``
    says why, in words; ``noun`` is what the message calls them.
    """

    def __init__(
        self, confirmed: list[str], unconfirmed: list[str], not_sent: list[str], reason: str, noun: str = "message", refused: list[str] | None = None
    ) -> None:
        self.confirmed = confirmed
        self.refused = refused or []
        self.unconfirmed = unconfirmed
        self.not_sent = not_sent
        self.reason = reason
        total = len(confirmed) + len(self.refused) + len(unconfirmed) + len(not_sent)
        parts = [f"{len(confirmed)} of {total} {noun}(s) confirmed by the broker: {reason}"]
        if self.refused:
            parts.append(f"refused by the broker (not on the queue): {', '.join(self.refused)}")
        if unconfirmed:
            parts.append(f"sent without a receipt (may or may not be on the queue): {', '.join(unconfirmed)}")
        if not_sent:
            parts.append(f"not sent: {', '.join(not_sent)}")
        super().__init__("; ".join(parts))


# --- settings ---------------------------------------------------------------------


@dataclass(frozen=True)
class StompSettings:
    """Where the broker is and how to connect to it.

    :param hosts: the broker's host names, tried in this order: both endpoints of an
        active/standby broker (``b-<id>-1.mq...``, ``b-<id>-2.mq...``). Required.
    :param secret_arn: the Secrets Manager secret with ``{"username", "password"}``. Required.
    :param port: Default: 61614 (STOMP over TLS).
    :param tls: Default: True. False only for a broker on the test machine.
    :param virtual_host: the CONNECT frame's ``host`` header. Default: the host connected to,
        which ActiveMQ expects (a RabbitMQ broker takes its virtual host here).
    :param secret_max_age_seconds: how long the credentials are cached. Default: 300 seconds.
    :param connect_timeout_seconds: TCP connect, and the wait for CONNECTED. Default: 10 seconds.
    :param idle_reconnect_seconds: a connection idle longer is made again. Default: 60 seconds.
    :param connect_attempts: connection attempts in all, for failures another may mend. Default: 3.
    :param retry_base_delay_seconds: the first backoff ceiling, doubled per attempt, with jitter. Default: 0.5 seconds.
    :param retry_max_delay_seconds: Default: 4 seconds.
    """

    hosts: tuple[str, ...]
    secret_arn: str
    port: int = STOMP_TLS_PORT
    tls: bool = True
    virtual_host: str | None = None
    secret_max_age_seconds: int = 300
    connect_timeout_seconds: float = 10.0
    idle_reconnect_seconds: float = 60.0
    connect_attempts: int = 3
    retry_base_delay_seconds: float = 0.5
    retry_max_delay_seconds: float = 4.0

    def __post_init__(self) -> None:
        hosts = (self.hosts,) if isinstance(self.hosts, str) else tuple(self.hosts)
        object.__setattr__(self, "hosts", tuple(host.strip() for host in hosts if host and host.strip()))
        if not self.hosts:
            raise ValueError("a STOMP broker needs at least one host")
        if not self.secret_arn:
            raise ValueError("a STOMP broker needs the ARN of its secret")
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be from 1 to 65535, got {self.port}")
        if self.connect_attempts < 1:
            raise ValueError(f"connect_attempts must be at least 1, got {self.connect_attempts}")

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> StompSettings:
        """Settings from the variables every STOMP function has; keyword arguments override them.

        ``BROKER_HOST`` (required; both hosts of an active/standby broker, comma-separated,
        in the order to try), ``BROKER_SECRET_ARN`` (required), ``BROKER_PORT`` (default 61614),
        ``BROKER_TLS`` (``true``, the default, or ``false``), ``VIRTUAL_HOST`` (the CONNECT
        frame's host header; default: the host connected to), ``SECRET_MAX_AGE_SECONDS``
        (default 300). ValueError names a variable that is missing or wrong.
        """
        env = os.environ if environ is None else environ
        hosts = tuple(host.strip() for host in env.get("BROKER_HOST", "").split(",") if host.strip())
        if not hosts:
            raise ValueError("BROKER_HOST must name at least one host")
        values: dict[str, Any] = {
            "hosts": hosts,
            "secret_arn": environment_text("BROKER_SECRET_ARN", environ=env),
            "port": environment_number("BROKER_PORT", STOMP_TLS_PORT, low=1, high=65535, environ=env),
            "tls": environment_flag("BROKER_TLS", True, environ=env),
            "virtual_host": env.get("VIRTUAL_HOST") or None,
            "secret_max_age_seconds": environment_number("SECRET_MAX_AGE_SECONDS", 300, low=0, high=86_400, environ=env),
        }
        values.update(overrides)
        return cls(**values)

    @property
    def endpoints(self) -> list[tuple[str, int]]:
        return [(host, self.port) for host in self.hosts]

    @property
    def url(self) -> str:
        """``stomp+ssl://host:port``, each host, comma-separated: how errors and logs name the broker."""
        return ", ".join(f"{'stomp+ssl' if self.tls else 'stomp'}://{host}:{port}" for host, port in self.endpoints)

    def new_connection(self) -> Any:
        """A STOMP 1.2 connection object, not connected yet: one try per host, in order; no reconnection of its own; no heartbeats."""
        stomp = _require_stomp()
        connection = stomp.Connection12(
            self.endpoints,
            prefer_localhost=False,
            try_loopback_connect=False,
            reconnect_attempts_max=1,
            timeout=self.connect_timeout_seconds,
            vhost=self.virtual_host,
        )
        if self.tls:
            # No ca_certs: the system CA store; verify: certificate required and host name checked (PROTOCOL_TLS_CLIENT).
            connection.set_ssl(for_hosts=self.endpoints, ssl_version=ssl.PROTOCOL_TLS_CLIENT, verify=True)
        return connection


# --- frames -------------------------------------------------------------------------


class FrameListener:
    """What the broker sent on one connection: CONNECTED, receipts, ERROR frames, the end of the connection.

    An ERROR that names a receipt (``receipt-id``) refuses that one frame: ActiveMQ
    sends one for a SEND the user may not make and keeps the connection. An ERROR
    that names none ends the connection (``fatal_error``), as after a refused CONNECT.
    (Duck-typed as a ``stomp.ConnectionListener``: stomp.py calls the ``on_*`` methods it finds.)
    """

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self.connected = False
        self.closed = False
        self.error: str | None = None  # the first ERROR frame's text
        self.fatal_error: str | None = None  # the first ERROR frame that names no receipt
        self.receipts: set[str] = set()
        self.refused: dict[str, str] = {}  # receipt -> the ERROR frame's text

    def _update(self, change: Callable[[], None]) -> None:
        with self._condition:
            change()
            self._condition.notify_all()

    def on_connected(self, frame: Any) -> None:
        self._update(lambda: setattr(self, "connected", True))

    def on_receipt(self, frame: Any) -> None:
        self._update(lambda: self.receipts.add(frame.headers.get("receipt-id", "")))

    def on_error(self, frame: Any) -> None:
        text = _error_text(frame)
        receipt = frame.headers.get("receipt-id")

        def record() -> None:
            self.error = self.error or text
            if receipt:
                self.refused[receipt] = text
            else:
                self.fatal_error = self.fatal_error or text

        self._update(record)

    def on_disconnected(self) -> None:
        self._update(lambda: setattr(self, "closed", True))

    def on_heartbeat_timeout(self) -> None:
        self._update(lambda: setattr(self, "closed", True))

    def answered(self, receipt: str) -> bool:
        return receipt in self.receipts or receipt in self.refused

    def wait_for(self, done: Callable[[], bool], timeout: float, *, stop_on_refusal: bool = True) -> bool:
        """Wait until ``done()``, the end of the connection, an ERROR (with ``stop_on_refusal``; else one that ends
        the connection) or the timeout; return ``done()``."""

        def stop() -> bool:
            return done() or self.closed or (self.error if stop_on_refusal else self.fatal_error) is not None

        with self._condition:
            self._condition.wait_for(stop, timeout=max(0.0, timeout))
            return done()


def _error_text(frame: Any) -> str:
    """``message: body`` of an ERROR frame (ActiveMQ repeats the message as the body: once is enough)."""
    message = str(frame.headers.get("message", "")).strip()
    body = frame.body.decode("utf-8", "replace") if isinstance(frame.body, bytes) else str(frame.body or "")
    body = body.strip()
    return ": ".join(part for part in (message, body if body != message else "") if part) or "ERROR frame without a message"


def _drop(connection: Any) -> None:
    try:
        connection.transport.disconnect_socket()
    except Exception:  # the socket may already be gone; nothing more to release
        pass


@dataclass(frozen=True)
class StompMessage:
    """One message to send: its body, how errors name it, its headers (JMS properties on ActiveMQ).

    :param persistent: sent with ``persistent:true``, so the receipt means it is stored. Default: True.
    :param content_type: Default: none.
    """

    body: str | bytes
    label: str
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str | None = None
    persistent: bool = True


# --- the client -----------------------------------------------------------------------


class StompClient:
    """One STOMP connection per execution environment, made again when closed, failed or idle.

    :param settings: where and how to connect. Required.
    :param logger: the handler's Powertools logger (or any ``logging.Logger``). Default: this module's logger.
    :param sleep: how to wait between attempts (tests pass a fake). Default: ``time.sleep``.
    """

    def __init__(self, settings: StompSettings, *, logger: Any = None, sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings = settings
        self.logger = logger if logger is not None else _log
        self.sleep = sleep
        self.connection: Any = None
        self.listener: FrameListener | None = None
        self.last_used = 0.0
        #: Connections made so far: 1 in an environment whose connection never broke or idled.
        self.connections_made = 0

    @property
    def url(self) -> str:
        return self.settings.url

    @property
    def connected_host(self) -> tuple[str, int] | None:
        """The endpoint of the kept connection (which host of an active/standby pair took it)."""
        if self.connection is None:
            return None
        return getattr(self.connection.transport, "current_host_and_port", None)

    def is_usable(self) -> bool:
        """Whether the kept connection can be used: connected, no ERROR, not closed, not idle too long."""
        return (
            self.connection is not None
            and self.listener is not None
            and self.connection.is_connected()
            and not self.listener.closed
            and self.listener.error is None
            and time.monotonic() - self.last_used < self.settings.idle_reconnect_seconds
        )

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.settings.retry_max_delay_seconds, self.settings.retry_base_delay_seconds * 2 ** (attempt - 1))
        return ceiling * random.uniform(0.5, 1.0)

    def open(self, *, deadline: float | None = None) -> tuple[Any, FrameListener]:
        """The kept connection and its listener when usable, else a new connection. Raises the BrokerError subclass that says why not.

        :param deadline: a ``time.monotonic()`` time after which no attempt starts and no wait ends. Default: none.
        """
        stomp = _require_stomp()
        if self.is_usable():
            return self.connection, self.listener
        self.reset()
        settings = self.settings
        attempt, reread, force_fetch = 0, False, False
        while True:
            credentials = read_broker_credentials(settings.secret_arn, max_age_seconds=settings.secret_max_age_seconds, force_fetch=force_fetch)
            force_fetch = False
            attempt += 1
            connection, listener = settings.new_connection(), FrameListener()
            connection.set_listener("frames", listener)
            try:
                connection.connect(credentials.username, credentials.password, wait=False)
            except (stomp.exception.StompException, OSError) as exc:
                _drop(connection)
                if isinstance(exc, stomp.exception.NotConnectedException) or getattr(exc, "errno", None) in _CLOSED_BY_PEER:
                    # The socket opened and the broker closed it before the CONNECT frame went out: a close before CONNECTED.
                    failure, cause = f"{self.url} closed the connection before it was established ({attempt} attempt(s))", exc
                else:
                    failure, cause = f"could not connect to {self.url} ({type(exc).__name__} after {attempt} attempt(s); the log has the socket error)", exc
            else:
                timeout = settings.connect_timeout_seconds if deadline is None else min(settings.connect_timeout_seconds, deadline - time.monotonic())
                started = time.monotonic()
                if listener.wait_for(lambda listener=listener: listener.connected, timeout):
                    self.connection, self.listener, self.last_used = connection, listener, time.monotonic()
                    self.connections_made += 1
                    return connection, listener
                _drop(connection)
                if listener.error is not None:
                    if not reread:
                        self.logger.warning(
                            "The broker refused the connection; reading the secret again in case it was rotated",
                            extra={"broker": self.url, "reason": listener.error},
                        )
                        reread = force_fetch = True
                        attempt -= 1  # a refusal is not a connection failure
                        continue
                    raise CredentialsRefused(f"{self.url} refused the connection for user {credentials.username!r}: {listener.error}")
                # A plain socket times its read out after connect_timeout_seconds and stomp.py closes it: the same silence.
                if not listener.closed or time.monotonic() - started >= 0.9 * timeout:
                    raise BrokerUnreachable(f"{self.url} sent no CONNECTED frame within {max(0.0, timeout):.1f} s")
                failure, cause = f"{self.url} closed the connection before it was established ({attempt} attempt(s))", None
            delay = self._backoff(attempt)
            if attempt >= settings.connect_attempts or (deadline is not None and time.monotonic() + delay >= deadline):
                raise BrokerUnreachable(failure) from cause
            self.logger.warning(
                "Could not connect to the broker; trying again",
                extra={"broker": self.url, "attempt": attempt, "delay_seconds": round(delay, 3), "reason": failure},
            )
            self.sleep(delay)

    def send_with_receipts(
        self,
        destination: str,
        messages: Sequence[StompMessage],
        *,
        receipt_timeout_seconds: float = 10.0,
        deadline: float | None = None,
        noun: str = "message",
    ) -> list[str]:
        """Send every message with a receipt and wait for all of them; return the labels, all confirmed, in order.

        :param destination: ``/queue/<name>`` (ActiveMQ maps it to the JMS queue ``<name>``).
        :param receipt_timeout_seconds: the longest wait for the receipts. Default: 10 seconds.
        :param deadline: a ``time.monotonic()`` time no wait goes past (the invocation's end, less a margin). Default: none.
        :param noun: what ReceiptsMissing calls the messages. Default: "message".
        :raises BrokerError: no connection could be had (nothing was sent).
        :raises ReceiptsMissing: not every receipt came back; the connection is let go.
        """
        stomp = _require_stomp()
        if not messages:
            return []
        connection, listener = self.open(deadline=deadline)
        receipts: list[str] = []
        send_failure: str | None = None
        for message in messages:
            receipt = uuid.uuid4().hex
            headers = {**message.headers, "receipt": receipt}
            if message.persistent:
                headers["persistent"] = "true"
            try:
                connection.send(destination, message.body, content_type=message.content_type, headers=headers)
            except (stomp.exception.StompException, OSError) as exc:
                send_failure = f"the connection failed while sending ({exc!r})"
                break
            receipts.append(receipt)
        wait = receipt_timeout_seconds if deadline is None else min(receipt_timeout_seconds, deadline - time.monotonic())
        listener.wait_for(lambda: all(listener.answered(receipt) for receipt in receipts), wait, stop_on_refusal=False)
        if send_failure is None and all(receipt in listener.receipts for receipt in receipts):
            self.last_used = time.monotonic()
            return [message.label for message in messages]

        # Sending stops at the first failure, so ``receipts`` covers the first messages only.
        sent = list(zip(messages, receipts, strict=False))
        confirmed = [message.label for message, receipt in sent if receipt in listener.receipts]
        refused = [message.label for message, receipt in sent if receipt in listener.refused]
        unconfirmed = [message.label for message, receipt in sent if not listener.answered(receipt)]
        not_sent = [message.label for message in messages[len(receipts) :]]
        if listener.error is not None:
            reason = f"the broker sent an ERROR frame ({listener.error})"
        elif send_failure is not None:
            reason = send_failure
        elif listener.closed:
            reason = "the connection was closed before every receipt came back"
        else:
            reason = f"no receipt for {len(unconfirmed)} {noun}(s) within {max(0.0, wait):.1f} s"
        self.reset()
        raise ReceiptsMissing(confirmed, unconfirmed, not_sent, reason, noun, refused)

    def reset(self) -> None:
        """Let the connection go (after a failure): the next use makes a new one."""
        if self.connection is not None:
            _drop(self.connection)
        self.connection = None
        self.listener = None

    def close(self) -> None:
        """Send DISCONNECT (without waiting for its receipt) and let the connection go."""
        if self.connection is not None and self.connection.is_connected():
            try:
                self.connection.disconnect()
            except Exception:  # the connection may be half gone; dropping it is what matters
                pass
        self.reset()
