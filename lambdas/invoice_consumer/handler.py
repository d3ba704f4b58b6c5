"""Forward the ERP's invoice events from ActiveMQ to the event bus, once per business event.

The legacy ERP sends one JMS message per invoice change to an ActiveMQ queue
(over STOMP or OpenWire). Lambda's ActiveMQ event source mapping reads the
queue and invokes this function with a batch:
``{"eventSource": "aws:mq", "eventSourceArn": ..., "messages": [message, ...]}``,
each message with its JMS headers (``messageID``, ``messageType``,
``redelivered``, ``destination``, ...), its ``properties`` and its body
base64-encoded in ``data``. Text messages (``jms/text-message``) carry the
text body; bytes messages (``jms/bytes-message``) the bytes, which must be
UTF-8 text too. The body must be an invoice event in schema version 1::

    {"schema_version": 1, "invoice_id": "inv-...", "order_id": "o-...",
     "customer_id": "c-...", "amount": "123.45", "currency": "EUR",
     "status": "issued" | "paid" | "voided", "issued_at": "<ISO 8601 time in UTC>"}

``amount`` is a decimal in a JSON string and goes on as that same string.

Effect: each invoice event is put on the event bus (the ActiveMQ to cloud
bridge) with Source ``legacy.erp`` and detail-type ``Invoice<Status>``
(InvoiceIssued, InvoicePaid, InvoiceVoided), the invoice as the detail.
Brokers and the ERP deliver at least once, so the forward is idempotent on
the business event, invoice id and status, with Powertools idempotency on a
DynamoDB table: the first delivery forwards and stores the event id, later
ones are skipped (DuplicateInvoicesSkipped). If PutEvents fails, the
idempotency record is removed with the failure, so the redelivery forwards.

Failures: Amazon MQ event source mappings have no partial batch response; an
invocation succeeds or fails as a whole. So every message of the batch is
handled, and if any failed (bad input, or an EventBridge or DynamoDB error)
the invocation raises one BatchFailed that lists each failed message by its
JMS ``messageID`` (or its place, ``messages[<index>]``, when it has none)
with the reason; a message that is not an object, which Lambda never sends,
fails the same way by its place. The broker then redelivers the whole
batch: the messages that went through are skipped as duplicates, and after
the redelivery policy's last attempt the broker moves the messages to its
dead-letter queue (ActiveMQ.DLQ unless the broker configuration names
another).

Environment:
    EVENT_BUS_NAME                      event bus name or ARN (required)
    IDEMPOTENCY_TABLE_NAME              idempotency table (required)
    EVENT_SOURCE                        Source of the events put on the bus, default legacy.erp
    IDEMPOTENCY_EXPIRES_AFTER_SECONDS   how long an invoice event counts as forwarded, default 14 days;
                                        keep it longer than a message may wait in the dead-letter queue
    PUT_MAX_ATTEMPTS                    attempts per PutEvents entry within one invocation, default 3
    PUT_RETRY_BASE_DELAY_SECONDS        first backoff ceiling, default 0.2
"""

import base64
import binascii
import json
import os
import random
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Annotated, Any, Callable, Literal

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes.active_mq_event import ActiveMQMessage
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config
from pydantic import AwareDatetime, BaseModel, ConfigDict, StrictInt, StringConstraints, ValidationError, field_validator

SCHEMA_VERSION = 1
SUPPORTED_MESSAGE_TYPES = ("jms/text-message", "jms/bytes-message")
# Long enough for a batch that fails for days (an EventBridge outage) and is then moved back from the dead-letter queue.
DEFAULT_EXPIRES_AFTER_SECONDS = 14 * 24 * 3600
MAX_BACKOFF_SECONDS = 5.0
MAX_REASON_CHARS = 500
# Entry error codes that the PutEvents reference lists as not retryable.
NON_RETRYABLE_CODES = frozenset(
    {
        "AccessDeniedException",
        "InvalidAccountIdException",
        "InvalidArgument",
        "MalformedDetail",
        "RedactionFailure",
        "NotAuthorizedForSourceException",
        "NotAuthorizedForDetailTypeException",
    }
)

EVENT_BUS_NAME = os.environ["EVENT_BUS_NAME"]
EVENT_SOURCE = os.environ.get("EVENT_SOURCE", "legacy.erp")
MAX_ATTEMPTS = max(1, int(os.environ.get("PUT_MAX_ATTEMPTS", "3")))
RETRY_BASE_DELAY_SECONDS = float(os.environ.get("PUT_RETRY_BASE_DELAY_SECONDS", "0.2"))

logger = Logger()
tracer = Tracer()
metrics = Metrics()
eventbridge = boto3.client("events", config=Config(retries={"mode": "standard", "max_attempts": 3}))

