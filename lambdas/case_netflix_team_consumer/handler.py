"""Deliver the events a consumer team's rule routes to its queue to the team's own service, behind a circuit breaker.

One function per consumer team (TEAM_NAME), each reading its own queue, which its own rule on the bus fills: a team
that fails or falls behind holds up nobody else. Each record is a whole EventBridge event; its detail is read by the
contract its source and detail-type name (``messaging_runtime.contracts.viewing``), and anything else is rejected
with the reason, to end in the team's DLQ. The event goes to the team's service (``sink.py``) through the circuit
breaker ``sink-<team>`` kept in DynamoDB (``messaging_runtime.circuit_breaker``): after BREAKER_FAILURE_THRESHOLD
failures in a window the breaker opens and records fail at once, without calling the service, until a probe finds it
back. A failed record is redelivered by SQS and dead-lettered after the queue's maximum receives. The service is
called with the event's ``event_id`` as its idempotency key, so a redelivery is harmless.

Counts (one metric each per batch): EventsDelivered, DuplicatesSkipped, SinkFailures, CircuitOpenRefusals; and
``SinkCircuitState`` (0 closed, 1 half-open, 2 open) per invocation.

Environment: TEAM_NAME, BREAKER_TABLE_NAME (required); BREAKER_FAILURE_THRESHOLD (5), BREAKER_WINDOW_SECONDS (60),
BREAKER_OPEN_SECONDS (30); the stand-in's SINK_FAILURE_RATE and SINK_LATENCY_MS.
"""

import json
import os
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from sink import SinkUnavailable, TeamSink

from messaging_runtime.batch import SQS, BatchConsumer
from messaging_runtime.circuit_breaker import STATE_VALUES, CircuitBreaker, CircuitOpenError
from messaging_runtime.contracts.viewing import BY_TYPE
from messaging_runtime.rejection import Rejected, reason_of

logger, tracer, metrics = Logger(), Tracer(), Metrics()
TEAM = os.environ["TEAM_NAME"]
sink = TeamSink.from_environment()
env = os.environ.get
breaker = CircuitBreaker(
    boto3.resource("dynamodb").Table(os.environ["BREAKER_TABLE_NAME"]),
    f"sink-{TEAM}",
    failure_threshold=int(env("BREAKER_FAILURE_THRESHOLD", "5")),
    window_seconds=float(env("BREAKER_WINDOW_SECONDS", "60")),
    open_seconds=float(env("BREAKER_OPEN_SECONDS", "30")),
    is_failure=lambda error: isinstance(error, (TimeoutError, ConnectionError)),  # the service's fault, not the event's
)


def read(record: Any) -> tuple[str, Any]:
    """(detail-type, detail read by its contract) of the EventBridge event in an SQS record."""
    try:
        event = json.loads(record["body"])
        known = BY_TYPE.get((event["source"], event["detail-type"]))
    except (TypeError, ValueError, KeyError) as error:
        raise Rejected(f"the body is not an EventBridge event: {type(error).__name__}") from None
    if known is None:
        raise Rejected(f"{event['detail-type']!r} of {event['source']!r} is not an event of this bus")
    try:
        return known.name, known.parse(event.get("detail"))
    except Exception as error:
        raise Rejected(reason_of(error, what="the detail")) from None


consumer = BatchConsumer(SQS, read=read, logger=logger, metrics=metrics)


def deliver(event: tuple[str, Any], record: SQSRecord) -> None:
    kind, detail = event
    try:
        new = breaker.call(sink.deliver, detail.event_id, kind, detail.model_dump(mode="json"))
    except CircuitOpenError:
        consumer.count("CircuitOpenRefusals")
        raise
    except SinkUnavailable:
        consumer.count("SinkFailures")
        raise
    consumer.count("EventsDelivered" if new else "DuplicatesSkipped")


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        return consumer.process(event, context, effect=deliver)
    finally:  # the breaker's state after the batch; a failure to read it must not replace the batch's own outcome
        try:
            metrics.add_metric(name="SinkCircuitState", unit=MetricUnit.NoUnit, value=STATE_VALUES[breaker.state()])
        except Exception:
            logger.warning("The circuit breaker's state could not be read", exc_info=True)
