"""Send invoices to the ERP's queue on the ActiveMQ broker, over STOMP.

Invoked directly with ``{"invoices": [invoice, ...]}`` (1 to 100), each an ``Invoice``
(``contracts.invoices``) with two liberties of this function's own: ``amount`` may be a JSON
number (it goes on as decimal text, so that no reader turns it into a binary float) and
``issued_at`` may be in any time zone (it goes on in UTC). Every invoice is validated before
anything is sent, so a bad request sends nothing and fails with a ValueError that names each bad
invoice by its index, with the reason; the same invoice event (id and status) twice is one of them.

Each invoice is a persistent SEND to ``DESTINATION_PREFIX + QUEUE_NAME`` (``/queue/<name>``, the JMS
queue ``<name>`` on ActiveMQ), JSON, with the headers ``invoice_id`` and ``invoice_status`` (JMS
properties: an invoice event is one invoice in one status, what a consumer drops duplicates on)
and ``type: invoice``. ``messaging_runtime.stomp`` keeps one connection per execution environment
(TLS, both hosts of an active/standby broker tried in order, the secret read again once if the
broker refuses it, retries with backoff, a new connection after a minute idle), sends every
invoice with a receipt and waits for all of them, at most ``RECEIPT_TIMEOUT_SECONDS`` and never
past the invocation's remaining time: an invoice counts as sent once its receipt is back. If one
is missing, the invocation fails with ReceiptsMissing, which says which invoices were confirmed,
refused, sent without a receipt (they may or may not be on the queue) or not sent, and why. The
response, ``{"published": n, "invoices": [{"invoice_id": ..., "status": ...}, ...]}``, lists
confirmed invoice events only.

Environment: QUEUE_NAME (required), DESTINATION_PREFIX (default /queue/), RECEIPT_TIMEOUT_SECONDS
(default 10), and the broker's (``StompSettings.from_environment``): BROKER_HOST (both hosts of an
active/standby broker, comma-separated), BROKER_SECRET_ARN (required), BROKER_PORT (default 61614),
BROKER_TLS (default true), VIRTUAL_HOST (the CONNECT frame's host; default the broker's host name,
which ActiveMQ expects), SECRET_MAX_AGE_SECONDS (default 300).
"""

import os
import time
from datetime import timezone
from decimal import Decimal
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from messaging_runtime.amazon_mq import environment_number
from messaging_runtime.contracts.fields import Timestamp
from messaging_runtime.contracts.invoices import InvoiceV1
from messaging_runtime.rejection import validation_reason
from messaging_runtime.stomp import BrokerError, ReceiptsMissing, StompClient, StompMessage, StompSettings

MAX_INVOICES = 100
# Time kept back from the invocation's remaining time, to report a failure before Lambda stops the function.
SAFETY_MARGIN_SECONDS = 1.0
DESTINATION = os.environ.get("DESTINATION_PREFIX", "/queue/") + os.environ["QUEUE_NAME"]
RECEIPT_TIMEOUT_SECONDS = environment_number("RECEIPT_TIMEOUT_SECONDS", 10.0, low=0.1, high=900)

logger, tracer, metrics = Logger(), Tracer(), Metrics()
client = StompClient(StompSettings.from_environment(), logger=logger)


class RequestedInvoice(InvoiceV1):
    """An invoice as the request may give it: ``issued_at`` in any time zone."""

    issued_at: Timestamp


def as_sent(item: Any) -> InvoiceV1:
    """The invoice event that goes on the queue: the amount as decimal text, the time in UTC."""
    amount = item.get("amount") if isinstance(item, dict) else None
    if isinstance(amount, (int, float)) and not isinstance(amount, bool):  # repr: the shortest text that reads back as the same float
        item = {**item, "amount": format(Decimal(repr(amount)) if isinstance(amount, float) else Decimal(amount), "f")}
    invoice = RequestedInvoice.model_validate(item)
    return InvoiceV1.model_validate({**dict(invoice), "issued_at": invoice.issued_at.astimezone(timezone.utc)})


def validate_request(event: Any) -> list[InvoiceV1]:
    """The request's invoices as they are sent; a ValueError naming every bad one otherwise."""
    items = event.get("invoices") if isinstance(event, dict) else None
    if isinstance(items, list) and len(items) > MAX_INVOICES:
        raise ValueError(f"{len(items)} invoices in one request, at most {MAX_INVOICES}")
    if not isinstance(items, list) or not items:
        raise ValueError('the request must be an object with a non-empty "invoices" list')
    invoices: dict[tuple[str, str], tuple[int, InvoiceV1]] = {}  # invoice event -> its first index, the invoice
    problems = []
    for index, item in enumerate(items):
        try:
            invoice = as_sent(item)
        except ValidationError as exc:
            problems.append(f"invoices[{index}]: {validation_reason(exc, root='invoice')}")
            continue
        first, _ = invoices.setdefault((invoice.invoice_id, invoice.status), (index, invoice))
        if first != index:
            problems.append(f"invoices[{index}]: {invoice.invoice_id} {invoice.status} is also invoices[{first}]")
    if problems:
        raise ValueError(f"{len(problems)} invalid invoice(s), nothing sent: " + "; ".join(problems))
    return [invoice for _, invoice in invoices.values()]


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    deadline = time.monotonic() + context.get_remaining_time_in_millis() / 1000 - SAFETY_MARGIN_SECONDS
    try:
        invoices = validate_request(event)
        headers = [{"invoice_id": invoice.invoice_id, "invoice_status": invoice.status, "type": "invoice"} for invoice in invoices]
    except ValueError as exc:
        metrics.add_metric(name="RequestsRefused", unit=MetricUnit.Count, value=1)
        logger.error("Request refused, nothing sent", extra={"reason": str(exc)})
        raise
    messages = [StompMessage(i.model_dump_json(), f"{i.invoice_id} {i.status}", h, "application/json") for i, h in zip(invoices, headers, strict=True)]
    try:
        client.send_with_receipts(DESTINATION, messages, receipt_timeout_seconds=RECEIPT_TIMEOUT_SECONDS, deadline=deadline, noun="invoice")
    except (ReceiptsMissing, BrokerError) as exc:
        confirmed = len(getattr(exc, "confirmed", ()))
        metrics.add_metric(name="InvoicesPublished", unit=MetricUnit.Count, value=confirmed)
        metrics.add_metric(name="InvoicesNotConfirmed", unit=MetricUnit.Count, value=len(invoices) - confirmed)
        logger.error("Invoices not all confirmed", extra={"reason": str(exc), "destination": DESTINATION})
        raise
    metrics.add_metric(name="InvoicesPublished", unit=MetricUnit.Count, value=len(invoices))
    logger.info("Invoices published", extra={"published": len(invoices), "destination": DESTINATION})
    return {"published": len(invoices), "invoices": [{"invoice_id": h["invoice_id"], "status": h["invoice_status"]} for h in headers]}
