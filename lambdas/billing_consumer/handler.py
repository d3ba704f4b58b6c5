"""Charge placed orders, once per order.

Reads the ``billing`` queue, whose subscription only lets ``OrderPlaced``
events through; each record is read as the placed-order message contract
(``messaging_runtime.contracts.orders.ORDER_PLACED_MESSAGE``, the consumer's
view). SNS and SQS deliver at least once, and a producer retry can publish
the same order under a new event id, so the charge is made idempotent on the
order id with Powertools idempotency: the first delivery charges and stores
the invoice in the idempotency table, later ones get the stored invoice back
(counted as ``DuplicateOrdersSkipped``). That costs a conditional write per
order, and it is the point: a batch write cannot say "only if not charged
yet", so billing does not batch its writes.

A record that cannot be read as a placed order, or whose charge fails, is
logged with the reason and reported as a failed item; after the queue's
maximum receives it moves to the dead-letter queue. A failed charge leaves
no idempotency record behind, so the redelivery charges it
(``messaging_runtime.batch`` does the reading, counting and reporting).

Environment:
    IDEMPOTENCY_TABLE_NAME              idempotency table (required)
    IDEMPOTENCY_EXPIRES_AFTER_SECONDS   how long an order stays charged, default 14 days
"""

import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer, IdempotencyConfig, idempotent_function
from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from messaging_runtime import readers
from messaging_runtime.batch import SQS, BatchConsumer
from messaging_runtime.contracts.orders import ORDER_PLACED_MESSAGE, OrderPlacedMessageV1

# Long enough to cover a message kept for the longest SQS retention (14 days)
# and then redriven from the dead-letter queue.
DEFAULT_EXPIRES_AFTER_SECONDS = 14 * 24 * 3600

logger = Logger()
tracer = Tracer()
metrics = Metrics()
consumer = BatchConsumer(SQS, read=readers.sqs_json(ORDER_PLACED_MESSAGE), logger=logger, metrics=metrics)


def _on_duplicate(response: Any, data_record: DataRecord) -> Any:
    consumer.count("DuplicateOrdersSkipped")
    return response


persistence_layer = DynamoDBPersistenceLayer(table_name=os.environ["IDEMPOTENCY_TABLE_NAME"])
idempotency_config = IdempotencyConfig(
    event_key_jmespath="order_id",
    raise_on_no_idempotency_key=True,
    expires_after_seconds=int(os.environ.get("IDEMPOTENCY_EXPIRES_AFTER_SECONDS", DEFAULT_EXPIRES_AFTER_SECONDS)),
    response_hook=_on_duplicate,
)


def charge(order: OrderPlacedMessageV1) -> dict[str, str]:
    """The side effect billing exists for: charge the customer, return the invoice (stored as the idempotent response)."""
    consumer.count("OrdersCharged")
    return {
        "invoice_id": f"inv-{order.order_id}",
        "order_id": order.order_id,
        "customer_id": order.customer_id,
        "amount": str(order.total),
        "currency": order.currency,
    }


@idempotent_function(data_keyword_argument="order", persistence_store=persistence_layer, config=idempotency_config)
def charge_once(order: OrderPlacedMessageV1) -> dict[str, str]:
    return charge(order)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    idempotency_config.register_lambda_context(context)
    return consumer.process(event, context, effect=lambda order, _record: charge_once(order=order))
