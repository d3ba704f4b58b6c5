"""An event store on DynamoDB, from the writer's and the reader's side: append with a command's idempotency, project, rebuild.

The store is the table of ``messaging_constructs.EventStore``: partition key
``aggregate_id``, sort key ``version``. Event items have ``kind = "event"``.

Writing (``EventStoreWriter.execute``): a command loads its aggregate's events
(strongly consistent), decides, and appends the new events in one
``TransactWriteItems``, each Put conditional on ``attribute_not_exists(version)``,
together with any other writes the caller adds (an outbox slot) and a command
marker: ``{"aggregate_id": "command#<aggregate>#<command_id>", "version": 0,
"kind": "command", "result": ...}``, conditional on not existing. So:

- of two commands that loaded the same version, one wins; the other reloads
  and decides again (``ConditionalCheckFailed`` or ``TransactionConflict``),
  after a pause with exponential backoff and full jitter, up to
  ``max_conflict_retries`` times;
- a command that was applied once answers the same again, without writing:
  the marker is read before each attempt, and a transaction cancelled on the
  marker alone means a concurrent copy won;
- a refused command records nothing: sent again, it is decided again.

Reading: ``plain`` (an item in DynamoDB JSON) and ``whole_numbers`` (values
TypeDeserializer gave) turn an item into the values its JSON had (numbers as
ints when whole); ``apply_newest`` makes a read model item show an
aggregate's state after an event unless it shows a newer one already, which
makes a projection indifferent to duplicates and order; ``rebuild`` applies
every event of the store (a scan) through the same function.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

AGGREGATE_ID, VERSION = "aggregate_id", "version"
COMMAND_PREFIX = "command#"
MAX_BACKOFF_SECONDS = 1.0
#: Cancellation reasons that mean another writer got to the version (or the outbox slot) first.
CONFLICT_REASONS = frozenset({"ConditionalCheckFailed", "TransactionConflict"})

_serializer, _deserializer = TypeSerializer(), TypeDeserializer()


def whole_numbers(value: Any) -> Any:
    """Values as TypeDeserializer gives them, with every whole Decimal an int: the numbers the item's JSON had."""
    if isinstance(value, Decimal):
        return int(value) if value.is_finite() and value == value.to_integral_value() else value
    if isinstance(value, list):
        return [whole_numbers(v) for v in value]
    if isinstance(value, dict):
        return {k: whole_numbers(v) for k, v in value.items()}
    return value


def plain(item: Mapping[str, Any]) -> dict[str, Any]:
    """An item in DynamoDB JSON as its JSON values: whole numbers as ints."""
    return whole_numbers({name: _deserializer.deserialize(value) for name, value in item.items()})


def stored(item: Mapping[str, Any]) -> dict[str, Any]:
    """Plain values as DynamoDB JSON (floats are refused by the serializer: amounts are ints or Decimals)."""
    return {name: _serializer.serialize(value) for name, value in item.items()}


@dataclass(frozen=True)
class Refused:
    """A command the rules refuse: nothing is written, the caller gets the code and the message."""

    code: str
    message: str


@dataclass(frozen=True)
class Decision:
    """What a command leads to: the event items to append (plain values), other writes of the same transaction, the answer."""

    events: Sequence[Mapping[str, Any]]
    result: Mapping[str, Any]
    extra: Sequence[Mapping[str, Any]] = ()


@dataclass(frozen=True)
class Outcome:
    """How a command ended: its answer (or refusal), whether it had been applied before, and the conflicts it met."""

    result: Mapping[str, Any] | None
    refused: Refused | None = None
    duplicate: bool = False
    conflicts: int = 0
    events: int = 0


class ConcurrencyConflict(Exception):
    """Another command wrote the version (or the outbox slot) this one meant to write."""


class DuplicateCommand(Exception):
    """A concurrent copy of the same command recorded its marker first."""


