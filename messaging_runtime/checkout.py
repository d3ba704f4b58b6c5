"""The orders table of Capstone 07-A: how an order is stored, and every change written with its outbox event.

One item per order, keyed ``order_id``. ``seq`` is the order's version and
the number of its latest event: each change is one ``TransactWriteItems`` of
the order (conditioned on the ``seq`` it read) and the outbox slot (conditioned
on ``seq - 1``, ``messaging_runtime.outbox``). A change that lost a race fails
its condition and is read again, never applied twice.

Attributes: ``order_id``, ``customer_id``, ``status``, ``seq``, ``items``
(list of ``{sku, quantity}``), ``total``, ``currency``, ``accepted_at``,
``updated_at``, ``deadline`` (epoch seconds by which the order must be in a
terminal status, for the reconciler), ``idempotency_key``, ``request_hash``
(of the request that placed it), ``reason`` (why it left the happy path) and
``cancel_requested`` (the customer asked to cancel; the saga compensates at
its next step) and ``open`` (``"1"`` until the order reaches a terminal
status: the key of the sparse index ``OPEN_ORDERS_INDEX``, by ``deadline``,
which the reconciler queries for orders past their deadline).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from .contracts.checkout import ORDER_ACCEPTED, ORDER_STATUS_CHANGED, TERMINAL, TRANSITIONS, OrderAcceptedV1, PlaceOrderRequest
from .outbox import Outbox

_SERIALIZER, _DESERIALIZER = TypeSerializer(), TypeDeserializer()
#: The sparse index of orders not yet in a terminal status: partition key ``open``, sort key ``deadline``.
OPEN_ORDERS_INDEX = "open-orders"


class TransitionRefused(Exception):
    """The order may not move to the status asked for: ``reason`` says why (unknown order, terminal, not allowed, cancel requested)."""

    def __init__(self, order_id: str, reason: str, *, cancel_requested: bool = False) -> None:
        super().__init__(f"order {order_id}: {reason}")
        self.order_id, self.reason, self.cancel_requested = order_id, reason, cancel_requested


def customer_id_of(principal: str) -> str:
    """The customer id of an authenticated caller (an IAM principal's ARN, a Cognito ``sub``): stable, and safe in keys and message groups."""
    if not principal:
        raise ValueError("the caller's identity is empty")
    return "c-" + hashlib.sha256(principal.encode()).hexdigest()[:32]


def order_id_for(customer_id: str, idempotency_key: str) -> str:
    """The id of the order a customer places with ``idempotency_key``: the same key always names the same order."""
    return "o-" + hashlib.sha256(f"{customer_id}\n{idempotency_key}".encode()).hexdigest()[:32]


def request_hash(request: PlaceOrderRequest) -> str:
    """A digest of what was ordered, to tell a retried request from a key reused for another order."""
    return hashlib.sha256(request.model_dump_json().encode()).hexdigest()


def now_text(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).isoformat()


class OrderStore:
    """Reads and writes orders, each change with its event in the outbox.

    :param client: a boto3 DynamoDB client. Required.
    :param table_name: the orders table. Required.
    :param outbox: the outbox the events go to. Required.
    """

    def __init__(self, client: Any, table_name: str, outbox: Outbox) -> None:
        self.client, self.table_name, self.outbox = client, table_name, outbox

    def get(self, order_id: str) -> dict[str, Any] | None:
        """The order as plain values (numbers as Decimal), or None; a strongly consistent read."""
        found = self.client.get_item(TableName=self.table_name, Key={"order_id": {"S": order_id}}, ConsistentRead=True).get("Item")
        return {name: _DESERIALIZER.deserialize(value) for name, value in found.items()} if found else None

    def place(self, order: OrderAcceptedV1, *, idempotency_key: str, request_digest: str, deadline_seconds: int, now: float) -> tuple[bool, dict[str, Any]]:
        """Write a new order and its ``OrderAccepted``; ``(False, existing)`` when the order id is taken (a repeat of the key)."""
        item = {
            **json.loads(order.model_dump_json(exclude={"version", "seq", "accepted_at"}), parse_float=Decimal),
            "status": "ACCEPTED",
            "seq": 1,
            "accepted_at": order.accepted_at.isoformat(),
            "updated_at": order.accepted_at.isoformat(),
            "deadline": int(now) + deadline_seconds,
            "idempotency_key": idempotency_key,
            "request_hash": request_digest,
            "open": "1",
        }
        put = {
            "Put": {
                "TableName": self.table_name,
                "Item": {name: _SERIALIZER.serialize(value) for name, value in item.items()},
                "ConditionExpression": "attribute_not_exists(order_id)",
            }
        }
        try:
            self.client.transact_write_items(TransactItems=[put, self.outbox.put(order.order_id, 1, ORDER_ACCEPTED, order, now=now)])
        except self.client.exceptions.TransactionCanceledException as error:
            # Taken already, or being taken by the same request arriving twice at once (a conflict): the first one answers.
            if _first_reason(error) in ("ConditionalCheckFailed", "TransactionConflict"):
                existing = self.get(order.order_id)
                if existing is not None:
                    return False, existing
            raise
        return True, item

    def past_deadline(self, now: float, *, limit: int = 100) -> list[dict[str, Any]]:
        """Orders not in a terminal status whose deadline is before ``now``, oldest deadline first (at most ``limit``)."""
        found = self.client.query(
            TableName=self.table_name,
            IndexName=OPEN_ORDERS_INDEX,
            KeyConditionExpression="#open = :open AND deadline < :now",
            ExpressionAttributeNames={"#open": "open"},
            ExpressionAttributeValues={":open": {"S": "1"}, ":now": {"N": str(int(now))}},
            Limit=limit,
        )
        return [{name: _DESERIALIZER.deserialize(value) for name, value in item.items()} for item in found.get("Items", [])]

    def request_cancel(self, order_id: str, customer_id: str) -> dict[str, Any]:
        """Mark the customer's order for cancelling; TransitionRefused when it is not theirs, or already terminal."""
        try:
            found = self.client.update_item(
                TableName=self.table_name,
                Key={"order_id": {"S": order_id}},
                UpdateExpression="SET cancel_requested = :yes",
                ConditionExpression="customer_id = :customer AND NOT (#status IN (:t0, :t1, :t2, :t3))",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={
                    ":yes": {"BOOL": True},
                    ":customer": {"S": customer_id},
                    **{f":t{i}": {"S": status} for i, status in enumerate(sorted(TERMINAL))},
                },
                ReturnValues="ALL_NEW",
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            order = self.get(order_id)
            if order is None or order["customer_id"] != customer_id:
                raise TransitionRefused(order_id, "no such order") from None
            raise TransitionRefused(order_id, f"it is already {order['status']}") from None
        return {name: _DESERIALIZER.deserialize(value) for name, value in found["Attributes"].items()}

    def change_status(self, order_id: str, to: str, *, reason: str | None = None, honour_cancel: bool = True, now: float) -> dict[str, Any]:
        """Move the order to ``to`` and write ``OrderStatusChanged``; the order as it is after. Idempotent: an order already in ``to`` is returned as it is.

        Raises TransitionRefused when the order is unknown, the move is not allowed from its status, or (``honour_cancel``)
        the customer asked to cancel and ``to`` is a step forward; ``cancel_requested`` is then True.
        """
        for _ in range(5):  # a lost race reads again; more than a few means something else writes this order
            order = self.get(order_id)
            if order is None:
                raise TransitionRefused(order_id, "no such order")
            if order["status"] == to:
                return order
            if to not in TRANSITIONS[order["status"]]:
                raise TransitionRefused(order_id, f"it may not go from {order['status']} to {to}")
            if honour_cancel and order.get("cancel_requested") and to not in ("COMPENSATING", "COMPENSATED", "CANCELLED", "FAILED"):
                raise TransitionRefused(order_id, "the customer asked to cancel it", cancel_requested=True)
            seq = int(order["seq"]) + 1
            event = ORDER_STATUS_CHANGED.current(
                version=1,
                order_id=order_id,
                seq=seq,
                customer_id=order["customer_id"],
                status=to,
                previous_status=order["status"],
                reason=reason,
                changed_at=now_text(now),
            )
            names = {"#status": "status", "#seq": "seq", "#updated": "updated_at"}
            values = {":to": {"S": to}, ":seq": {"N": str(seq)}, ":read": {"N": str(seq - 1)}, ":now": {"S": event.changed_at.isoformat()}}
            update = "SET #status = :to, #seq = :seq, #updated = :now"
            if reason is not None:
                update += ", reason = :reason"
                values[":reason"] = {"S": reason}
            if to in TERMINAL:  # out of the open-orders index
                update += " REMOVE #open"
                names["#open"] = "open"
            condition = "#seq = :read"
            if honour_cancel and to not in ("COMPENSATING", "COMPENSATED", "CANCELLED", "FAILED"):
                # A cancel accepted after the read changes no seq: the write must not step forward over it.
                condition += " AND (attribute_not_exists(cancel_requested) OR cancel_requested = :no)"
                values[":no"] = {"BOOL": False}
            write = {
                "Update": {
                    "TableName": self.table_name,
                    "Key": {"order_id": {"S": order_id}},
                    "UpdateExpression": update,
                    "ConditionExpression": condition,
                    "ExpressionAttributeNames": names,
                    "ExpressionAttributeValues": values,
                }
            }
            try:
                self.client.transact_write_items(TransactItems=[write, self.outbox.put(order_id, seq, ORDER_STATUS_CHANGED, event, now=now)])
            except self.client.exceptions.TransactionCanceledException as error:
                if _first_reason(error) in ("ConditionalCheckFailed", "TransactionConflict"):
                    continue
                raise
            return {**order, "status": to, "seq": seq, "updated_at": event.changed_at.isoformat(), **({"reason": reason} if reason else {})}
        raise RuntimeError(f"order {order_id}: its status kept changing under five attempts to write it")


def _first_reason(error: Exception) -> str | None:
    """Why a transaction's first item (the order) was refused: ``ConditionalCheckFailed``, ``TransactionConflict``, ``None``..."""
    reasons: list[Mapping[str, Any]] = getattr(error, "response", {}).get("CancellationReasons") or []
    return reasons[0].get("Code") if reasons else None
