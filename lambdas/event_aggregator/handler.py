"""Real-time aggregates: events, late events and unique users per event type and minute, from the events stream.

A Kinesis event source mapping with a 60-second tumbling window invokes this
with the window's records and the ``state`` it returned last time (Lambda keeps
it between the window's invocations). Each readable event is added to the
counts of its type and minute of arrival (``messaging_runtime.minute_counts``);
a second copy of an event id in one invocation is counted once
(``DuplicatesSkipped``). A record that is not an event is skipped and counted
(``RecordsNotAggregated``): the lake's transformation quarantines the same
record with its reason, so it is not lost.

When the window ends (``isFinalInvokeForWindow``, or ``isWindowTerminatedEarly``
when the state reached Lambda's 1 MB) the counts are written to the aggregates
table, one item per type and minute, and the state starts again empty. A failed
write fails the invocation: Lambda retries with the state from before, so the
same items are written again, never added twice; after its retries the batch
goes to the on-failure queue, where it alarms. Every response carries
``state``, as Lambda requires with tumbling windows.

Environment: AGGREGATES_TABLE (required); AGGREGATE_DAYS, how long items are
kept (TTL), default 30.
"""

import base64
import binascii
import os
import time
from datetime import UTC, datetime
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config

from messaging_runtime import lake
from messaging_runtime.minute_counts import MinuteCounts, minute_of
from messaging_runtime.publishers.table import DynamoDbPublisher
from messaging_runtime.rejection import Rejected

if not (TABLE := os.environ.get("AGGREGATES_TABLE", "").strip()):
    raise RuntimeError("environment variable AGGREGATES_TABLE is required")
KEEP_SECONDS = int(os.environ.get("AGGREGATE_DAYS", "30")) * 86_400

logger = Logger()
tracer = Tracer()
metrics = Metrics()
dynamodb = boto3.client("dynamodb", config=Config(retries={"mode": "standard", "max_attempts": 5}))
aggregates = DynamoDbPublisher(dynamodb, TABLE, key_attributes=("pk", "sk"))


def add(counts: MinuteCounts, records: list[dict[str, Any]]) -> dict[str, int]:
    """Add the records' events to ``counts``; the counts of what was added, skipped and not read."""
    added = {"EventsAggregated": 0, "DuplicatesSkipped": 0, "RecordsNotAggregated": 0, "LateEvents": 0}
    seen = set()
    for record in records:
        kinesis = record["kinesis"]
        try:
            event = lake.read_event(base64.b64decode(kinesis["data"], validate=True))
        except (Rejected, binascii.Error, ValueError) as error:
            logger.info("Record not aggregated", extra={"sequence_number": kinesis["sequenceNumber"], "reason": str(error)})
            added["RecordsNotAggregated"] += 1
            continue
        if event.event_id in seen:
            added["DuplicatesSkipped"] += 1
            continue
        seen.add(event.event_id)
        arrived = lake.arrival(kinesis["approximateArrivalTimestamp"] * 1000)
        late = lake.is_late(event, arrived)
        counts.add(event.event_type, minute_of(arrived), event.user_id, late=late, sequence_number=kinesis["sequenceNumber"])
        added["EventsAggregated"] += 1
        added["LateEvents"] += late
    return added


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if not isinstance(event, dict) or not isinstance(event.get("Records"), list) or "shardId" not in event:
        raise ValueError("expected a Kinesis tumbling-window event: Records, shardId, window, state")
    counts = MinuteCounts.from_state(event.get("state"))
    added = add(counts, event["Records"])
    for name, value in added.items():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    if not (event.get("isFinalInvokeForWindow") or event.get("isWindowTerminatedEarly")):
        return {"state": counts.to_state(), "batchItemFailures": []}
    items = counts.items(event["shardId"], int(time.time()) + KEEP_SECONDS)
    # Raises when a write is still refused after the retries: the invocation fails and Lambda retries it with the old state.
    aggregates.publish(
        ({"PutRequest": {"Item": item}} for item in items), time_budget_seconds=context.get_remaining_time_in_millis() / 1000 - 5
    ).raise_for_failures()
    metrics.add_metric(name="AggregatesWritten", unit=MetricUnit.Count, value=len(items))
    logger.info("Window written", extra={"window": event.get("window"), "items": len(items), "at": datetime.now(UTC).isoformat()})
    return {"state": {}, "batchItemFailures": []}