class EventStoreWriter:
    """Runs commands against the event store table ``table_name``.

    :param dynamodb: a boto3 DynamoDB client. Required.
    :param table_name: the event store. Required.
    :param max_conflict_retries: reloads after a concurrency conflict. Default: 3.
    :param base_delay_seconds: the first backoff ceiling. Default: 0.05.
    :param sleep: the pause between attempts. Default: ``time.sleep``.
    """

    def __init__(
        self,
        dynamodb: Any,
        table_name: str,
        *,
        max_conflict_retries: int = 3,
        base_delay_seconds: float = 0.05,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.dynamodb, self.table_name = dynamodb, table_name
        self.max_conflict_retries, self.base_delay_seconds, self.sleep = max_conflict_retries, base_delay_seconds, sleep

    def load(self, aggregate_id: str) -> list[dict[str, Any]]:
        """The aggregate's event items, oldest first, as plain values; strongly consistent."""
        pages = self.dynamodb.get_paginator("query").paginate(
            TableName=self.table_name,
            KeyConditionExpression="#id = :id AND #version > :zero",
            ExpressionAttributeNames={"#id": AGGREGATE_ID, "#version": VERSION},
            ExpressionAttributeValues={":id": {"S": aggregate_id}, ":zero": {"N": "0"}},
            ConsistentRead=True,
        )
        return [plain(item) for page in pages for item in page["Items"]]

    def marker_key(self, aggregate_id: str, command_id: str) -> dict[str, Any]:
        return {AGGREGATE_ID: f"{COMMAND_PREFIX}{aggregate_id}#{command_id}", VERSION: 0}

    def recorded(self, aggregate_id: str, command_id: str) -> dict[str, Any] | None:
        """The answer recorded for the command, or None when it has had no effect; strongly consistent."""
        item = self.dynamodb.get_item(TableName=self.table_name, Key=stored(self.marker_key(aggregate_id, command_id)), ConsistentRead=True).get("Item")
        return None if item is None else plain(item)["result"]

    def transaction(self, aggregate_id: str, command_id: str, decision: Decision, recorded_at: str) -> list[dict[str, Any]]:
        """The TransactWriteItems entries: each event (new version only), the caller's extra writes, the marker last."""
        entries: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self.table_name,
                    "Item": stored(event),
                    "ConditionExpression": "attribute_not_exists(#version)",
                    "ExpressionAttributeNames": {"#version": VERSION},
                }
            }
            for event in decision.events
        ]
        entries.extend(dict(entry) for entry in decision.extra)
        marker = {**self.marker_key(aggregate_id, command_id), "kind": "command", "result": dict(decision.result), "recorded_at": recorded_at}
        entries.append(
            {
                "Put": {
                    "TableName": self.table_name,
                    "Item": stored(marker),
                    "ConditionExpression": "attribute_not_exists(#id)",
                    "ExpressionAttributeNames": {"#id": AGGREGATE_ID},
                }
            }
        )
        return entries

    def append(self, entries: list[dict[str, Any]]) -> None:
        """All or nothing; DuplicateCommand when only the marker's condition failed, ConcurrencyConflict when another did."""
        try:
            self.dynamodb.transact_write_items(TransactItems=entries)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                raise
            reasons = [reason.get("Code", "None") for reason in exc.response.get("CancellationReasons", [])]
            if len(reasons) == len(entries) and reasons[-1] == "ConditionalCheckFailed" and set(reasons[:-1]) <= {"None"}:
                raise DuplicateCommand(", ".join(reasons)) from exc
            if CONFLICT_REASONS.intersection(reasons):
                raise ConcurrencyConflict(", ".join(reasons)) from exc
            raise

    def backoff_delay(self, retry: int) -> float:
        """Full jitter: a random pause below an exponentially growing ceiling."""
        return random.uniform(0, min(MAX_BACKOFF_SECONDS, self.base_delay_seconds * 2 ** (retry - 1)))

    def execute(self, aggregate_id: str, command_id: str, decide: Callable[[list[dict[str, Any]]], Decision | Refused], *, now: Callable[[], str]) -> Outcome:
        """Load, decide, append, reloading after each conflict. A decision with no events writes nothing (not even the marker)."""
        conflicts = 0
        for attempt in range(self.max_conflict_retries + 1):
            if attempt:
                self.sleep(self.backoff_delay(attempt))
            recorded = self.recorded(aggregate_id, command_id)
            if recorded is not None:
                return Outcome(recorded, duplicate=True, conflicts=conflicts)
            decision = decide(self.load(aggregate_id))
            if isinstance(decision, Refused):
                return Outcome(None, refused=decision, conflicts=conflicts)
            if not decision.events:  # nothing to change: answered, nothing recorded
                return Outcome(decision.result, conflicts=conflicts)
            try:
                self.append(self.transaction(aggregate_id, command_id, decision, now()))
            except DuplicateCommand:
                recorded = self.recorded(aggregate_id, command_id)
                if recorded is None:  # the marker cannot go away: the store is append-only
                    raise
                return Outcome(recorded, duplicate=True, conflicts=conflicts)
            except ConcurrencyConflict:
                conflicts += 1
                continue
            return Outcome(decision.result, conflicts=conflicts, events=len(decision.events))
        attempts = self.max_conflict_retries + 1
        message = f"{aggregate_id} kept changing while the command was applied ({attempts} attempts); nothing was written, send it again."
        return Outcome(None, refused=Refused("Conflict", message), conflicts=conflicts)


