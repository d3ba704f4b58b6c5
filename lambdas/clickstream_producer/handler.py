"""Write clickstream events to the MSK topic, keyed by user.

Invoked directly (Lambda Invoke) with either the events to send::

    {"events": [{"schema_version": 1, "event_id": "<uuid>", "user_id": "u-42", "session_id": "s-1",
                 "page": "/cart", "action": "add_to_cart", "occurred_at": "2025-03-14T09:26:53Z"}, ...]}

or a request for synthetic events, for load generation::

    {"generate": {"count": 50000, "users": 1000}}

Every event is checked before anything is sent (``click_events.py``); an
invalid request is refused with the index and field of each error and sends
nothing. Each event becomes one record: key ``user_id`` (so a user's events
stay in order on one partition, which the aggregator relies on), value the
event as JSON with ``occurred_at`` in UTC.

The Kafka producer is made once per execution environment and reused by the
invocations after it; its configuration, and why, is in
``kafka_delivery.py`` (acks from all in-sync replicas, idempotence, batching,
compression). An invocation hands every record to librdkafka, flushes, and
collects every delivery report. Only records the broker acknowledged count:
if any record is not acknowledged in time (an error report, or no report
when the time is up: those are purged, so none is sent after the invocation
has given up on it; one already on the wire may still have been written),
the invocation fails with how many of how many failed and the first errors;
the next invocation starts with a new producer only after a fatal client
error, and otherwise keeps the connections it has. The records that were
acknowledged stay on the topic: a retry of the whole request writes them
again, at new offsets, so the error says how many there were.

On success it answers ``{"produced": n, "topic": "<topic>", "partitions": {"<partition>": count}}``.

Environment:
    BOOTSTRAP_SERVERS         the cluster's bootstrap brokers, comma-separated; or
    CLUSTER_ARN               the cluster, whose brokers are then looked up once per execution
                              environment (kafka:GetBootstrapBrokers); one of the two is required
    TOPIC_NAME                the topic (required)
    KAFKA_SECURITY_PROTOCOL   SASL_SSL (MSK IAM, default) or PLAINTEXT (local brokers only)
    COMPRESSION_TYPE          none, gzip, snappy, lz4 or zstd, default lz4
    LINGER_MS                 how long a batch may wait to fill, default 20 ms
    DELIVERY_TIMEOUT_MS       how long a record may wait for its acknowledgement, default 30,000 ms;
                              keep it below the function's timeout
"""

import os
import time
from typing import Any

import click_events
import kafka_delivery
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from aws_msk_iam_sasl_signer import MSKAuthTokenProvider
from confluent_kafka import Producer

# Time kept back from the function's remaining time for what follows the flush.
FINISH_MARGIN_SECONDS = 1.0

SETTINGS = kafka_delivery.settings_from(os.environ)

logger = Logger()
tracer = Tracer()
metrics = Metrics()


def msk_iam_token(_oauthbearer_config: str | None) -> tuple[str, float]:
    """librdkafka's OAUTHBEARER callback: a token signed with the function's credentials, and when it expires (epoch seconds)."""
    token, expires_at_ms = MSKAuthTokenProvider.generate_auth_token(SETTINGS.region)
    return token, expires_at_ms / 1000


PRODUCER_CONFIG = kafka_delivery.producer_config(SETTINGS, client_id=os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "clickstream-producer"), oauth_cb=msk_iam_token)
_producer: Producer | None = Producer(PRODUCER_CONFIG)


def producer() -> Producer:
    """This execution environment's producer, made anew only after a fatal client error."""
    global _producer
    if _producer is None:
        _producer = Producer(PRODUCER_CONFIG)
    return _producer


def _discard_producer() -> None:
    global _producer
    _producer = None


@tracer.capture_method
def send_records(records: list[tuple[bytes, bytes]], deadline: float) -> kafka_delivery.DeliveryReports:
    return kafka_delivery.send(producer(), SETTINGS.topic, records, deadline=deadline)


def _check(reports: kafka_delivery.DeliveryReports, total: int) -> None:
    failed = total - reports.acknowledged_total
    metrics.add_metric(name="RecordsProduced", unit=MetricUnit.Count, value=reports.acknowledged_total)
    metrics.add_metric(name="RecordsFailed", unit=MetricUnit.Count, value=failed)
    if not failed:
        return
    # Only a fatal error (librdkafka's: the idempotent producer cannot go on) needs a new client. Any other
    # failure (a timeout, purged records) keeps this one and its connections: a new client would open new
    # IAM-authenticated connections, which MSK admits at a few per second per broker (docs/exercise-03.md).
    if reports.fatal:
        _discard_producer()
    summary = reports.error_summary()
    logger.error(
        "Records not acknowledged",
        extra={
            "topic": SETTINGS.topic,
            "records": total,
            "acknowledged": reports.acknowledged_total,
            "failed": failed,
            "errors": summary,
            "fatal": reports.fatal,  # the client itself cannot go on (librdkafka's fatal errors)
        },
    )
    raise kafka_delivery.DeliveryFailed(
        f"{failed} of {total} records were not acknowledged by the broker on topic {SETTINGS.topic!r} "
        f"({reports.acknowledged_total} were, and a retry of this request writes those again); first errors: {summary}"
    )


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = click_events.parse_request(event)
    if request.events is not None:
        records = [click_events.to_record(click) for click in request.events]
    else:
        records = click_events.synthetic_records(request.generate)
    deadline = time.monotonic() + context.get_remaining_time_in_millis() / 1000 - FINISH_MARGIN_SECONDS
    reports = send_records(records, deadline)
    _check(reports, len(records))
    partitions = {str(partition): count for partition, count in sorted(reports.acknowledged.items())}
    logger.info("Records produced", extra={"topic": SETTINGS.topic, "records": len(records), "partitions": partitions})
    return {"produced": reports.acknowledged_total, "topic": SETTINGS.topic, "partitions": partitions}
