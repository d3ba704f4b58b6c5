"""Start one order saga per accepted order, named after the order so that a duplicate start is refused.

Reads the ``saga-starts`` queue, which a rule fills with ``OrderAccepted``
events of ``blueprints.checkout`` (the outbox pipe publishes at least once, so
an order can arrive twice). Each starts the saga with the execution name
``<order_id>`` and the order as input. Step Functions keeps a standard
workflow's names for 90 days: the same name with the same input returns the
running execution, and otherwise (closed, or other input) is refused with
``ExecutionAlreadyExists``; either way there is one saga per order. A refused
start is counted (``DuplicateStartsRefused``), not failed; ``SagaStarts`` counts
the starts Step Functions accepted, a repeat of a running one included. Any other error fails the record: SQS
delivers it again, then dead-letters it.

Environment: STATE_MACHINE_ARN (required).
"""

import os
import time
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from messaging_runtime import readers
from messaging_runtime.batch import SQS, BatchConsumer
from messaging_runtime.contracts.checkout import ORDER_ACCEPTED, SOURCE, OrderAcceptedV1
from messaging_runtime.saga_steps import saga_input, start_once

logger = Logger()
tracer = Tracer()
metrics = Metrics()
stepfunctions = boto3.client("stepfunctions")
STATE_MACHINE_ARN = os.environ["STATE_MACHINE_ARN"]
consumer = BatchConsumer(
    SQS, read=readers.eventbridge_in_sqs(ORDER_ACCEPTED, detail_types=[ORDER_ACCEPTED.name], sources=[SOURCE]), logger=logger, metrics=metrics
)


def start(order: OrderAcceptedV1, record: SQSRecord) -> None:
    if not start_once(stepfunctions, STATE_MACHINE_ARN, order.order_id, saga_input(order.model_dump())):
        consumer.count("DuplicateStartsRefused")
        return
    consumer.count("SagaStarts")
    # The first hop of the order's path, from its acceptance to its saga: against the 1-second budget (docs/capstone-orders.md).
    metrics.add_metric(name="AcceptedToSagaStart", unit=MetricUnit.Milliseconds, value=max(0.0, (time.time() - order.accepted_at.timestamp()) * 1000))


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return consumer.process(event, context, effect=start)