def apply_newest(dynamodb: Any, table_name: str, key: Mapping[str, str], version: int, fields: Mapping[str, Any]) -> bool:
    """Make the read model item ``key`` show ``fields`` (the state after event ``version``) unless it shows a newer one.

    One conditional UpdateItem; ``last_version`` holds the version shown. True when the item changed, False for a
    stale or duplicate event.
    """
    ((key_name, key_value),) = key.items()
    values = {**fields, "last_version": version}
    names = {f"#f{i}": name for i, name in enumerate(values)}
    try:
        dynamodb.update_item(
            TableName=table_name,
            Key={key_name: {"S": key_value}},
            UpdateExpression="SET " + ", ".join(f"#f{i} = :v{i}" for i in range(len(values))),
            ConditionExpression="attribute_not_exists(#key) OR #last < :version",
            ExpressionAttributeNames={**names, "#key": key_name, "#last": "last_version"},
            ExpressionAttributeValues={
                **{f":v{i}": _serializer.serialize(value) for i, value in enumerate(values.values())},
                ":version": {"N": str(version)},
            },
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            return False
        raise
    return True


#: Rejected items a rebuild lists (it counts them all).
MAX_REPORTED_REJECTIONS = 50


def rebuild(
    dynamodb: Any,
    store_table: str,
    apply: Callable[[dict[str, Any]], bool],
    *,
    start_key: Mapping[str, Any] | None = None,
    page_size: int = 0,
    keep_going: Callable[[], bool] = lambda: True,
    on_rejected: Callable[[dict[str, Any], Exception], None] = lambda item, error: None,
    read: Callable[[Mapping[str, Any]], dict[str, Any]] = plain,
    reason: Callable[[Exception], str] = lambda error: f"{type(error).__name__}: {error}"[:500],
) -> dict[str, Any]:
    """Apply every event item of the store (a strongly consistent scan of ``kind = event``) with ``apply(item)``.

    ``apply`` takes the item as ``read`` gives it (by default its plain values) and returns whether the read model
    changed. An item that does not read, or that ``apply`` raises on, is rejected (counted, up to 50 listed with its
    ``reason``, ``on_rejected`` called) and the rebuild goes on. After each page it stops when ``keep_going()`` is
    false, answering ``complete: false`` and ``next_start_key``.
    """
    applied = already_current = 0
    aggregates: set[str] = set()
    rejected: list[dict[str, Any]] = []
    rejected_count = 0
    key = dict(start_key) if start_key else None
    while True:
        arguments: dict[str, Any] = {
            "TableName": store_table,
            "ConsistentRead": True,
            "FilterExpression": "#kind = :event",
            "ExpressionAttributeNames": {"#kind": "kind"},
            "ExpressionAttributeValues": {":event": {"S": "event"}},
        }
        if page_size:
            arguments["Limit"] = page_size
        if key:
            arguments["ExclusiveStartKey"] = key
        page = dynamodb.scan(**arguments)
        for raw in page.get("Items", []):
            named = {name: raw[name].get("S", raw[name].get("N")) for name in (AGGREGATE_ID, VERSION) if name in raw}
            try:
                changed = apply(read(raw))
            except Exception as error:  # one unreadable item is that item's failure, never the rebuild's
                on_rejected(named, error)
                rejected_count += 1
                if len(rejected) < MAX_REPORTED_REJECTIONS:
                    rejected.append({**named, "reason": reason(error)})
                continue
            applied += 1
            already_current += 0 if changed else 1
            aggregates.add(str(named.get(AGGREGATE_ID)))
        key = page.get("LastEvaluatedKey")
        if not key or not keep_going():
            break
    result: dict[str, Any] = {
        "events": applied,
        "aggregates": len(aggregates),
        "already_current": already_current,
        "rejected": rejected_count,
        "rejected_items": rejected,
        "complete": not key,
    }
    if key:
        result["next_start_key"] = key
    return result
