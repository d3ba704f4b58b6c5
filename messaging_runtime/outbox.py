"""The transactional outbox: an aggregate's state and its event written in one DynamoDB transaction.

A handler that changes an order (or any aggregate) adds one more item to the
``TransactWriteItems`` call that writes the change: the aggregate's outbox
slot, which holds the event. Either both are written or neither is, so no
event is published for a change that did not happen and no change goes
unpublished. The outbox table's stream feeds a pipe (``messaging_constructs.Outbox``)
that puts each event on the bus.

One slot per aggregate, overwritten by each event: DynamoDB streams keep the
modifications of one item in order (and each record carries the image it
wrote), while two items written in one transaction, or one after the other,
may reach the stream in any order; and a pipe keeps the order of a stream's
records (eb-pipes-dynamodb in the EventBridge guide). So the events of one
aggregate reach the bus in the order they were written. ``seq`` numbers them
1, 2, 3...: the slot is written only if it holds ``seq - 1`` (or nothing, for
1), so a lost update or a gap fails the transaction instead of publishing.

The pipe delivers at least once (a retried batch is put again), so consumers
drop an event whose ``seq`` is not above the last they applied.

Item attributes: ``aggregate_id`` (the key), ``seq``, ``event_id`` (a UUID),
``source``, ``detail_type``, ``detail`` (the event as JSON text),
``written_at`` and ``expires_at`` (TTL: the slot of an aggregate with no new
event for ``retention_days`` goes; its deletion is filtered out of the pipe).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from boto3.dynamodb.types import TypeDeserializer

from .contracts import Contract, EventKind

#: The slot's attributes, by the names the pipe's filter and the relay read.
KEY, SEQ, DETAIL_TYPE, DETAIL, SOURCE, EVENT_ID = "aggregate_id", "seq", "detail_type", "detail", "source", "event_id"
_DESERIALIZER = TypeDeserializer()


class Outbox:
    """Builds the outbox item of an aggregate's next event, for the caller's ``TransactWriteItems``.

    :param table_name: the outbox table (``Outbox.table`` of the construct; env ``OUTBOX_TABLE_NAME``). Required.
    :param retention_days: how long an aggregate's slot lives after its last event (TTL). Default: 30.
    """

    def __init__(self, table_name: str, *, retention_days: int = 30) -> None:
        if retention_days < 1:
            raise ValueError(f"retention_days must be at least 1, got {retention_days}")
        self.table_name = table_name
        self.retention_seconds = retention_days * 24 * 3600

    def put(self, aggregate_id: str, seq: int, kind: EventKind[Any], event: Contract, *, now: float | None = None) -> dict[str, Any]:
        """The ``Put`` of a ``TransactWriteItems`` call (client form) writing ``event`` as the aggregate's event number ``seq``.

        The transaction fails (``ConditionalCheckFailed`` on this item) unless the slot holds ``seq - 1``, or nothing for ``seq`` 1.
        """
        if type(seq) is not int or seq < 1:
            raise ValueError(f"seq must be a whole number from 1, got {seq!r}")
        if not isinstance(event, kind.models):
            raise TypeError(f"{type(event).__name__} is not a version of {kind.name}")
        now = time.time() if now is None else now
        item = {
            KEY: {"S": aggregate_id},
            SEQ: {"N": str(seq)},
            EVENT_ID: {"S": str(uuid.uuid4())},
            SOURCE: {"S": kind.source},
            DETAIL_TYPE: {"S": kind.detail_type},
            DETAIL: {"S": event.model_dump_json()},
            "written_at": {"S": datetime.fromtimestamp(now, UTC).isoformat()},
            "expires_at": {"N": str(int(now) + self.retention_seconds)},
        }
        # DynamoDB refuses attribute names or values an expression does not use, so each condition names only its own.
        if seq == 1:
            condition = {"ConditionExpression": "attribute_not_exists(#key)", "ExpressionAttributeNames": {"#key": KEY}}
        else:
            condition = {
                "ConditionExpression": "#seq = :previous",
                "ExpressionAttributeNames": {"#seq": SEQ},
                "ExpressionAttributeValues": {":previous": {"N": str(seq - 1)}},
            }
        return {"Put": {"TableName": self.table_name, "Item": item, **condition}}


def bus_entry(record: Mapping[str, Any]) -> dict[str, Any]:
    """What the pipe puts on the bus for one stream record of the outbox: ``source``, ``detail_type``, ``detail``, ``seq``, ``event_id``.

    Raises ValueError naming what is missing when the record is not an outbox write (the pipe's filter passes only those).
    """
    if not isinstance(record, Mapping):
        raise ValueError(f"expected a DynamoDB stream record (an object), got {type(record).__name__}")
    image = (record.get("dynamodb") or {}).get("NewImage")
    if not isinstance(image, Mapping):
        raise ValueError(f"stream record {record.get('eventID')!r} has no dynamodb.NewImage: the outbox table's stream must include new images")
    missing = [name for name in (KEY, SEQ, SOURCE, DETAIL_TYPE, DETAIL, EVENT_ID) if name not in image]
    if missing:
        raise ValueError(f"stream record {record.get('eventID')!r} is not an outbox event: it lacks {', '.join(missing)}")
    values = {name: _DESERIALIZER.deserialize(image[name]) for name in (KEY, SEQ, SOURCE, DETAIL_TYPE, DETAIL, EVENT_ID)}
    detail = json.loads(values[DETAIL])
    if not isinstance(detail, dict):
        raise ValueError(f"outbox event {values[EVENT_ID]} of {values[KEY]}: the detail is not a JSON object")
    return {
        "source": values[SOURCE],
        "detail_type": values[DETAIL_TYPE],
        "detail": detail,
        "aggregate_id": values[KEY],
        "seq": int(values[SEQ]),
        "event_id": values[EVENT_ID],
    }
