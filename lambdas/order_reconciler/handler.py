"""Find orders past their deadline and end each one through its saga; alarm while any is left.

A schedule sends a ``reconcile`` message to the reconcile queue every few
minutes; each one reads the open orders whose deadline has passed (the
orders table's sparse ``open-orders`` index) and ends each through the saga:

- no saga ran (its start was lost): a saga named after the order that
  only compensates (``compensate`` in its input), so that a late start of the
  real one is refused by name;
- the saga still runs past the deadline (stuck in retries): it is stopped,
  then a compensating saga ``<order_id>-reconciled`` runs;
- the saga failed, timed out or was aborted: the same compensating saga.

Compensations are idempotent and leave tombstones, so a step still in flight
when its saga was stopped takes nothing afterwards. Starting the compensating
saga twice is refused by its name: a reconcile run that overlaps another does
no harm. ``OrdersPastDeadline`` (how many were found) is alarmed on.

Environment: ORDERS_TABLE_NAME, STATE_MACHINE_ARN (required); RECONCILE_BATCH (100).
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
from messaging_runtime.checkout import OrderStore
from messaging_runtime.contracts.checkout import ReconcileRequest
from messaging_runtime.outbox import Outbox
from messaging_runtime.saga_steps import saga_input

logger, tracer, metrics = Logger(), Tracer(), Metrics()
stepfunctions = boto3.client("stepfunctions")
STATE_MACHINE_ARN = os.environ["STATE_MACHINE_ARN"]
BATCH = int(os.environ.get("RECONCILE_BATCH", "100"))
# The store only reads here; the outbox is never written by the reconciler.
store = OrderStore(boto3.client("dynamodb"), os.environ["ORDERS_TABLE_NAME"], Outbox("unused"))
consumer = BatchConsumer(SQS, read=readers.sqs_json(ReconcileRequest), logger=logger, metrics=metrics)
EXPIRED = {"Error": "OrderExpired", "Cause": "the order passed its deadline"}


def execution_arn(name: str) -> str:
    return STATE_MACHINE_ARN.replace(":stateMachine:", ":execution:", 1) + f":{name}"


def status_of(name: str) -> str | None:
    try:
        return stepfunctions.describe_execution(executionArn=execution_arn(name))["status"]
    except stepfunctions.exceptions.ExecutionDoesNotExist:
        return None


def start_compensation(order: dict[str, Any], name: str) -> None:
    if status_of(name) is not None:  # an earlier run started it (a running one would only be returned again)
        return consumer.count("CompensationsAlreadyStarted")
    try:
        stepfunctions.start_execution(stateMachineArn=STATE_MACHINE_ARN, name=name, input=saga_input(order, compensate=EXPIRED))
        consumer.count("CompensationsStarted")
    except stepfunctions.exceptions.ExecutionAlreadyExists:
        consumer.count("CompensationsAlreadyStarted")


def end(order: dict[str, Any]) -> None:
    """Drive one order past its deadline towards a terminal status through the saga."""
    status = status_of(order["order_id"])
    if status is None:
        return start_compensation(order, order["order_id"])
    if status == "SUCCEEDED":  # it ended but the order did not: its last write is the reconciler's to report, not to guess
        logger.error("Saga succeeded but the order is open", extra={"order_id": order["order_id"], "status": order["status"]})
        return consumer.count("OrdersLeftOpenBySaga")
    if status == "RUNNING":
        stepfunctions.stop_execution(executionArn=execution_arn(order["order_id"]), error="OrderExpired", cause=EXPIRED["Cause"])
        consumer.count("SagasStopped")
    start_compensation(order, f"{order['order_id']}-reconciled")


def reconcile(request: ReconcileRequest, record: SQSRecord) -> None:
    late = store.past_deadline(time.time(), limit=BATCH)
    metrics.add_metric(name="OrdersPastDeadline", unit=MetricUnit.Count, value=len(late))
    for order in late:
        logger.warning("Order past its deadline", extra={"order_id": order["order_id"], "status": order["status"], "deadline": int(order["deadline"])})
        end(order)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return consumer.process(event, context, effect=reconcile)
