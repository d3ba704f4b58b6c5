"""The shipments table: each shipment's latest status, written in order, and its delays not yet on the bus.

One conditional UpdateItem per update: written only if the shipment is new or its stored
``update_key`` is lower. ``update_key`` is ``occurred_at`` (fixed-width UTC text, so that DynamoDB's
text order is time order), the status's rank in the lifecycle (picked, packed, shipped, delayed,
delivered) and a digest of the update. The warehouse's clock has whole seconds and its messages
carry no sequence number, so two status changes can share a time; the key cannot tie between
distinct updates and makes the outcome the same whatever the order of arrival. The same update
again (a redelivery, a second publish) changes nothing, nor does one overtaken by a later update:
``skipped``. A distinct update of the same time that ranks lower is ``superseded``, deliberately
and visibly: logged as a warning and counted, whether it arrives after the one that outranks it
or is overwritten by it. ``carrier`` is kept from an earlier update when a later one does not name
it. Items written before ``update_key`` existed are compared by ``occurred_at`` until their next write.

A written ``delayed`` update also adds its time to the item's ``unbridged_delays``; the handler
takes it out once PutEvents took the event (``mark_bridged``). A later update of the shipment sets
the status and leaves the set alone, so a delay whose PutEvents failed is still found, and
bridged, when its message is delivered again.
"""

import hashlib
import json
from collections import Counter
from datetime import datetime
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from botocore.config import Config

from messaging_runtime.contracts.shipments import ShipmentUpdateV1

RANK = {"picked": 1, "packed": 2, "shipped": 3, "delayed": 4, "delivered": 5}
COUNTED = {"recorded": "ShipmentsRecorded", "skipped": "DuplicateShipmentsSkipped", "superseded": "ShipmentUpdatesSuperseded"}
NEWER = "attribute_not_exists(shipment_id) OR update_key < :update_key OR (attribute_not_exists(update_key) AND occurred_at < :occurred_at)"

logger = Logger(child=True)
dynamodb = boto3.client("dynamodb", config=Config(retries={"mode": "standard", "max_attempts": 3}))


def utc_text(moment: datetime) -> str:
    """Fixed-width UTC text, ``2025-03-14T09:05:00.000000Z``, of a contract's time (``UtcTimestamp``: UTC already)."""
    return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def detail(update: ShipmentUpdateV1) -> dict[str, Any]:
    """The update as the bus carries it, and as ``update_key`` digests it."""
    return {**update.model_dump(exclude_none=True), "occurred_at": utc_text(update.occurred_at)}


def _write(table: str, update: ShipmentUpdateV1, at: str, key: str, message_id: str) -> dict[str, Any]:
    """The UpdateItem: set the update, and add a delay to ``unbridged_delays``, if it is newer than what is stored."""
    expression = "SET order_id = :order_id, #status = :status, occurred_at = :occurred_at, message_id = :message_id, update_key = :update_key"
    values = {":order_id": update.order_id, ":status": update.status, ":occurred_at": at, ":message_id": message_id, ":update_key": key}
    if update.carrier is not None:
        expression, values[":carrier"] = expression + ", carrier = :carrier", update.carrier
    typed: dict[str, Any] = {name: {"S": value} for name, value in values.items()}
    if update.status == "delayed":
        expression, typed[":delay"] = expression + " ADD unbridged_delays :delay", {"SS": [at]}
    return {"TableName": table, "Key": {"shipment_id": {"S": update.shipment_id}}, "UpdateExpression": expression, "ConditionExpression": NEWER,
            "ExpressionAttributeNames": {"#status": "status"}, "ExpressionAttributeValues": typed,
            "ReturnValues": "ALL_OLD", "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}  # fmt: skip


def record(table: str, update: ShipmentUpdateV1, message_id: str, bridging: set[tuple[str, str]], counts: Counter) -> tuple[str, bool]:
    """Write the update if it is its shipment's latest: what happened, and whether its delay is to go on the bus.

    ``bridging`` holds the delays (shipment id, time) the batch bridges already: a copy of one of them is not bridged again.
    """
    document = detail(update)
    at = document["occurred_at"]
    digest = hashlib.sha256(json.dumps(document, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]
    key = f"{at}#{RANK[update.status]}#{digest}"
    try:
        old, written = dynamodb.update_item(**_write(table, update, at, key, message_id)).get("Attributes", {}), True
    except dynamodb.exceptions.ConditionalCheckFailedException as error:
        old, written = error.response.get("Item", {}), False
    stored = {name: old.get(name, {}).get("S") for name in ("occurred_at", "status", "update_key")}
    same = stored["update_key"] == key if stored["update_key"] else stored["status"] == update.status
    lost = stored["occurred_at"] == at and (written or not same)  # a distinct update of the same time lost: never silently
    if lost:
        kept, beaten = (update.status, stored["status"]) if written else (stored["status"], update.status)
        logger.warning(
            "Shipment update superseded by another of the same time",
            extra={"shipment_id": update.shipment_id, "message_id": message_id, "occurred_at": at, "kept_status": kept, "superseded_status": beaten},
        )
    outcome = "recorded" if written else "superseded" if lost else "skipped"
    counts.update([COUNTED[outcome]] + ["ShipmentUpdatesSuperseded"] * (lost and written))
    unbridged = at in old.get("unbridged_delays", {}).get("SS", []) and (update.shipment_id, at) not in bridging  # an earlier delivery's PutEvents failed
    if update.status == "delayed" and (written or unbridged):
        bridging.add((update.shipment_id, at))
        return ("recorded and bridged" if written else "bridged on redelivery"), True
    return outcome, False


def mark_bridged(table: str, update: ShipmentUpdateV1) -> None:
    """Take a delay that is on the bus out of its shipment's ``unbridged_delays``."""
    key, delay = {"shipment_id": {"S": update.shipment_id}}, {":delay": {"SS": [utc_text(update.occurred_at)]}}
    dynamodb.update_item(TableName=table, Key=key, UpdateExpression="DELETE unbridged_delays :delay", ExpressionAttributeValues=delay)
