"""Start the payment saga: one charge saga per requested booking, one refund saga per cancelled confirmed booking.

Reads the ``saga-starts`` queue, which a rule fills with the ``BookingChanged`` events of ``blueprints.stays`` that
need a payment: the requests, and the cancellations of confirmed bookings. The outbox pipe publishes at least once,
so an event can arrive twice, and in any order with the others. The execution's name is the idempotency key of the
saga: ``<booking_id>`` for the charge, ``<booking_id>-refund`` for the refund, and its input the same text for the
same booking. Step Functions keeps a standard workflow's execution names for 90 days: a repeated start with the same
name and input returns the running execution, and otherwise (closed, or other input) is refused with
``ExecutionAlreadyExists``; either way there is one saga of each kind per booking. A refused start is counted
(``DuplicateStartsRefused``), not failed. A refund saga goes straight to the compensations (``compensate`` in its
input): it refunds the charge and records the refund. Any other error fails the record: SQS delivers it again, then
dead-letters it.

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
from messaging_runtime.contracts.bookings import BOOKING_CHANGED, SOURCE, BookingChangedV1
from messaging_runtime.rejection import Rejected
from messaging_runtime.saga_steps import start_once

logger, tracer, metrics = Logger(), Tracer(), Metrics()
stepfunctions = boto3.client("stepfunctions")
STATE_MACHINE_ARN = os.environ["STATE_MACHINE_ARN"]
consumer = BatchConsumer(
    SQS, read=readers.eventbridge_in_sqs(BOOKING_CHANGED, detail_types=[BOOKING_CHANGED.name], sources=[SOURCE]), logger=logger, metrics=metrics
)
REFUND_REQUEST = {"Error": "BookingCancelled", "Cause": "the guest cancelled a confirmed booking"}


def execution(change: BookingChangedV1) -> tuple[str, str]:
    """The execution name and input for ``change``; Rejected for an event no saga is for (the rule lets none through)."""
    booking = {"booking_id": change.booking_id, "guest_id": change.guest_id, "amount_minor": change.amount_minor, "currency": change.currency}
    if change.type == "BookingRequested":
        return change.booking_id, json.dumps({"booking": booking}, sort_keys=True, separators=(",", ":"))
    if change.type == "BookingCancelled" and change.previous_status == "CONFIRMED":
        document = {"booking": booking, "compensate": REFUND_REQUEST}
        return f"{change.booking_id}-refund", json.dumps(document, sort_keys=True, separators=(",", ":"))
    raise Rejected(f"a {change.type} event from {change.previous_status} starts no saga: the rule should not have sent it")


def start(change: BookingChangedV1, record: SQSRecord) -> None:
    consumer.count("SagaStarts" if start_once(stepfunctions, STATE_MACHINE_ARN, *execution(change)) else "DuplicateStartsRefused")


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return consumer.process(event, context, effect=start)
