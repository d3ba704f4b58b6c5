"""The outbox pipe's enrichment: each outbox write on the table's stream, as the event the pipe puts on the bus.

The pipe hands over a batch of DynamoDB stream records (only outbox writes
pass its filter) and puts what this returns on the bus, one event per element,
in the same order: ``detail_type`` becomes the event's detail-type (a dynamic
path of the pipe's target) and ``detail`` its detail.

A record that is not an outbox event, or was written with another source than
the pipe's, is a bug upstream: the batch fails, the pipe bisects it and sends
the record that fails alone to its dead-letter queue, which alarms. Nothing is
dropped.

Environment: EVENT_SOURCE (required): the source every event of this outbox has.
"""

import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from messaging_runtime.outbox import bus_entry

EVENT_SOURCE = os.environ["EVENT_SOURCE"]

logger = Logger()
tracer = Tracer()
metrics = Metrics()


def enrich(record: dict[str, Any]) -> dict[str, Any]:
    entry = bus_entry(record)
    if entry["source"] != EVENT_SOURCE:
        raise ValueError(f"outbox event {entry['event_id']} of {entry['aggregate_id']} has source {entry['source']!r}; this outbox publishes {EVENT_SOURCE!r}")
    return {"detail_type": entry["detail_type"], "detail": entry["detail"]}


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: list[dict[str, Any]], context: LambdaContext) -> list[dict[str, Any]]:
    if not isinstance(event, list):
        raise ValueError(f"expected the pipe's batch (a JSON array of stream records), got {type(event).__name__}")
    try:
        entries = [enrich(record) for record in event]
    except Exception:
        logger.exception("Outbox batch refused; the pipe retries it, bisects it and dead-letters the record that fails", extra={"records": len(event)})
        raise
    metrics.add_metric(name="OutboxEventsRelayed", unit=MetricUnit.Count, value=len(entries))
    logger.info("Outbox events relayed", extra={"events": len(entries)})
    return entries
