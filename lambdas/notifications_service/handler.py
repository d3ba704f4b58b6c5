"""Send one notification per business event seen on the event bus.

Reads the ``notifications`` queue, which a rule fills with every ``blueprints.*``
event but ``StockReleased`` (each body a whole EventBridge event). It knows these,
each read by its contract (the consumer view, any version it reads, upcast):

==================== ====================== ======== =====================
source               detail-type            versions notification kind
==================== ====================== ======== =====================
blueprints.orders    OrderPlaced            1, 2     order_placed
blueprints.orders    OrderCancelled         1, 2     order_cancelled
blueprints.inventory StockReserved          1        stock_reserved
blueprints.inventory StockShortage          1        stock_shortage
blueprints.scheduler DailyReportRequested   1        daily_report
blueprints.warehouse RestockRequested       1        restock_requested
==================== ====================== ======== =====================

Anything else (another source, detail-type or version, a detail its contract
refuses, a StockReleased past the rule) fails with the reason and ends in the DLQ.

Idempotency per record, with Powertools: a conditional write before the notification
and one after, which is the point. Replays and producer retries bring an event under
a new ``id``, so the key is the source, the detail-type and the order id; or the
report and the UTC day of ``time`` (one daily report a day, however often the
schedule fires); or the request id (the pipe gives each delivery a new ``id`` and ``time``).

Environment: IDEMPOTENCY_TABLE_NAME (required); IDEMPOTENCY_EXPIRES_AFTER_SECONDS
(default 14 days, at least the archive's retention).
"""

import os
from datetime import timezone
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer, IdempotencyConfig, idempotent_function
from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationInfo, field_validator

from messaging_runtime import readers
from messaging_runtime.batch import SQS, BatchConsumer
from messaging_runtime.contracts import EventKind
from messaging_runtime.contracts.inventory import RESTOCK_REQUESTED, STOCK_RESERVED, STOCK_SHORTAGE
from messaging_runtime.contracts.orders import ORDER_CANCELLED, ORDER_PLACED
from messaging_runtime.contracts.reports import DAILY_REPORT_REQUESTED

logger = Logger()
tracer = Tracer()
metrics = Metrics()


class BusEvent(EventBridgeModel):
    """An event as the rule delivers it: Powertools' envelope; ``detail`` read by the contract its source and detail-type name."""

    detail: dict[str, Any]

    @field_validator("detail_type")
    @classmethod
    def _known(cls, detail_type: str, info: ValidationInfo) -> str:
        if "source" in info.data and (info.data["source"], detail_type) not in KNOWN:
            raise ValueError(f"{detail_type} of {info.data.get('source')} is not an event this function notifies about")
        return detail_type

    @field_validator("detail")
    @classmethod
    def _by_contract(cls, detail: dict[str, Any], info: ValidationInfo) -> Any:
        known = KNOWN.get((info.data.get("source"), info.data.get("detail_type")))
        return known[0].parse(detail) if known else detail


def _order(event: BusEvent) -> tuple[str, dict[str, Any]]:
    return event.detail.order_id, event.detail.model_dump(mode="json", exclude={"version"})


def _daily(event: BusEvent) -> tuple[str, dict[str, Any]]:
    moment = event.time if event.time.tzinfo else event.time.replace(tzinfo=timezone.utc)
    day = moment.astimezone(timezone.utc).date().isoformat()
    return f"{event.detail.report}/{day}", {"report": event.detail.report, "day": day}


def _restock(event: BusEvent) -> tuple[str, dict[str, Any]]:
    return event.detail.request_id, event.detail.model_dump(mode="json", include={"request_id", "sku", "quantity"})


#: (source, detail-type) -> the contract, the notification kind, and a function of one event to its business key and notification.
KNOWN: dict[tuple[str, str], tuple[EventKind[Any], str, Any]] = {
    (kind.source, kind.detail_type): (kind, notification, describe)
    for kind, notification, describe in (
        (ORDER_PLACED, "order_placed", _order),
        (ORDER_CANCELLED, "order_cancelled", _order),
        (STOCK_RESERVED, "stock_reserved", _order),
        (STOCK_SHORTAGE, "stock_shortage", _order),
        (DAILY_REPORT_REQUESTED, "daily_report", _daily),
        (RESTOCK_REQUESTED, "restock_requested", _restock),
    )
}
consumer = BatchConsumer(SQS, read=readers.sqs_json(BusEvent), logger=logger, metrics=metrics)


def _on_duplicate(response: Any, data_record: DataRecord) -> Any:
    consumer.count("DuplicateEventsSkipped")
    return response


# 14 days: the longest an SQS message lives, and then a redrive from the dead-letter queue.
expiry = int(os.environ.get("IDEMPOTENCY_EXPIRES_AFTER_SECONDS", 14 * 24 * 3600))
idempotency_config = IdempotencyConfig(raise_on_no_idempotency_key=True, expires_after_seconds=expiry, response_hook=_on_duplicate)
persistence_layer = DynamoDBPersistenceLayer(table_name=os.environ["IDEMPOTENCY_TABLE_NAME"])


def notify(kind: str, payload: dict[str, Any]) -> None:
    """The side effect this function exists for: tell the people concerned (here a DEBUG line; counted per batch)."""
    logger.debug("Notification sent", extra={"kind": kind, "payload": payload})
    consumer.count("NotificationsSent")


@idempotent_function(data_keyword_argument="idempotency_key", persistence_store=persistence_layer, config=idempotency_config)
def notify_once(*, idempotency_key: str, kind: str, payload: dict[str, Any]) -> dict[str, str]:
    notify(kind, payload)
    return {"kind": kind}


def send(event: BusEvent, record: SQSRecord) -> None:
    """The effect: one notification per business event, whatever the redeliveries and replays."""
    _, kind, describe = KNOWN[(event.source, event.detail_type)]
    key, payload = describe(event)
    notify_once(idempotency_key=f"{event.source}/{event.detail_type}/{key}", kind=kind, payload=payload)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    idempotency_config.register_lambda_context(context)
    return consumer.process(event, context, effect=send)
