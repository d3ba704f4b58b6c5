"""The Kafka side of the producer: settings from the environment, librdkafka's configuration, delivery reports.

A record counts as sent only when the broker has acknowledged it (a delivery
report without error, from every in-sync replica since ``acks=all``). Records
without a report when the time is up are purged and count as not sent: none
is sent after the invocation has given up on it (one already on the wire may
still have been written, which is why it is reported as not acknowledged
rather than as not written).
"""

import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from confluent_kafka import KafkaError, KafkaException, Message, Producer

SECURITY_PROTOCOLS = ("SASL_SSL", "PLAINTEXT")
COMPRESSION_TYPES = ("none", "gzip", "snappy", "lz4", "zstd")
DEFAULT_LINGER_MS = 20
DEFAULT_DELIVERY_TIMEOUT_MS = 30_000
# Below the broker's default limit on a record batch (message.max.bytes, about 1 MB on MSK).
BATCH_SIZE_BYTES = 1_000_000
BATCH_MAX_RECORDS = 10_000
MAX_ERRORS_SHOWN = 3
HEADERS = [("content-type", b"application/json")]


class ConfigurationError(ValueError):
    """An environment variable is missing or has a value the producer cannot use."""


@dataclass(frozen=True)
class Settings:
    bootstrap_servers: str
    topic: str
    region: str
    security_protocol: str = "SASL_SSL"
    compression_type: str = "lz4"
    linger_ms: int = DEFAULT_LINGER_MS
    delivery_timeout_ms: int = DEFAULT_DELIVERY_TIMEOUT_MS


def _milliseconds(environ: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    text = environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ConfigurationError(f"{name} must be a whole number of milliseconds, got {text!r}") from None
    if not low <= value <= high:
        raise ConfigurationError(f"{name} must be {low} to {high} ms, got {value} ms")
    return value


def cluster_bootstrap_brokers(cluster_arn: str, security_protocol: str) -> str:
    """The cluster's bootstrap brokers for ``security_protocol``, from the MSK API (``kafka:GetBootstrapBrokers``)."""
    field_name = "BootstrapBrokerStringSaslIam" if security_protocol == "SASL_SSL" else "BootstrapBrokerString"
    try:
        response = boto3.client("kafka", config=Config(retries={"mode": "standard", "max_attempts": 3})).get_bootstrap_brokers(ClusterArn=cluster_arn)
    except (BotoCoreError, ClientError) as exc:
        raise ConfigurationError(f"cannot look up the bootstrap brokers of CLUSTER_ARN {cluster_arn!r}: {exc}") from exc
    brokers = (response.get(field_name) or "").strip()
    if not brokers:
        raise ConfigurationError(f"cluster {cluster_arn!r} has no {field_name}: is {security_protocol} access enabled on it?")
    return brokers


def settings_from(environ: Mapping[str, str], lookup: Callable[[str, str], str] = cluster_bootstrap_brokers) -> Settings:
    """Read and check the producer's environment variables; raise ``ConfigurationError`` naming the one at fault.

    The brokers are ``BOOTSTRAP_SERVERS`` when it is set, else looked up for ``CLUSTER_ARN`` (CloudFormation
    does not return an MSK cluster's bootstrap brokers, so a stack can only pass the ARN).
    """
    if not environ.get("TOPIC_NAME", "").strip():
        raise ConfigurationError("environment variable TOPIC_NAME is required")
    bootstrap_servers, cluster_arn = environ.get("BOOTSTRAP_SERVERS", "").strip(), environ.get("CLUSTER_ARN", "").strip()
    if not (bootstrap_servers or cluster_arn):
        raise ConfigurationError("environment variable BOOTSTRAP_SERVERS (the brokers) or CLUSTER_ARN (to look them up) is required")
    protocol = environ.get("KAFKA_SECURITY_PROTOCOL", "").strip() or "SASL_SSL"
    if protocol not in SECURITY_PROTOCOLS:
        raise ConfigurationError(f"KAFKA_SECURITY_PROTOCOL must be one of {', '.join(SECURITY_PROTOCOLS)}, got {protocol!r}")
    compression = environ.get("COMPRESSION_TYPE", "").strip() or "lz4"
    if compression not in COMPRESSION_TYPES:
        raise ConfigurationError(f"COMPRESSION_TYPE must be one of {', '.join(COMPRESSION_TYPES)}, got {compression!r}")
    region = environ.get("AWS_REGION", "").strip()
    if protocol == "SASL_SSL" and not region:
        raise ConfigurationError("AWS_REGION is required to sign MSK IAM tokens")
    linger_ms = _milliseconds(environ, "LINGER_MS", DEFAULT_LINGER_MS, 0, 1_000)
    delivery_timeout_ms = _milliseconds(environ, "DELIVERY_TIMEOUT_MS", DEFAULT_DELIVERY_TIMEOUT_MS, 1_000, 900_000)
    if delivery_timeout_ms <= linger_ms:
        raise ConfigurationError(f"DELIVERY_TIMEOUT_MS ({delivery_timeout_ms} ms) must be longer than LINGER_MS ({linger_ms} ms)")
    return Settings(
        bootstrap_servers=bootstrap_servers or lookup(cluster_arn, protocol),
        topic=environ["TOPIC_NAME"].strip(),
        region=region,
        security_protocol=protocol,
        compression_type=compression,
        linger_ms=linger_ms,
        delivery_timeout_ms=delivery_timeout_ms,
    )


#: Wait before reconnecting after a refused or lost IAM connection (MSK's advice for its connection-rate quota).
IAM_RECONNECT_BACKOFF_MS = 1_000


def producer_config(settings: Settings, *, client_id: str, oauth_cb: Callable[[str | None], tuple[str, float]]) -> dict[str, Any]:
    """librdkafka's configuration for the clickstream producer."""
    config: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap_servers,
        "client.id": client_id,
        # Acknowledged means written to every in-sync replica; with the topic's
        # min.insync.replicas that is at least that many brokers, so losing fewer
        # brokers than that after the acknowledgement loses nothing.
        "acks": "all",
        # librdkafka's own retries (after a timeout, a lost connection, a leader change)
        # can then never write a record twice or out of order within a partition.
        "enable.idempotence": True,
        # The partitioner of the Java client, so that a user's events land on the same
        # partition whichever Kafka client writes them: the consumer relies on that.
        "partitioner": "murmur2_random",
        # Wait up to linger.ms for a batch to fill: a request then carries many records
        # (up to batch.num.messages, or batch.size bytes) instead of one, which is what
        # lets one invocation send tens of thousands of records in a few requests.
        # flush() at the end sends what is waiting at once, so a request of a few
        # events does not wait for the linger.
        "linger.ms": settings.linger_ms,
        "batch.num.messages": BATCH_MAX_RECORDS,
        "batch.size": BATCH_SIZE_BYTES,
        # Whole batches are compressed; lz4 costs little CPU and shrinks the repetitive
        # JSON of click events several times, which is less network and less storage on
        # the brokers.
        "compression.type": settings.compression_type,
        # How long a record may wait for its acknowledgement, retries included, before it
        # is reported as failed. Keep it below the function's timeout so that every record
        # gets its report before the invocation ends.
        "delivery.timeout.ms": settings.delivery_timeout_ms,
    }
    if settings.security_protocol == "SASL_SSL":
        config.update(
            {
                # MSK IAM access control: TLS, and a SASL/OAUTHBEARER token that is a
                # SigV4-signed request from the function's role. librdkafka calls
                # oauth_cb for a token when it starts and again before the token expires.
                "security.protocol": "SASL_SSL",
                "sasl.mechanism": "OAUTHBEARER",
                "oauth_cb": oauth_cb,
                # MSK admits only a few new IAM-authenticated connections per second per
                # broker (4 on kafka.t3.small); a refused connection is retried after a
                # second, as MSK advises, instead of librdkafka's 100 ms
                # (https://docs.aws.amazon.com/msk/latest/developerguide/limits.html).
                "reconnect.backoff.ms": IAM_RECONNECT_BACKOFF_MS,
            }
        )
    else:
        config["security.protocol"] = "PLAINTEXT"
    return config


