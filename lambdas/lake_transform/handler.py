"""Firehose's transformation of the events stream into lake rows: every record an ``events`` row or a ``quarantine`` row.

Invoked by Amazon Data Firehose with a buffer of the stream's records
(``records[]``: ``recordId``, ``approximateArrivalTimestamp`` in milliseconds,
``data`` in base64, ``kinesisRecordMetadata``). Each is read with the
``AnalyticsEvent`` contract (``messaging_runtime.lake.read_event``):

- an event becomes its ``events`` row, routed there with ``otfMetadata``;
- a record that is not one (not UTF-8, not JSON, another shape, an unknown
  version) becomes a ``quarantine`` row with the reason and its payload, and
  is counted (``RecordsQuarantined``): nothing is dropped for being bad;
- a second copy of an event id within the buffer (a producer's retry) is
  ``Dropped`` and counted (``DuplicatesDropped``); copies further apart are
  removed where the lake is read (the named queries keep the first copy).

Every record is answered with its ``recordId``; a record whose answer cannot
be built at all (no data, a data field that is not base64) is quarantined too.
An exception here fails the invocation: Firehose retries it and then writes
the buffer to the error prefix of its S3 bucket (``processing-failed/``),
where it alarms. ``EventAge`` is each event's age when it reached the stream
(milliseconds), the part of freshness the pipeline does not control.

Environment: LAKE_DATABASE (required), the Glue database of both tables.
"""

import os
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from messaging_runtime import lake

if not (DATABASE := os.environ.get("LAKE_DATABASE", "").strip()):
    raise RuntimeError("environment variable LAKE_DATABASE is required")

logger = Logger()
tracer = Tracer()
metrics = Metrics()


def transform(records: list[dict[str, Any]], now: datetime) -> tuple[list[dict[str, Any]], dict[str, int], list[float]]:
    """The answer for each record, the counts, and the age of each event when it arrived (ms)."""
    buffer = lake.transform_buffer(
        records,
        now,
        database=DATABASE,
        read=lake.read_event,
        row=lambda event, arrived: (lake.event_row(event, arrived), lake.EVENTS_TABLE),
        quarantine=lambda where, data, reason, arrived: (lake.quarantine_row(where, data, reason, arrived), lake.QUARANTINE_TABLE),
        logger=logger,
    )
    ages = [(arrived - event.event_time).total_seconds() * 1000 for event, arrived in buffer.events]
    return buffer.answers, buffer.counts, ages


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    records = lake.buffer_records(event)
    answers, counts, ages = transform(records, datetime.now(UTC))
    for name, value in counts.items():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    if ages:
        metrics.add_metric(name="EventAge", unit=MetricUnit.Milliseconds, value=max(0.0, max(ages)))
    logger.info("Buffer transformed", extra={"records": len(records), **counts})
    return {"records": answers}
