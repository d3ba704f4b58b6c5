"""Erase users' data on request: their lake rows, their share of the aggregates, and a report of what was removed.

Reads the ``erasure-requests`` queue (``ErasureRequest``: request id, user id,
time). The queue delays each request by 15 minutes, longer than an event takes
from the stream to the lake, so that events in flight when the request was
made are erased with the others. The steps are ``messaging_runtime.erasure``'s;
the report lands in the reports bucket under ``erasures/<request id>.json``.
A request whose report says ``done`` is skipped (``ErasuresRepeated``). A step
that fails (an Athena error, a throttled write) fails the message: SQS
delivers it again and the erasure goes on from its report, then dead-letters
it, where it alarms.

Environment (all required): ATHENA_WORKGROUP, LAKE_DATABASE, REPORTS_BUCKET,
AGGREGATES_TABLE; AGGREGATE_DAYS (default 30), the aggregates' TTL.
"""

import os
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config

from messaging_runtime import readers
from messaging_runtime.athena import AthenaQueries
from messaging_runtime.batch import SQS, BatchConsumer
from messaging_runtime.contracts.analytics import ERASURE_REQUEST, ErasureRequestV1
from messaging_runtime.erasure import Erasure

logger = Logger()
tracer = Tracer()
metrics = Metrics()
retries = Config(retries={"mode": "standard", "max_attempts": 5})
consumer = BatchConsumer(SQS, read=readers.sqs_json(ERASURE_REQUEST), logger=logger, metrics=metrics)
athena = boto3.client("athena", config=retries)
erasure = Erasure(
    athena=AthenaQueries(athena, workgroup=os.environ["ATHENA_WORKGROUP"]),
    database=os.environ["LAKE_DATABASE"],
    s3=boto3.client("s3", config=retries),
    reports_bucket=os.environ["REPORTS_BUCKET"],
    dynamodb=boto3.client("dynamodb", config=retries),
    aggregates_table=os.environ["AGGREGATES_TABLE"],
    aggregate_seconds=int(os.environ.get("AGGREGATE_DAYS", "30")) * 86_400,
)


def erase(request: ErasureRequestV1, record: SQSRecord) -> None:
    erasure.athena.executions.clear()
    report = erasure.erase(request)
    if report.get("athena_executions") and not erasure.athena.executions:
        consumer.count("ErasuresRepeated")
        return
    consumer.count("ErasuresDone")
    logger.info("User erased", extra={"request_id": request.request_id, "removed": report["removed"], "aggregate_items": report["aggregate_items"]})


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return consumer.process(event, context, effect=erase)
