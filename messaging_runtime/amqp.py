"""AMQP 0-9-1 to Amazon MQ for RabbitMQ: one connection and one channel per execution environment, made again when gone.

::

    client = AmqpClient(AmqpSettings.from_environment(), logger=logger, on_new_channel=check_exchange)

    def lambda_handler(event, context):
        client.publish(EXCHANGE, "shipment.picked", body, properties)   # returns once the broker confirmed it

What it guarantees:

- TLS by default (``amqps``, port 5671, as Amazon MQ listens): the server
  certificate is verified against the system's CA store and its host name
  checked, TLS 1.2 at least. Plain AMQP only when asked for (``tls=False``,
  ``BROKER_TLS=false``), for a broker on the test machine.
- Credentials come from the broker secret (``{"username", "password"}``),
  cached for ``secret_max_age_seconds``. When the broker refuses them the
  secret is read again, once, in case it was rotated; refused again, the
  error names the secret and the user (never the password).
- Connection failures (refused, reset, timed out, the broker going away
  during the handshake) are tried again with exponential backoff and jitter,
  ``connect_attempts`` times in all and never past the caller's deadline.
  Failures that another try cannot mend are not repeated: refused
  credentials (after the re-read), a virtual host the user may not use, a TLS
  failure (certificate, host name, a plain port), an unknown host name.
- One connection and one channel (in confirm mode unless told otherwise) are
  kept per execution environment, so warm invocations reuse them. Before each
  use they are checked: whatever the broker sent while the environment was
  frozen is read (a connection close, a channel close, missed heartbeats), and
  the connection or channel is made again only when it is closed or broken.
- ``publish`` returns only once the broker has confirmed the message; a
  message returned as unroutable (``mandatory``), refused with a nack or a
  channel close, or left without an answer because the connection was lost
  raises :class:`PublishNotConfirmed`, which says which it was.

pika comes from the ``mq_clients`` layer. This module imports without it (the
runtime layer is on every function); using it without pika raises an
ImportError that says so.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import os
import random
import socket
import ssl
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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
    import pika
    import pika.exceptions
except ImportError as _missing:  # the function has no mq_clients layer: fail when used, not when imported
    pika = None
    _PIKA_MISSING: ImportError | None = _missing
else:
    _PIKA_MISSING = None

if TYPE_CHECKING:
    from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

__all__ = [
    "AMQPS_PORT",
    "AccessRefused",
    "AmqpClient",
    "AmqpClients",
    "AmqpSettings",
    "BrokerCredentials",
    "BrokerError",
    "BrokerUnreachable",
    "ChannelRefused",
    "CredentialsRefused",
    "DIRECT_REPLY_TO",
    "is_direct_reply_to",
    "PublishNotConfirmed",
    "SecretError",
]

AMQPS_PORT = 5671
#: RabbitMQ's direct reply-to pseudo-queue: a requester consumes it (no-ack) and sends it as ``reply_to``.
DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"

_log = logging.getLogger(__name__)


def _require_pika() -> Any:
    if pika is None:
        raise ImportError(
            "messaging_runtime.amqp needs pika, which the mq_clients layer provides: add that layer to the function "
            f"(or pip install pika==1.4.4) ({_PIKA_MISSING})"
        ) from _PIKA_MISSING
    return pika


# --- errors -----------------------------------------------------------------------


class AccessRefused(BrokerError):
    """The broker took the credentials but the user may not use the virtual host."""


class ChannelRefused(BrokerError):
    """The broker closed a new channel (a passive declare of something missing, say); the connection is kept."""

    def __init__(self, message: str, reply_code: int | None = None, reply_text: str = "") -> None:
        super().__init__(message)
        self.reply_code = reply_code
        self.reply_text = reply_text


class PublishNotConfirmed(Exception):
    """The broker did not confirm a message.

    ``outcome`` is ``"unroutable"`` (returned: no queue for it), ``"nacked"`` (refused),
    ``"refused"`` (the broker closed the channel on it: no such exchange, no write
    permission) or ``"lost"`` (the connection went before an answer: the message may
    or may not be on a queue); ``reason`` says so in words.
    """

    def __init__(self, outcome: str, reason: str) -> None:
        super().__init__(reason)
        self.outcome = outcome
        self.reason = reason

    @property
    def may_be_queued(self) -> bool:
        return self.outcome == "lost"


# --- settings ---------------------------------------------------------------------


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class AmqpSettings:
    """Where the broker is and how to connect to it.

    :param host: the broker's host name (Amazon MQ: ``b-<id>.mq.<region>.on.aws``). Required.
    :param secret_arn: the Secrets Manager secret with ``{"username", "password"}``. Required.
    :param port: Default: 5671 (AMQPS).
    :param virtual_host: Default: ``/``.
    :param tls: Default: True. False only for a broker on the test machine.
    :param secret_max_age_seconds: how long the credentials are cached. Default: 300 seconds.
    :param connect_timeout_seconds: TCP connect and socket timeout of one attempt. Default: 5 seconds.
    :param handshake_timeout_seconds: one attempt's whole connection set-up (TCP, TLS, AMQP). Default: 15 seconds.
    :param heartbeat_seconds: Default: 60 seconds.
    :param blocked_connection_timeout_seconds: how long a publish may wait while the broker blocks
        publishers (memory or disk alarm) before the connection is dropped. Default: 10 seconds.
    :param connect_attempts: connection attempts in all, for failures another attempt may mend. Default: 3.
    :param retry_base_delay_seconds: the first backoff ceiling, doubled per attempt, with jitter. Default: 0.5 seconds.
    :param retry_max_delay_seconds: Default: 4 seconds.
    :param connection_name: what the broker shows for the connection. Default: the function's name.
    """

    host: str
    secret_arn: str
    port: int = AMQPS_PORT
    virtual_host: str = "/"
    tls: bool = True
    secret_max_age_seconds: int = 300
    connect_timeout_seconds: float = 5.0
    handshake_timeout_seconds: float = 15.0
    heartbeat_seconds: int = 60
    blocked_connection_timeout_seconds: float = 10.0
    connect_attempts: int = 3
    retry_base_delay_seconds: float = 0.5
    retry_max_delay_seconds: float = 4.0
    connection_name: str | None = None

    def __post_init__(self) -> None:
        if not self.host or not self.secret_arn:
            raise ValueError("an AMQP broker needs a host and the ARN of its secret")
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be from 1 to 65535, got {self.port}")
        if self.connect_attempts < 1:
            raise ValueError(f"connect_attempts must be at least 1, got {self.connect_attempts}")
        if self.connect_timeout_seconds <= 0 or self.handshake_timeout_seconds <= 0:
            raise ValueError("the connect and handshake timeouts must be positive")

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> AmqpSettings:
        """Settings from the variables every AMQP function has; keyword arguments override them.

        ``BROKER_HOST`` and ``BROKER_SECRET_ARN`` (required), ``BROKER_PORT`` (default 5671),
        ``BROKER_TLS`` (``true``, the default, or ``false``), ``VIRTUAL_HOST`` (default ``/``),
        ``SECRET_MAX_AGE_SECONDS`` (default 300). ValueError names a variable that is missing or wrong.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {
            "host": environment_text("BROKER_HOST", environ=env),
            "secret_arn": environment_text("BROKER_SECRET_ARN", environ=env),
            "port": environment_number("BROKER_PORT", AMQPS_PORT, low=1, high=65535, environ=env),
            "tls": environment_flag("BROKER_TLS", True, environ=env),
            "virtual_host": env.get("VIRTUAL_HOST") or "/",
            "secret_max_age_seconds": environment_number("SECRET_MAX_AGE_SECONDS", 300, low=0, high=86_400, environ=env),
            "connection_name": env.get("AWS_LAMBDA_FUNCTION_NAME") or None,
        }
        values.update(overrides)
        return cls(**values)

    @property
    def url(self) -> str:
        """``amqps://host:port/vhost``: how errors and logs name the broker (no credentials in it)."""
        return f"{'amqps' if self.tls else 'amqp'}://{self.host}:{self.port}/{self.virtual_host}"

    def with_virtual_host(self, virtual_host: str) -> AmqpSettings:
        return dataclasses.replace(self, virtual_host=virtual_host)

    def ssl_context(self) -> ssl.SSLContext:
        """The system CA store, the certificate required, the host name checked, TLS 1.2 at least."""
        context = ssl.create_default_context()
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

    def connection_parameters(self, credentials: Any, *, deadline: float | None = None) -> Any:
        """pika's ConnectionParameters for one attempt (``credentials``: BrokerCredentials or pika's PlainCredentials).

        :param deadline: a ``time.monotonic()`` time the attempt's timeouts do not go past. Default: none.
        """
        pika = _require_pika()
        connect_timeout, handshake_timeout = self.connect_timeout_seconds, self.handshake_timeout_seconds
        if deadline is not None:
            left = max(0.1, deadline - time.monotonic())
            connect_timeout, handshake_timeout = min(connect_timeout, left), min(handshake_timeout, left)
        return pika.ConnectionParameters(
            host=self.host,
            port=self.port,
            virtual_host=self.virtual_host,
            credentials=pika.PlainCredentials(credentials.username, credentials.password),
            ssl_options=pika.SSLOptions(self.ssl_context(), server_hostname=self.host) if self.tls else None,
            heartbeat=self.heartbeat_seconds,
            blocked_connection_timeout=self.blocked_connection_timeout_seconds,
            connection_attempts=1,  # the client retries, with backoff and a deadline
            socket_timeout=connect_timeout,
            stack_timeout=handshake_timeout,
            client_properties={"connection_name": self.connection_name or os.environ.get("AWS_LAMBDA_FUNCTION_NAME") or "messaging_runtime"},
        )


