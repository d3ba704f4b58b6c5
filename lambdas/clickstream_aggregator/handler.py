"""Aggregate clickstream events per user into DynamoDB, exactly once per record.

Reads the clickstream topic through an Amazon MSK event source mapping: parse, effect, report on
``messaging_runtime.batch``. Each record is a ``Click`` (``messaging_runtime.contracts.clicks``)
keyed by its ``user_id``. A record that cannot be read (value not base64 or not a click, no key, a
key that is not the event's ``user_id``) is logged with its topic, partition, offset and reason and
fails alone; a tombstone (no value) is skipped and counted (TombstonesSkipped); a record without
topic, partition or offset fails the invocation with a ValueError.

The effect takes the batch whole: its clicks are grouped per user, topic and partition, and each
group is applied with one conditional UpdateItem (``aggregates.py``: the item, and the offset
condition that makes a redelivery harmless). Records applied before count as duplicates
(DuplicateRecordsSkipped), the others as RecordsAggregated; a failed group write (throttling, an
outage) is logged once and fails that group's records only.

Environment:
    AGGREGATES_TABLE   aggregates table, partition key ``user_id`` (S) (required)
"""

import os
from collections import defaultdict
from typing import Any

import aggregates
import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.data_classes.kafka_event import KafkaEventRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from messaging_runtime import readers
from messaging_runtime.batch import KAFKA, BatchConsumer
from messaging_runtime.contracts.clicks import CLICK, ClickV1

if not (TABLE_NAME := os.environ.get("AGGREGATES_TABLE", "").strip()):
    raise RuntimeError("environment variable AGGREGATES_TABLE is required")

logger = Logger()
tracer = Tracer()
metrics = Metrics()
# Throttling and 5xx are retried by botocore; what is still failing fails the group's records.
dynamodb = boto3.client("dynamodb", config=Config(retries={"mode": "standard", "max_attempts": 5}))
# The version first (a newer one is refused for its version alone); the record's key must be the click's user_id.
read = readers.kafka_json(CLICK, key_field="user_id")


consumer = BatchConsumer(KAFKA, read=read, logger=logger, metrics=metrics)


def aggregate(clicks: list[tuple[KafkaEventRecord, ClickV1]]) -> dict[int, Exception]:
    """The effect on the batch: one conditional write per (user, topic, partition); returns the records of the groups that failed."""
    groups: dict[tuple[str, str, int], dict[int, ClickV1]] = defaultdict(dict)
    for record, click in clicks:
        groups[(click.user_id, record.topic, record.partition)].setdefault(record.offset, click)
    applied, duplicates, failed = 0, len(clicks) - sum(map(len, groups.values())), {}  # a record twice in one batch counts once
    for group, by_offset in groups.items():
        try:
            group_applied, group_duplicates = aggregates.apply_group(dynamodb, TABLE_NAME, *group, sorted(by_offset.items()))
        except (ClientError, BotoCoreError, aggregates.GroupWriteFailed) as error:
            user_id, topic, partition = group
            offsets = sorted(by_offset)
            logger.error("Group write failed", extra={"user_id": user_id, "topic": topic, "partition": partition, "offsets": offsets, "reason": str(error)})
            failed[group] = aggregates.GroupWriteFailed(f"write of {len(offsets)} records of {user_id!r} failed: {error}")
            continue
        applied, duplicates = applied + group_applied, duplicates + group_duplicates
    consumer.count("RecordsAggregated", applied)
    consumer.count("DuplicateRecordsSkipped", duplicates)
    return {id(record.raw_event): failed[g] for record, click in clicks if (g := (click.user_id, record.topic, record.partition)) in failed} if failed else {}


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return consumer.process(event, context, batch_effect=aggregate)
