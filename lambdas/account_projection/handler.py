"""Keep the accounts read model up to date from the event store's stream.

Reads the event store's DynamoDB stream (``NEW_IMAGE``); the event source
mapping lets through only INSERTs of event items. Parse, effect, report on
``messaging_runtime.batch``: each image (binaries decoded from the stream's
base64, ``readers.new_image``) is read as an account event of
``messaging_runtime.contracts.accounts`` and applied with ``read_model.apply``.

That write is conditional on purpose, one per record: it keeps the newest
version of each account, so a duplicate delivery or an event older than the
read model is a success that changes nothing (counted as SkippedStaleEvents),
and retries and replays are harmless in any order.

A record that is not the INSERT of an event item (a MODIFY or REMOVE, a
snapshot, an image that does not read as an event) is logged with the reason
and reported as a failed item: the store is append-only, so such a record
means something else writes to it. Lambda retries a shard from its first
failed record (the records after it are applied again, harmlessly), then
sends a description of the batch to the mapping's on-failure destination; the
events stay in the store, and ``rebuild.py`` can re-apply them.

Environment:
    READ_MODEL_TABLE    read model table (required)
"""

import os
from typing import Any

import boto3
import read_model
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config

from messaging_runtime import readers
from messaging_runtime.batch import DYNAMODB_STREAMS, BatchConsumer
from messaging_runtime.contracts.accounts import AccountEvent

READ_MODEL_TABLE = os.environ["READ_MODEL_TABLE"]

logger = Logger()
tracer = Tracer()
metrics = Metrics()
dynamodb = boto3.client("dynamodb", config=Config(retries={"mode": "standard", "max_attempts": 3}))


def read(record: DynamoDBRecord) -> AccountEvent:
    """The event the record's new image holds."""
    return read_model.parse_item(readers.new_image(record))


consumer = BatchConsumer(DYNAMODB_STREAMS, read=read, logger=logger, metrics=metrics)


def project(event: AccountEvent, record: DynamoDBRecord) -> None:
    """The effect: the read model shows the event, unless it shows this version or a newer one already."""
    consumer.count("EventsProjected" if read_model.apply(dynamodb, READ_MODEL_TABLE, event) else "SkippedStaleEvents")


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return consumer.process(event, context, effect=project)