def is_direct_reply_to(address: str) -> bool:
    """Whether a ``reply_to`` is a direct reply-to address (``amq.rabbitmq.reply-to.<...>``): publish to it without ``mandatory``."""
    return address.startswith(DIRECT_REPLY_TO + ".")


def _permanent(exc: BaseException) -> bool:
    """Whether another connection attempt cannot mend the failure."""
    if isinstance(exc, ssl.SSLError):  # certificate, host name, TLS to a plain port
        return True
    if isinstance(exc, socket.gaierror):
        return exc.errno != socket.EAI_AGAIN  # an unknown name stays unknown; a DNS hiccup may pass
    return pika is not None and isinstance(exc, pika.exceptions.IncompatibleProtocolError)


# --- the client ---------------------------------------------------------------------


class AmqpClient:
    """One connection and one channel to one virtual host, kept across invocations and made again when gone.

    :param settings: where and how to connect. Required.
    :param confirm_delivery: put new channels in confirm mode, so ``publish`` returns only once
        the broker has taken the message. Default: True.
    :param on_new_channel: called with each new channel (a passive declare, a ``basic_consume``).
        It may raise BrokerError of its own; a ChannelClosedByBroker it lets through becomes
        :class:`ChannelRefused`. Default: none.
    :param logger: the handler's Powertools logger (or any ``logging.Logger``). Default: this module's logger.
    :param sleep: how to wait between attempts (tests pass a fake). Default: ``time.sleep``.
    """

    def __init__(
        self,
        settings: AmqpSettings,
        *,
        confirm_delivery: bool = True,
        on_new_channel: Callable[[BlockingChannel], Any] | None = None,
        logger: Any = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.confirm_delivery = confirm_delivery
        self.on_new_channel = on_new_channel
        self.logger = logger if logger is not None else _log
        self.sleep = sleep
        self.connection: BlockingConnection | None = None
        self._channel: BlockingChannel | None = None
        #: Connections made so far: 1 in an environment whose connection never broke.
        self.connections_made = 0

    @property
    def url(self) -> str:
        return self.settings.url

    # connecting

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.settings.retry_max_delay_seconds, self.settings.retry_base_delay_seconds * 2 ** (attempt - 1))
        return ceiling * random.uniform(0.5, 1.0)

    def connect(self, *, deadline: float | None = None) -> BlockingConnection:
        """A new connection (not kept: :meth:`channel` keeps one). Raises the BrokerError subclass that says why not.

        :param deadline: a ``time.monotonic()`` time after which no attempt starts and no backoff ends. Default: none.
        """
        pika = _require_pika()
        settings = self.settings
        if not settings.tls and not _is_loopback(settings.host):
            self.logger.warning("Connecting without TLS to a broker that is not on this machine", extra={"broker": self.url})
        attempt, reread, force_fetch = 0, False, False
        while True:
            credentials = read_broker_credentials(settings.secret_arn, max_age_seconds=settings.secret_max_age_seconds, force_fetch=force_fetch)
            force_fetch = False
            attempt += 1
            try:
                connection = pika.BlockingConnection(settings.connection_parameters(credentials, deadline=deadline))
            except (pika.exceptions.ProbableAuthenticationError, pika.exceptions.AuthenticationError) as exc:
                if not reread:
                    self.logger.warning("The broker refused the credentials; reading the secret again in case it was rotated", extra={"broker": self.url})
                    reread = force_fetch = True
                    attempt -= 1  # a refusal is not a connection failure
                    continue
                raise CredentialsRefused(f"{self.url} refused the credentials in {settings.secret_arn} (user {credentials.username!r}): {exc}") from exc
            except pika.exceptions.ProbableAccessDeniedError as exc:
                raise AccessRefused(f"{self.url}: user {credentials.username!r} may not use virtual host {settings.virtual_host!r}: {exc}") from exc
            except (pika.exceptions.AMQPError, OSError) as exc:  # OSError: socket, DNS and TLS errors pika lets through
                delay = self._backoff(attempt)
                late = deadline is not None and time.monotonic() + delay >= deadline
                if _permanent(exc) or attempt >= settings.connect_attempts or late:
                    raise BrokerUnreachable(f"could not connect to {self.url}: {exc!r} ({attempt} attempt(s))") from exc
                self.logger.warning(
                    "Could not connect to the broker; trying again",
                    extra={"broker": self.url, "attempt": attempt, "delay_seconds": round(delay, 3), "reason": repr(exc)},
                )
                self.sleep(delay)
                continue
            self.connections_made += 1
            return connection

    def is_alive(self) -> bool:
        """Whether the kept connection and channel can be used: what arrived while frozen is read first.

        Reading dispatches what came in (a consumer's deliveries, say) and notices a close
        from the broker, the end of the stream or missed heartbeats; a connection found
        broken is let go.
        """
        if self.connection is None or self._channel is None or not self.connection.is_open or not self._channel.is_open:
            return False
        pika = _require_pika()
        try:
            self.connection.process_data_events(time_limit=0)
        except (pika.exceptions.AMQPError, OSError) as exc:
            self.logger.info("The broker connection is gone; connecting again", extra={"broker": self.url, "reason": repr(exc)})
            self._discard_connection()
            return False
        return self.connection.is_open and self._channel.is_open

    def channel(self, *, deadline: float | None = None) -> BlockingChannel:
        """The kept channel when it is usable, else a new one (on a new connection when that is gone too)."""
        if self.is_alive():
            return self._channel
        pika = _require_pika()
        self._channel = None
        if self.connection is not None and not self.connection.is_open:
            self.connection = None
        if self.connection is None:
            self.connection = self.connect(deadline=deadline)
        channel = None
        try:
            channel = self.connection.channel()
            if self.confirm_delivery:
                channel.confirm_delivery()
            if self.on_new_channel is not None:
                self.on_new_channel(channel)
        except pika.exceptions.ChannelClosedByBroker as exc:
            raise ChannelRefused(f"the broker closed a new channel on {self.url}: ({exc.reply_code}) {exc.reply_text}", exc.reply_code, exc.reply_text) from exc
        except pika.exceptions.AMQPError as exc:
            self.reset()
            raise BrokerError(f"could not open a channel on {self.url}: {exc!r}") from exc
        except BaseException:  # the hook's own error: the half-made channel goes, the connection stays
            _close_quietly(channel)
            raise
        self._channel = channel
        return channel

    # using

    def publish(self, exchange: str, routing_key: str, body: bytes, properties: Any = None, *, mandatory: bool = True, deadline: float | None = None) -> None:
        """Publish one message; return once the broker has confirmed it.

        :param mandatory: have the broker return a message no queue takes, so that it fails as
            unroutable instead of vanishing. Default: True. (RabbitMQ 3.x reports replies to
            direct reply-to addresses as unroutable even when delivered: publish those without.)
        :raises BrokerError: no channel could be had (nothing was sent).
        :raises PublishNotConfirmed: sent, not confirmed; see its ``outcome``.
        """
        pika = _require_pika()
        channel = self.channel(deadline=deadline)
        try:
            channel.basic_publish(exchange, routing_key, body, properties, mandatory=mandatory)
        except pika.exceptions.UnroutableError as exc:
            if exchange == "":
                where = f"there is no queue {routing_key!r} in virtual host {self.settings.virtual_host!r}"
            else:
                where = f"no queue is bound to exchange {exchange!r} for routing key {routing_key!r}"
            raise PublishNotConfirmed("unroutable", f"unroutable: {where} (returned by the broker)") from exc
        except pika.exceptions.NackError as exc:
            raise PublishNotConfirmed("nacked", "the broker refused it (nack)") from exc
        except pika.exceptions.ChannelClosedByBroker as exc:  # no such exchange, no write permission: refused before routing
            self.reset()
            raise PublishNotConfirmed("refused", f"the broker closed the channel: ({exc.reply_code}) {exc.reply_text}") from exc
        except pika.exceptions.AMQPError as exc:
            self.reset()
            reason = f"the connection or channel was lost before the broker confirmed it, so it may or may not be on a queue ({exc!r})"
            raise PublishNotConfirmed("lost", reason) from exc

    def process_events(self, seconds: float) -> None:
        """Let the connection deliver what arrives for up to ``seconds`` (consumer callbacks run here)."""
        if self.connection is None:
            raise BrokerError(f"no connection to {self.url} to wait on")
        self.connection.process_data_events(time_limit=seconds)

    def reset(self) -> None:
        """Let the channel go, and the connection too unless it is still open (after a failure)."""
        self._channel = None
        if self.connection is not None and not self.connection.is_open:
            self.connection = None

    def close(self) -> None:
        """Close the connection (at the end of a test; Lambda just freezes the environment)."""
        self._channel = None
        self._discard_connection()

    def _discard_connection(self) -> None:
        connection, self.connection, self._channel = self.connection, None, None
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except Exception:  # closing what is already broken; nothing more to release
                pass


def _close_quietly(channel: Any) -> None:
    if channel is not None and channel.is_open:
        try:
            channel.close()
        except Exception:  # the channel may be half gone; the connection is what matters
            pass


class AmqpClients:
    """One :class:`AmqpClient` per virtual host, made on first use (a responder answering every virtual host its requests come from).

    :param settings: the broker; each client gets them with its virtual host. Required.
    :param options: what each AmqpClient takes besides settings (``logger``, ``on_new_channel`` ...).
    """

    def __init__(self, settings: AmqpSettings, **options: Any) -> None:
        self.settings = settings
        self.options = options
        self._clients: dict[str, AmqpClient] = {}

    def for_virtual_host(self, virtual_host: str) -> AmqpClient:
        if virtual_host not in self._clients:
            self._clients[virtual_host] = AmqpClient(self.settings.with_virtual_host(virtual_host), **self.options)
        return self._clients[virtual_host]

    def __iter__(self) -> Iterator[AmqpClient]:
        return iter(list(self._clients.values()))

    def close(self) -> None:
        for client in self:
            client.close()
