"""Reserve an order's stock and release it: a step of the order saga and its compensation.

Invoked by the saga (``lambda:invoke``) with ``{"action": "reserve" | "release", "order": {...}}`` (``order_id``,
``customer_id``, ``items``, ``total``, ``currency``). A SKU is ``pk = "sku#<SKU>"`` with ``available`` units
(DEFAULT_STOCK until first used); a reservation is ``pk = "reservation#<order_id>"``, RESERVED or RELEASED, with its
``lines`` (the quantities of a SKU listed twice added up). ``reserve``: one transaction takes each line's units (only
when that many are available) and writes the reservation: ``{"reserved": lines}``. ``release``: one transaction gives
them back and marks it RELEASED; with no reservation it writes a RELEASED one, so that a later reserve takes nothing:
``{"released": bool}`` (whether units went back). Both are idempotent. Errors the saga tells apart: ``StockShortage``
(naming the SKUs), ``ReservationReleased`` (the compensation ran first), ``InvalidSagaInput``; others propagate.

Environment: STOCK_TABLE_NAME (required); DEFAULT_STOCK (100).
"""

import os
import time
from collections import Counter
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from messaging_runtime.contracts.checkout import SagaOrder
from messaging_runtime.saga_steps import InvalidSagaInput, run_step  # noqa: F401 - InvalidSagaInput: an error the saga names

DEFAULT_STOCK = int(os.environ.get("DEFAULT_STOCK", "100"))
ENOUGH = "(attribute_not_exists(available) AND :default >= :q) OR available >= :q"
logger, tracer, metrics = Logger(), Tracer(), Metrics()
table = boto3.resource("dynamodb").Table(os.environ["STOCK_TABLE_NAME"])
client = table.meta.client  # a resource's client: plain Python values in its requests


class StockShortage(Exception):
    """Some SKU has fewer units available than the order asks for."""


class ReservationReleased(Exception):
    """The order's reservation was released (its compensation ran) before it was made."""


def codes(error: Exception) -> list[str]:
    return [reason.get("Code", "None") for reason in getattr(error, "response", {}).get("CancellationReasons") or []]


def transact(items: list[dict[str, Any]], attempts: int = 3) -> None:
    """One transaction; tried again when it only collided with another transaction on the same items."""
    try:
        client.transact_write_items(TransactItems=items)
    except client.exceptions.TransactionCanceledException as error:
        if attempts == 1 or "ConditionalCheckFailed" in codes(error) or "TransactionConflict" not in codes(error):
            raise
        time.sleep(0.1 / attempts)
        transact(items, attempts - 1)


def stock_change(sku: str, quantity: int, take: bool) -> dict[str, Any]:
    """Take ``quantity`` units of a SKU (only when that many are available), or give them back."""
    change = {"TableName": table.name, "Key": {"pk": f"sku#{sku}"}, "ExpressionAttributeValues": {":default": DEFAULT_STOCK, ":q": quantity}}
    if take:
        return {"Update": {**change, "UpdateExpression": "SET available = if_not_exists(available, :default) - :q", "ConditionExpression": ENOUGH}}
    return {"Update": {**change, "UpdateExpression": "SET available = if_not_exists(available, :default) + :q"}}


@tracer.capture_method
def reserve(order: SagaOrder) -> dict[str, Any]:
    totals = sum((Counter({item.sku: item.quantity}) for item in order.items), Counter())
    lines, key = [{"sku": sku, "quantity": quantity} for sku, quantity in totals.items()], f"reservation#{order.order_id}"
    claim = {"TableName": table.name, "Item": {"pk": key, "status": "RESERVED", "lines": lines}, "ConditionExpression": "attribute_not_exists(pk)"}
    try:
        transact([{"Put": claim}, *(stock_change(sku, quantity, take=True) for sku, quantity in totals.items())])
    except client.exceptions.TransactionCanceledException as error:
        found = table.get_item(Key={"pk": key}, ConsistentRead=True).get("Item") if codes(error)[:1] == ["ConditionalCheckFailed"] else None
        if found and found["status"] == "RELEASED":
            raise ReservationReleased(f"order {order.order_id}: its reservation was released before it was made") from None
        if found:  # made already: the same reservation, no more units taken
            return {"reserved": [{"sku": line["sku"], "quantity": int(line["quantity"])} for line in found["lines"]]}
        short = [sku for sku, code in zip(totals, codes(error)[1:], strict=False) if code == "ConditionalCheckFailed"]
        if not short:
            raise
        raise StockShortage(f"order {order.order_id}: not enough stock of {', '.join(short)}") from None
    return {"reserved": lines}


@tracer.capture_method
def release(order: SagaOrder) -> dict[str, Any]:
    key = f"reservation#{order.order_id}"
    found = table.get_item(Key={"pk": key}, ConsistentRead=True).get("Item")
    try:
        if found is None:  # never made: a tombstone, so that a later reserve takes nothing
            table.put_item(Item={"pk": key, "status": "RELEASED", "lines": []}, ConditionExpression="attribute_not_exists(pk)")
        if found is None or found["status"] == "RELEASED":
            return {"released": False}
        mark = {"TableName": table.name, "Key": {"pk": key}, "UpdateExpression": "SET #s = :to", "ConditionExpression": "#s = :from"}
        mark |= {"ExpressionAttributeNames": {"#s": "status"}, "ExpressionAttributeValues": {":to": "RELEASED", ":from": "RESERVED"}}
        transact([{"Update": mark}, *(stock_change(line["sku"], int(line["quantity"]), take=False) for line in found["lines"])])
    except (client.exceptions.ConditionalCheckFailedException, client.exceptions.TransactionCanceledException) as error:
        if codes(error)[:1] not in ([], ["ConditionalCheckFailed"]):  # none: the tombstone's own condition
            raise
        return release(order)  # a reserve or another release got there first: the reservation only moves forward, read it again
    return {"released": True}


def count(error: Exception) -> None:
    metrics.add_metric(name=type(error).__name__, unit=MetricUnit.Count, value=1)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    result = run_step(
        event, {"reserve": reserve, "release": release}, refused=(StockShortage, ReservationReleased), logger=logger, what="Stock step", on_refused=count
    )
    metrics.add_metric(name="StockReservations" if "reserved" in result else "StockReleases", unit=MetricUnit.Count, value=1)
    return result
