"""Forward the ERP's invoice events (ActiveMQ) to the event bus, once per business event.

Parse: the ActiveMQ event source mapping's batch (``decode_activemq_event``, JMS text and bytes
messages); each body is an ``Invoice`` (``contracts.invoices``) in UTF-8 JSON.

Effect: each event goes on the bus as ``Invoice<Status>`` from ``legacy.erp``, the invoice as the
detail (``amount`` as sent, ``issued_at`` in fixed-width UTC), with PutEvents, 10 per call
(``EventBridgePublisher`` retries only what failed). Each business event (invoice id and status)
has a Powertools idempotency record: claimed before the batch's PutEvents, completed with the
event id after, deleted if PutEvents did not take the event, so that its redelivery forwards it.
An event forwarded before, or twice in the batch, is skipped. The records keep the key
``@idempotent_function`` gave them, ``<function>.handler.forward_once#<hash>``.

AWS calls per 1,000 events: 100 PutEvents (the floor) and 2,000 DynamoDB writes, each record's conditional
PutItem and its UpdateItem: a record per business event is the point, exactly once rests on it.

Report: ``process_batch`` names every failed message (bad input, an EventBridge or DynamoDB error)
in one BatchFailed; Amazon MQ has no partial batch response, so the broker redelivers the batch
(forwarded events are then skipped), then dead-letters it. Logs: a line per batch with the counts,
one per failed message. Metrics per batch: InvoicesForwarded, DuplicateInvoicesSkipped.

Environment: EVENT_BUS_NAME, IDEMPOTENCY_TABLE_NAME (required); EVENT_SOURCE (legacy.erp); PUT_MAX_ATTEMPTS (3),
PUT_RETRY_BASE_DELAY_SECONDS (0.2); IDEMPOTENCY_EXPIRES_AFTER_SECONDS (14 days: longer than a message may wait in the DLQ).
"""

import json
import os
from collections import Counter
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer, IdempotencyConfig
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config

from messaging_runtime.amazon_mq import decode_activemq_event, environment_number, process_batch
from messaging_runtime.contracts.invoices import INVOICE, SOURCE, InvoiceV1
from messaging_runtime.idempotency import BatchClaims
from messaging_runtime.publishers import EventBridgePublisher, Retry
from messaging_runtime.rejection import parse_json

EVENT_SOURCE = os.environ.get("EVENT_SOURCE", SOURCE)

eventbridge = boto3.client("events", config=Config(retries={"mode": "standard", "max_attempts": 3}))
retry = Retry(environment_number("PUT_MAX_ATTEMPTS", 3, low=1, high=10), environment_number("PUT_RETRY_BASE_DELAY_SECONDS", 0.2, low=0, high=5))
bus = EventBridgePublisher(eventbridge, event_bus_name=os.environ["EVENT_BUS_NAME"], retry=retry)
persistence_layer = DynamoDBPersistenceLayer(table_name=os.environ["IDEMPOTENCY_TABLE_NAME"])
expiry = environment_number("IDEMPOTENCY_EXPIRES_AFTER_SECONDS", 14 * 24 * 3600, low=60, high=366 * 24 * 3600)
persistence_layer.configure(IdempotencyConfig(raise_on_no_idempotency_key=True, expires_after_seconds=expiry), function_name="handler.forward_once")
claims = BatchClaims(persistence_layer)
logger, tracer, metrics = Logger(), Tracer(), Metrics()


class ForwardFailed(RuntimeError):
    """PutEvents did not take an invoice event: its message fails, and the redelivery forwards it."""


def reported(outcome: Any) -> Any:
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def detail(invoice: InvoiceV1) -> str:
    issued_at = invoice.issued_at.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"  # the contract's time is UTC
    return json.dumps({**invoice.model_dump(mode="json"), "issued_at": issued_at}, separators=(",", ":"))


def forward(claimed: dict[str, tuple[str, InvoiceV1]], outcomes: dict[str, Any], seconds: float) -> None:
    """Put the claimed events on the bus, 10 per call; complete the record of each PutEvents took, delete the others'."""
    result = bus.publish([{"Source": EVENT_SOURCE, "DetailType": i.detail_type, "Detail": detail(i)} for _, i in claimed.values()], time_budget_seconds=seconds)
    answers = {sent.index: sent.result["EventId"] for sent in result.sent} | {failed.index: failed for failed in result.failed}
    for index, (key, (place, invoice)) in enumerate(claimed.items()):
        try:
            if isinstance(answer := answers[index], str):
                claims.complete(key, {"event_id": answer})
                continue
            reason = f"PutEvents did not take the {invoice.detail_type} event after {answer.attempts} attempt(s): {answer.code}: {answer.message}"
            claims.release(key, ForwardFailed(reason))
            outcomes[place] = ForwardFailed(reason)
        except Exception as error:  # a record left in progress expires with this invocation; the redelivery forwards then
            outcomes[place] = error


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    claimed: dict[str, tuple[str, InvoiceV1]] = {}  # idempotency key -> the message that forwards it, its invoice
    outcomes: dict[str, Any] = {}  # message place -> "forwarded", "skipped" or the exception it failed with
    batch = decode_activemq_event(event)
    for message in batch.messages:
        try:
            invoice = parse_json(INVOICE, message.text())
            key = f"{invoice.invoice_id}/{invoice.status}"
            if key not in claimed and claims.claim(key, context):
                claimed[key] = (message.place, invoice)
            outcomes[message.place] = "forwarded" if claimed.get(key, ("",))[0] == message.place else "skipped"
        except Exception as error:  # that message's failure, reported with the batch's others
            outcomes[message.place] = error
    forward(claimed, outcomes, context.get_remaining_time_in_millis() / 1000 - 2)
    done = Counter(outcome for outcome in outcomes.values() if isinstance(outcome, str))
    for name, value in (("InvoicesForwarded", done["forwarded"]), ("DuplicateInvoicesSkipped", done["skipped"])):
        if value:
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    logger.info("Batch processed", extra={"messages": len(batch), "failed": len(batch) - done.total(), **done})
    process_batch(batch, lambda message: reported(outcomes[message.place]), logger=logger, metrics=metrics)
    return {"messages": len(batch)}
