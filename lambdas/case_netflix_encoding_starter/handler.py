"""Start one content-encoding workflow per uploaded title, named after the upload so that a duplicate start is refused.

Reads the encoding-requests queue, which a rule fills with ``TitleUploaded`` events of ``netflix.studio`` (EventBridge
delivers at least once). Each starts the workflow with the execution name ``<upload_id>`` and ``{"title": detail}`` as
input. Step Functions keeps a standard workflow's names for 90 days: the same name with the same input returns the
running execution, and otherwise is refused with ``ExecutionAlreadyExists``; either way there is one workflow per
upload. A refused start is counted (``DuplicateStartsRefused``), not failed; ``WorkflowStarts`` counts the accepted
ones. Any other error fails the record: SQS delivers it again, then dead-letters it.

Environment: STATE_MACHINE_ARN (required).
"""

import json
import os
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from messaging_runtime import readers
from messaging_runtime.batch import SQS, BatchConsumer
from messaging_runtime.contracts.viewing import STUDIO_SOURCE, TITLE_UPLOADED, TitleUploadedV1
from messaging_runtime.saga_steps import start_once

logger, tracer, metrics = Logger(), Tracer(), Metrics()
stepfunctions = boto3.client("stepfunctions")
STATE_MACHINE_ARN = os.environ["STATE_MACHINE_ARN"]
consumer = BatchConsumer(
    SQS,
    read=readers.eventbridge_in_sqs(TITLE_UPLOADED.current.Consumer, detail_types=[TITLE_UPLOADED.name], sources=[STUDIO_SOURCE]),
    logger=logger,
    metrics=metrics,
)


def start(title: TitleUploadedV1, record: SQSRecord) -> None:
    # The same text for the same upload, so that a repeated start of a running execution matches the first.
    document = json.dumps({"title": title.model_dump(mode="json")}, sort_keys=True)
    consumer.count("WorkflowStarts" if start_once(stepfunctions, STATE_MACHINE_ARN, title.upload_id, document) else "DuplicateStartsRefused")


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return consumer.process(event, context, effect=start)
