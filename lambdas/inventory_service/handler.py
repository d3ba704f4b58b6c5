"""Reserve and release stock for orders, and say so on the event bus.

Reads the ``inventory`` queue, which a rule fills with whole EventBridge events:
``OrderPlaced`` and ``OrderCancelled`` of ``blueprints.orders``, in any version
their contract reads (a version 1 order, which listed no items, is upcast with none).
A placed order leads to ``StockReserved`` with its items when no SKU asks for more
than ``MAX_UNITS_PER_SKU`` units (the quantities of a SKU listed twice added up),
otherwise to ``StockShortage`` with the SKUs over the limit; a cancelled one to
``StockReleased``. The batch's stock events go to the bus together, 10 per PutEvents
call, only failed entries retried; a record whose event is still not on the bus
fails, and SQS delivers it again. An unreadable record fails with its reason.

Idempotency: a replay or a producer's retry brings an order under a new EventBridge
``id``, so the key is the business event (source, detail-type, order id; not the
version). Each order is claimed in Powertools' idempotency store before the
PutEvents calls and settled after them (``messaging_runtime.idempotency``): a
conditional write per record, which is the point.

Environment: BUS_NAME, IDEMPOTENCY_TABLE_NAME (required); IDEMPOTENCY_EXPIRES_AFTER_SECONDS
(default 14 days, at least the archive's retention); MAX_UNITS_PER_SKU (10);
PUT_MAX_ATTEMPTS (3); PUT_RETRY_BASE_DELAY_SECONDS (0.2).
"""

import os
from collections import Counter
from typing import Any, Literal

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer, IdempotencyConfig
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config
from pydantic import Field, ValidationInfo, field_validator

from messaging_runtime import readers
from messaging_runtime.batch import SQS, BatchConsumer
from messaging_runtime.contracts.inventory import STOCK_RELEASED, STOCK_RESERVED, STOCK_SHORTAGE
from messaging_runtime.contracts.orders import ORDER_CANCELLED, ORDER_PLACED
from messaging_runtime.idempotency import BatchClaims
from messaging_runtime.publishers import EventBridgePublisher, Retry

ORDERS = {kind.name: kind for kind in (ORDER_PLACED, ORDER_CANCELLED)}
MAX_UNITS_PER_SKU = int(os.environ.get("MAX_UNITS_PER_SKU", "10"))

logger = Logger()
tracer = Tracer()
metrics = Metrics()
# botocore retries a throttled call; the publisher then retries the entries EventBridge refused.
eventbridge = boto3.client("events", config=Config(retries={"mode": "standard", "max_attempts": 3}))
attempts, first_pause = max(1, int(os.environ.get("PUT_MAX_ATTEMPTS", "3"))), float(os.environ.get("PUT_RETRY_BASE_DELAY_SECONDS", "0.2"))
bus = EventBridgePublisher(eventbridge, event_bus_name=os.environ["BUS_NAME"], retry=Retry(max_attempts=attempts, base_delay_seconds=first_pause))
# 14 days: the longest an SQS message lives, and then a redrive from the dead-letter queue.
expiry = int(os.environ.get("IDEMPOTENCY_EXPIRES_AFTER_SECONDS", 14 * 24 * 3600))
store = DynamoDBPersistenceLayer(table_name=os.environ["IDEMPOTENCY_TABLE_NAME"])
store.configure(IdempotencyConfig(raise_on_no_idempotency_key=True, expires_after_seconds=expiry), function_name=f"{__name__}.react_once")  # earlier keys
claims = BatchClaims(store)


class OrderEvent(EventBridgeModel):
    """An order event as the rule delivers it: Powertools' envelope; ``detail`` read by its contract (consumer view, current version)."""

    source: Literal["blueprints.orders"]
    detail_type: Literal["OrderPlaced", "OrderCancelled"] = Field(alias="detail-type")
    detail: dict[str, Any]

    @field_validator("detail")
    @classmethod
    def _by_contract(cls, detail: dict[str, Any], info: ValidationInfo) -> Any:
        kind = ORDERS.get(info.data.get("detail_type"))
        return kind.parse(detail) if kind else detail


consumer = BatchConsumer(SQS, read=readers.sqs_json(OrderEvent), logger=logger, metrics=metrics)


def idempotency_key(event: OrderEvent) -> str:
    """The business event: the same for a redelivery, a replay and a producer retry."""
    return f"{event.source}/{event.detail_type}/{event.detail.order_id}"


def decide(event: OrderEvent) -> dict[str, str]:
    """The PutEvents entry of the stock event an order event leads to."""
    order = event.detail
    totals: Counter[str] = Counter()
    for item in order.items:
        totals[item.sku] += item.quantity
    missing = [sku for sku, quantity in totals.items() if quantity > MAX_UNITS_PER_SKU]
    kind = STOCK_RELEASED if event.detail_type == ORDER_CANCELLED.name else STOCK_SHORTAGE if missing else STOCK_RESERVED
    fields = {"missing": missing} if kind is STOCK_SHORTAGE else {"items": order.items}
    stock = kind.current(version=1, order_id=order.order_id, **fields)
    return {"Source": kind.source, "DetailType": kind.detail_type, "Detail": stock.model_dump_json()}


def settle(key: str, entry: dict[str, str], event_id: str | None, reason: str | None) -> None:
    """Mark the order done, with its event's id; or release it for the redelivery and raise, when its event is not on the bus."""
    if reason is None:
        claims.complete(key, {"detail_type": entry["DetailType"], "event_id": event_id})
        return consumer.count(entry["DetailType"])
    consumer.count("PublishFailures")
    error = RuntimeError(f"{entry['DetailType']} not put on the bus: {reason}")
    claims.release(key, error)
    raise error


def react(batch: list[tuple[SQSRecord, OrderEvent]], context: LambdaContext) -> dict[int, Exception]:
    """Claim each order, put the batch's stock events on the bus at once, then settle each claim."""
    failed: dict[int, Exception] = {}
    claimed: dict[str, tuple[dict[str, str], list[SQSRecord]]] = {}  # an order's entry, and its records in this batch
    for record, event in batch:
        key = idempotency_key(event)
        try:
            if key not in claimed:
                entry = decide(event)  # first: a claim is left only for the PutEvents calls to settle
                if not claims.claim(key, context):
                    consumer.count("DuplicateEventsSkipped")
                    continue
                claimed[key] = (entry, [])
            claimed[key][1].append(record)
        except Exception as error:  # the store failed for this record: SQS delivers it again
            failed[id(record.raw_event)] = error
    # No retry round may start later than 5 s before the timeout: settling the claims needs that time.
    result = bus.publish([entry for entry, _ in claimed.values()], time_budget_seconds=context.get_remaining_time_in_millis() / 1000 - 5)
    event_ids, reasons = {sent.index: sent.result["EventId"] for sent in result.sent}, result.reasons
    for index, (key, (entry, records)) in enumerate(claimed.items()):
        try:
            settle(key, entry, event_ids.get(index), reasons.get(index))
        except Exception as error:
            failed.update({id(record.raw_event): error for record in records})
    for record in (record for record, _ in batch if id(record.raw_event) in failed):
        logger.error("Record failed, SQS will deliver it again", extra={"message_id": record.message_id, "reason": str(failed[id(record.raw_event)])})
    return failed


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return consumer.process(event, context, batch_effect=lambda batch: react(batch, context))
