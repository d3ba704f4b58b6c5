"""Driver positions from the stream into the H3 driver index (CaseUber).

The drivers' topic rule puts every position a driver's app publishes (``messaging_runtime.driver_index.DriverPosition``,
``driver_id`` set from the topic) on the positions stream, partitioned by driver, so one driver's positions arrive in
the order published. Each record is written with ``DriverIndex.record``: the driver's item updated only when the
position is newer than the one stored (a redelivered or late record is counted ``StalePositions`` and changes
nothing), the driver listed in its H3 cell, and removed from the cell it left. A record that is not a position fails
alone with its reason (``RejectedRecords``); Lambda retries it, then sends the batch's description to the on-failure
queue. Metrics: PositionsRecorded, CellChanges, DriversUnavailable, StalePositions.

Environment: INDEX_TABLE_NAME (required); INDEX_KEEP_SECONDS, how long an entry lives after its position (default 180).
"""

import base64
import json
import os
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import KinesisStreamRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from messaging_runtime.batch import KINESIS, BatchConsumer
from messaging_runtime.driver_index import DriverIndex, DriverPosition

logger = Logger()
tracer = Tracer()
metrics = Metrics()
index = DriverIndex(boto3.client("dynamodb"), os.environ["INDEX_TABLE_NAME"], keep_s=int(os.environ.get("INDEX_KEEP_SECONDS", "180")))
#: Outcomes of ``DriverIndex.record`` counted beside PositionsRecorded.
ALSO_COUNTED = {"moved": "CellChanges", "unavailable": "DriversUnavailable"}


def read(record: KinesisStreamRecord) -> DriverPosition:
    return DriverPosition.model_validate(json.loads(base64.b64decode(record.kinesis.data, validate=True)))


consumer = BatchConsumer(KINESIS, read=read, logger=logger, metrics=metrics)


def record_position(position: DriverPosition, record: KinesisStreamRecord) -> None:
    outcome = index.record(position)
    consumer.count("StalePositions" if outcome == "stale" else "PositionsRecorded")
    if outcome in ALSO_COUNTED:
        consumer.count(ALSO_COUNTED[outcome])


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return consumer.process(event, context, effect=record_position)