def _describe(error: KafkaError) -> str:
    return f"{error.name()}: {error.str()}"


@dataclass
class DeliveryReports:
    """Delivery reports of one invocation's records (each record's callback is bound to its invocation's reports)."""

    acknowledged: Counter = field(default_factory=Counter)  # partition -> records
    errors: Counter = field(default_factory=Counter)  # error -> records
    fatal: bool = False

    def __call__(self, error: KafkaError | None, message: Message) -> None:
        if error is None:
            self.acknowledged[message.partition()] += 1
        else:
            self.errors[_describe(error)] += 1
            self.fatal = self.fatal or error.fatal()

    def refused(self, error: KafkaError | str, records: int = 1) -> None:
        """Records the client would not even queue."""
        self.errors[error if isinstance(error, str) else _describe(error)] += records
        if isinstance(error, KafkaError):
            self.fatal = self.fatal or error.fatal()

    @property
    def acknowledged_total(self) -> int:
        return sum(self.acknowledged.values())

    def error_summary(self) -> str:
        shown = [f"{error} (x{count})" for error, count in self.errors.most_common(MAX_ERRORS_SHOWN)]
        if len(self.errors) > MAX_ERRORS_SHOWN:
            shown.append(f"and {len(self.errors) - MAX_ERRORS_SHOWN} other errors")
        return "; ".join(shown) or "no delivery report"


class DeliveryFailed(RuntimeError):
    """Some records were not acknowledged by the broker."""


def _queue(producer: Producer, topic: str, key: bytes, value: bytes, reports: DeliveryReports, deadline: float) -> bool:
    """Hand one record to librdkafka; False when its queue stayed full until ``deadline``."""
    while True:
        try:
            producer.produce(topic, value=value, key=key, headers=HEADERS, on_delivery=reports)
            return True
        except BufferError:
            # The local queue is full: serve delivery reports until there is room.
            if time.monotonic() >= deadline:
                return False
            producer.poll(0.05)
        except KafkaException as exc:
            reports.refused(exc.args[0])
            return True


def send(producer: Producer, topic: str, records: list[tuple[bytes, bytes]], *, deadline: float) -> DeliveryReports:
    """Send ``records`` (key, value) and collect every delivery report, waiting until ``deadline`` (``time.monotonic()``) at most."""
    reports = DeliveryReports()
    for index, (key, value) in enumerate(records):
        if not _queue(producer, topic, key, value, reports, deadline):
            reports.refused("not queued: the client's queue stayed full until the function's time ran out", len(records) - index)
            break
        producer.poll(0)  # serve the delivery reports that have come in
    still_queued = producer.flush(max(0.0, deadline - time.monotonic()))
    if still_queued:
        # Unacknowledged, and this invocation is about to report them as failed: make
        # sure they are never sent later. Their reports come back with a purge error.
        producer.purge()
        producer.flush(1.0)
    return reports
