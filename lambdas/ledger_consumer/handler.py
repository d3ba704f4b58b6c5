"""Post order events to the customer ledger, in order.

Reads the FIFO ``ledger.fifo`` queue, grouped by customer; each record is
read as the order message contract
(``messaging_runtime.contracts.orders.ORDER_MESSAGES``, the consumer's view).
Order matters within a customer (a cancellation must follow the placement it
reverses), so when a record fails, that record and every later record *of
the same customer* in the batch are reported as failed, and SQS hands them
back in the same order on the next receive. Other customers' records are
still posted: one poison message holds back only its own customer
(``BatchConsumer(..., fifo=True)``). If every record fails, they are all
reported as failed items rather than failing the invocation.

A record that cannot be read as an order event, or whose message group is
not its customer, is logged with the reason and reported as a failed item.

The ledger is the log group: one line per posted event is the effect itself,
not a progress line; everything else is counted and logged once per batch.
"""

from decimal import Decimal
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from messaging_runtime import readers
from messaging_runtime.batch import SQS, BatchConsumer
from messaging_runtime.contracts.orders import ORDER_MESSAGES, OrderMessage
from messaging_runtime.rejection import Rejected

logger = Logger()
tracer = Tracer()
metrics = Metrics()
read_order = readers.sqs_json(ORDER_MESSAGES)


def in_its_group(event: OrderMessage, record: SQSRecord) -> OrderMessage:
    """``event`` if the record's message group is its customer; ``Rejected`` otherwise."""
    group = record.attributes.message_group_id
    if group is not None and group != event.customer_id:
        raise Rejected(f"message group {group!r} is not the event's customer {event.customer_id!r}")
    return event


consumer = BatchConsumer(SQS, read=lambda record: in_its_group(read_order(record), record), logger=logger, metrics=metrics, fifo=True)


def apply(event: OrderMessage) -> dict[str, str]:
    """The effect: post a ledger line, a debit for a placed order and a credit for a cancelled one."""
    amount = event.total if event.event_type == "OrderPlaced" else Decimal(0) - event.total
    line = {
        "event_id": str(event.event_id),
        "customer_id": event.customer_id,
        "order_id": event.order_id,
        "amount": str(amount),
        "currency": event.currency,
    }
    logger.info("Ledger line posted", extra=line)
    consumer.count("LedgerLinesPosted")
    return line


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return consumer.process(event, context, effect=lambda order, _record: apply(order))