# The pause between PutEvents attempts. Tests replace it to run without waiting.
sleep: Callable[[float], None] = time.sleep


def _on_duplicate(response: Any, data_record: DataRecord) -> Any:
    logger.info("Invoice event already forwarded, skipped", extra={"idempotency_key": data_record.idempotency_key, "result": response})
    metrics.add_metric(name="DuplicateInvoicesSkipped", unit=MetricUnit.Count, value=1)
    return response


persistence_layer = DynamoDBPersistenceLayer(table_name=os.environ["IDEMPOTENCY_TABLE_NAME"])
idempotency_config = IdempotencyConfig(
    raise_on_no_idempotency_key=True,
    expires_after_seconds=int(os.environ.get("IDEMPOTENCY_EXPIRES_AFTER_SECONDS", DEFAULT_EXPIRES_AFTER_SECONDS)),
    response_hook=_on_duplicate,
)


def utc_text(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


class InvoiceEvent(BaseModel):
    """One invoice change, as the ERP sends it; other fields are ignored."""

    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")

    schema_version: StrictInt
    invoice_id: Annotated[str, StringConstraints(pattern=r"^inv-\S+$", max_length=128)]
    order_id: Annotated[str, StringConstraints(pattern=r"^o-\S+$", max_length=128)]
    customer_id: Annotated[str, StringConstraints(pattern=r"^c-\S+$", max_length=128)]
    # A non-negative decimal with at most 4 places, as text so that no digit is lost on the way.
    amount: Annotated[str, StringConstraints(pattern=r"^(0|[1-9][0-9]{0,17})(\.[0-9]{1,4})?$")]
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
    status: Literal["issued", "paid", "voided"]
    issued_at: AwareDatetime

    @field_validator("schema_version")
    @classmethod
    def _supported_version(cls, value: int) -> int:
        if value != SCHEMA_VERSION:
            raise ValueError(f"unsupported schema_version {value}, expected {SCHEMA_VERSION}")
        return value

    @field_validator("issued_at")
    @classmethod
    def _in_utc(cls, value: datetime) -> datetime:
        if value.utcoffset():
            raise ValueError(f"must be a UTC time (Z or +00:00), got offset {value.isoformat()[-6:]}")
        return value

    @property
    def detail_type(self) -> str:
        return f"Invoice{self.status.capitalize()}"

    @property
    def idempotency_key(self) -> str:
        """The business event: the same for a redelivery and for a second send of the same change by the ERP."""
        return f"{self.invoice_id}/{self.status}"

    def detail(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "invoice_id": self.invoice_id,
            "order_id": self.order_id,
            "customer_id": self.customer_id,
            "amount": self.amount,
            "currency": self.currency,
            "status": self.status,
            "issued_at": utc_text(self.issued_at),
        }


class RejectedMessage(ValueError):
    """The message is not an invoice event this function can read; the batch fails and the broker ends by dead-lettering it."""


class ForwardFailed(RuntimeError):
    """EventBridge did not take the invoice event; the batch fails and its redelivery forwards it."""


@dataclass(frozen=True)
class MessageFailure:
    message_id: str
    reason: str


class BatchFailed(RuntimeError):
    """Some messages of the batch failed. Amazon MQ has no partial batch response, so the whole batch is redelivered."""

    def __init__(self, failures: list[MessageFailure], total: int) -> None:
        self.failures = failures
        self.failed_message_ids = [failure.message_id for failure in failures]
        listed = "; ".join(f"{failure.message_id}: {failure.reason[:MAX_REASON_CHARS]}" for failure in failures)
        super().__init__(f"{len(failures)} of {total} messages failed; the broker redelivers the batch: {listed}")


def message_body(message: ActiveMQMessage) -> bytes:
    """The JMS body, decoded from base64, for the message types that carry one as text or bytes."""
    message_type = message.get("messageType")
    if message_type not in SUPPORTED_MESSAGE_TYPES:
        raise RejectedMessage(f"message type {message_type!r} is not supported, expected one of {', '.join(SUPPORTED_MESSAGE_TYPES)}")
    data = message.get("data")
    if not isinstance(data, str):
        raise RejectedMessage("message has no base64 data")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RejectedMessage(f"data is not base64: {exc}") from exc


def parse_invoice(body: bytes) -> InvoiceEvent:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RejectedMessage(f"body is not UTF-8 text: {exc}") from exc
    try:
        return InvoiceEvent.model_validate_json(text)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        if errors and errors[0]["type"] == "json_invalid":
            raise RejectedMessage(f"body is not JSON: {errors[0]['msg']}") from exc
        reason = "; ".join(f"{'.'.join(str(part) for part in error['loc']) or 'body'}: {error['msg']}" for error in errors)
        raise RejectedMessage(f"not an invoice event: {reason}") from exc


def forward(invoice: InvoiceEvent) -> str:
    """The side effect this function exists for: put the invoice event on the bus. Returns its event id."""
    entry = {
        "Source": EVENT_SOURCE,
        "DetailType": invoice.detail_type,
        "Detail": json.dumps(invoice.detail(), separators=(",", ":")),
        "EventBusName": EVENT_BUS_NAME,
    }
    for attempt in range(1, MAX_ATTEMPTS + 1):
        result = eventbridge.put_events(Entries=[entry])["Entries"][0]
        if result.get("EventId") and not result.get("ErrorCode"):
            logger.info("Invoice event put on the event bus", extra={"event_id": result["EventId"], "detail_type": invoice.detail_type})
            metrics.add_metric(name="InvoicesForwarded", unit=MetricUnit.Count, value=1)
            return result["EventId"]
        code = result.get("ErrorCode", "NoEventId")
        if code in NON_RETRYABLE_CODES or attempt == MAX_ATTEMPTS:
            raise ForwardFailed(f"PutEvents did not take the {invoice.detail_type} event after {attempt} attempt(s): {code}: {result.get('ErrorMessage', '')}")
        logger.warning("PutEvents entry failed, retrying", extra={"error_code": code, "attempt": attempt})
        sleep(random.uniform(0, min(MAX_BACKOFF_SECONDS, RETRY_BASE_DELAY_SECONDS * 2 ** (attempt - 1))))
    raise AssertionError("unreachable")  # the loop returns or raises


@idempotent_function(data_keyword_argument="idempotency_key", persistence_store=persistence_layer, config=idempotency_config)
def forward_once(*, idempotency_key: str, invoice: InvoiceEvent) -> dict[str, str]:
    return {"event_id": forward(invoice)}


@tracer.capture_method
def message_handler(message: ActiveMQMessage) -> dict[str, str]:
    try:
        invoice = parse_invoice(message_body(message))
    except RejectedMessage:
        metrics.add_metric(name="RejectedMessages", unit=MetricUnit.Count, value=1)
        raise
    except Exception as exc:  # any failure to read one message is that message's rejection
        metrics.add_metric(name="RejectedMessages", unit=MetricUnit.Count, value=1)
        raise RejectedMessage(f"message cannot be read: {type(exc).__name__}: {exc}") from exc
    logger.append_keys(invoice_id=invoice.invoice_id, invoice_status=invoice.status)
    try:
        return forward_once(idempotency_key=invoice.idempotency_key, invoice=invoice)
    finally:
        logger.remove_keys(["invoice_id", "invoice_status"])


def message_label(index: int, message: ActiveMQMessage) -> str:
    """The JMS message id, or the message's place in the batch when it has none."""
    message_id = message.get("messageID")
    return message_id if isinstance(message_id, str) and message_id else f"messages[{index}]"


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    idempotency_config.register_lambda_context(context)
    if not isinstance(event, dict) or not isinstance(event.get("messages"), list):
        raise ValueError("not an Amazon MQ for ActiveMQ event: no messages list")
    failures: list[MessageFailure] = []
    total = 0
    for index, raw in enumerate(event["messages"]):
        total += 1
        if not isinstance(raw, dict):
            reason = f"not a message object ({type(raw).__name__})"
            logger.error("Message failed", extra={"message_id": f"messages[{index}]", "reason": reason})
            metrics.add_metric(name="RejectedMessages", unit=MetricUnit.Count, value=1)
            failures.append(MessageFailure(message_id=f"messages[{index}]", reason=reason))
            continue
        message = ActiveMQMessage(raw)
        message_id = message_label(index, message)
        destination = message.get("destination")
        queue = destination.get("physicalName") if isinstance(destination, dict) else None
        logger.append_keys(message_id=message_id, redelivered=message.get("redelivered"), queue=queue)
        try:
            message_handler(message)
        except Exception as exc:  # every failure is listed; the batch fails after the last message
            reason = str(exc) if isinstance(exc, RejectedMessage) else f"{type(exc).__name__}: {exc}"
            logger.error(
                "Message failed",
                extra={"message_id": message_id, "queue": queue, "redelivered": message.get("redelivered"), "reason": reason},
                exc_info=not isinstance(exc, RejectedMessage),
            )
            failures.append(MessageFailure(message_id=message_id, reason=reason))
        finally:
            logger.remove_keys(["message_id", "redelivered", "queue"])
    if failures:
        raise BatchFailed(failures, total)
    return {"messages": total}
