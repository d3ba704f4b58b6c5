"""Keep the ledger read model up to date from the bookings event store's stream.

Reads the store's DynamoDB stream (``NEW_IMAGE``); the event source mapping lets through only INSERTs of event items
(``kind = event``: not the command markers). Parse, effect, report on ``messaging_runtime.batch``: each image is read
as a booking event (any schema version, upcast) and applied with ``ledger.apply``, a conditional write that keeps the
newest version of each booking, so a duplicate or an older event is a success that changes nothing
(``SkippedStaleEvents``). A record that does not read as a booking event is logged with the reason and reported as a
failed item: Lambda retries it, then sends a description of the batch to the mapping's on-failure queue; the event
stays in the store, and ``ledger_rebuild.py`` can re-apply it.

Environment: READ_MODEL_TABLE (required).
"""

import os
from typing import Any

import boto3
import ledger
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config

from messaging_runtime import readers
from messaging_runtime.batch import DYNAMODB_STREAMS, BatchConsumer
from messaging_runtime.contracts.bookings import BookingEvent

READ_MODEL_TABLE = os.environ["READ_MODEL_TABLE"]
logger, tracer, metrics = Logger(), Tracer(), Metrics()
dynamodb = boto3.client("dynamodb", config=Config(retries={"mode": "standard", "max_attempts": 3}))


def read(record: DynamoDBRecord) -> BookingEvent:
    return ledger.parse_item(readers.new_image(record))


consumer = BatchConsumer(DYNAMODB_STREAMS, read=read, logger=logger, metrics=metrics)


def project(event: BookingEvent, record: DynamoDBRecord) -> None:
    consumer.count("EventsProjected" if ledger.apply(dynamodb, READ_MODEL_TABLE, event) else "SkippedStaleEvents")


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return consumer.process(event, context, effect=project)
