"""Forward Exercise 03's clicks from the MSK topic to the CapstoneAnalytics stream, as analytics events.

Reads the clickstream topic through an Amazon MSK event source mapping: parse, effect, report on
``messaging_runtime.batch``. Each record is a ``Click`` (``messaging_runtime.contracts.clicks``)
keyed by its ``user_id``, and ``from_click`` makes it an ``AnalyticsEvent``
(``contracts.analytics``). A record that cannot be read (value not base64 or not a click, no key, a
key that is not the click's ``user_id``, a click the analytics contract refuses: its ``user_id``
pattern is stricter than the click's) is logged with its topic, partition, offset and reason and
fails alone, so that it ends in the mapping's on-failure destination; a tombstone (no value) is
skipped and counted (TombstonesSkipped).

The effect takes the batch whole: one ``KinesisPublisher.publish`` of every event (Data: the event
as JSON; PartitionKey: its ``user_id``), ordered: per user the stream holds the events in the
batch's order with no gap, since once an event of a user is not stored (after the publisher's own
retries), that user's later events in the batch are held back. Each event Kinesis did not store
(throttled, an internal failure, held back, a call that failed) fails its record with the reason,
and Lambda retries it.

Metrics, per batch: EventsForwarded, RejectedRecords, FailedRecords, TombstonesSkipped.

Environment:
    STREAM_NAME   the CapstoneAnalytics events stream (required)
"""

import os
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.data_classes.kafka_event import KafkaEventRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config
from pydantic import ValidationError

from messaging_runtime import readers
from messaging_runtime.batch import KAFKA, BatchConsumer
from messaging_runtime.contracts.analytics import AnalyticsEventV1, from_click
from messaging_runtime.contracts.clicks import CLICK
from messaging_runtime.publishers import KinesisPublisher
from messaging_runtime.rejection import Rejected, validation_reason

if not (STREAM_NAME := os.environ.get("STREAM_NAME", "").strip()):
    raise RuntimeError("environment variable STREAM_NAME is required")

logger, tracer, metrics = Logger(), Tracer(), Metrics()
# Throttling and 5xx of a whole call are retried by botocore; the publisher then retries the entries that failed.
kinesis = boto3.client("kinesis", config=Config(retries={"mode": "standard", "max_attempts": 3}))
stream = KinesisPublisher(kinesis, stream_name=STREAM_NAME, ordered=True)
read_click = readers.kafka_json(CLICK, key_field="user_id")  # the key must be the click's user_id, as the producer keys it


class NotForwarded(RuntimeError):
    """Kinesis did not store the record's event: the record fails, and Lambda retries it."""


def read(record: KafkaEventRecord) -> AnalyticsEventV1:
    """The record's click as an analytics event; the key must be the click's ``user_id``, as the producer keys it."""
    click = read_click(record)
    try:
        return from_click(click)
    except ValidationError as error:
        raise Rejected(f"the analytics contract refuses the click: {validation_reason(error, root='event')}") from None


consumer = BatchConsumer(KAFKA, read=read, logger=logger, metrics=metrics)


def forward(events: list[tuple[KafkaEventRecord, AnalyticsEventV1]], seconds: float) -> dict[int, Exception]:
    """The effect on the batch: one publish of every event (none makes no call); returns the records whose event Kinesis did not store."""
    entries = [{"Data": event.model_dump_json(exclude_none=True).encode(), "PartitionKey": event.user_id} for _, event in events]
    result = stream.publish(entries, time_budget_seconds=seconds)
    consumer.count("EventsForwarded", result.sent_count)
    return {id(events[failed.index][0].raw_event): NotForwarded(f"Kinesis did not store the event: {failed.reason}") for failed in result.failed}


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    seconds = context.get_remaining_time_in_millis() / 1000 - 5  # no retry round that would outlast the invocation
    return consumer.process(event, context, batch_effect=lambda events: forward(events, seconds))
