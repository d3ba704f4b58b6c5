"""Run one command on a bank account kept as an event-sourced aggregate.

Invoked synchronously with one command::

    {"command": "open", "account_id": "acc-1", "owner": "Ada"}
    {"command": "deposit", "account_id": "acc-1", "amount": 12.5, "command_id": "c-42"}
    {"command": "withdraw", "account_id": "acc-1", "amount": 2}
    {"command": "close", "account_id": "acc-1"}

and answers ``{"ok": true, "account_id", "version", "balance", "status"}``
(the balance as text with two decimal places) or, when the command is
refused, ``{"ok": false, "error": <code>, "message": <sentence>}``. The rules
and the codes are in ``account.py``; ``Conflict`` is added here. A refusal
is an answer, not a function error: only infrastructure failures (after
botocore's retries) raise.

The event store is one DynamoDB table keyed on ``aggregate_id`` and
``version``. A command loads the account's newest snapshot (partition
``<id>#snapshot``) and the events after it, folds them into the state,
decides, and appends the new events in one TransactWriteItems, each Put
conditional on ``attribute_not_exists(version)``: of two commands that
loaded the same version, only one can write the next. Every event item holds
the state it leads to (``balance``, ``status``, ``owner``) so that a
projection can keep the newest event it has seen and ignore older ones, and
is built with its contract (``messaging_runtime.contracts.accounts``, the
producer's view), which the projection and the rebuild read it with.

When a new event's version is a multiple of ``SNAPSHOT_EVERY``, the state
after it is written as a snapshot in the same transaction, so a snapshot
never exists without its event. Older snapshots are kept.

A transaction cancelled because another command got there first
(``ConditionalCheckFailed``, or ``TransactionConflict`` while the other
transaction is in flight) is a concurrency conflict: the command reloads the
account and is decided again, as the other command may have changed the
answer, after a pause with exponential backoff and full jitter; after
``MAX_CONFLICT_RETRIES`` such retries it gives up with ``Conflict`` and has
written nothing.

A command is idempotent on ``command_id`` (default: the Lambda request id,
which Lambda's asynchronous retries keep). The transaction that appends a
command's events also puts a command marker, ``{"aggregate_id":
"command#<account_id>#<command_id>", "version": 0, "kind": "command",
"command", "result": {"version", "balance", "status"}, "recorded_at"}``,
conditional on ``attribute_not_exists(aggregate_id)``. Before each load the
command reads its marker (strongly consistent GetItem); when it exists the
recorded answer is returned and nothing is written (``DuplicateCommands``).
When the transaction is cancelled because the marker exists (a concurrent
duplicate won), the marker's answer is returned too. A refused command
records nothing: sent again, it is decided again. The marker lives in a
partition of its own and is not an event (``kind`` is ``command``), so
loading, the projection's stream filter and the rebuild never see it.
``command_id`` is also stored with the events for tracing.

Environment:
    EVENT_STORE_TABLE                    event store table (required)
    SNAPSHOT_EVERY                       events between snapshots, default 5; 0 never snapshots
    MAX_CONFLICT_RETRIES                 reloads after a concurrency conflict, default 3
    CONFLICT_RETRY_BASE_DELAY_SECONDS    first backoff ceiling, default 0.05
"""

import os
import random
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

import boto3
from account import (
    CONFLICT,
    AccountState,
    Command,
    Event,
    Rejection,
    decide,
    evolve,
    fold,
    money,
    parse_command,
    snapshot_due,
    snapshot_state,
    state_from_snapshot,
)
from aws_lambda_powertools import Logger, Metrics, Tracer, single_metric
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.config import Config
from botocore.exceptions import ClientError

from messaging_runtime.contracts.accounts import KINDS

#: The contract of each event type, which every event item is built with.
EVENT_CONTRACTS = {kind.name: kind.current for kind in KINDS}
SNAPSHOT_SUFFIX = "#snapshot"
COMMAND_PREFIX = "command#"
MAX_BACKOFF_SECONDS = 1.0
# Cancellation reasons that mean another writer got to the version first.
CONFLICT_REASONS = frozenset({"ConditionalCheckFailed", "TransactionConflict"})

EVENT_STORE_TABLE = os.environ["EVENT_STORE_TABLE"]
SNAPSHOT_EVERY = max(0, int(os.environ.get("SNAPSHOT_EVERY", "5")))
MAX_CONFLICT_RETRIES = max(0, int(os.environ.get("MAX_CONFLICT_RETRIES", "3")))
CONFLICT_RETRY_BASE_DELAY_SECONDS = float(os.environ.get("CONFLICT_RETRY_BASE_DELAY_SECONDS", "0.05"))

logger = Logger()
tracer = Tracer()
metrics = Metrics()
# Throttling and 5xx are retried by botocore, with the same client request
# token on every attempt, so a retried transaction is not applied twice.
dynamodb = boto3.client("dynamodb", config=Config(retries={"mode": "standard", "max_attempts": 3}))
serializer = TypeSerializer()
deserializer = TypeDeserializer()

# The pause between attempts. Tests replace it to run without waiting.
sleep: Callable[[float], None] = time.sleep


@dataclass(frozen=True)
class Loaded:
    """An account as read from the store, and what reading it cost."""

    state: AccountState
    snapshot_version: int  # 0: no snapshot was found
    events_read: int

    @property
    def items_read(self) -> int:
        return self.events_read + (1 if self.snapshot_version else 0)


class ConcurrencyConflict(Exception):
    """Another command wrote the version this one meant to write."""


class DuplicateCommand(Exception):
    """Another run of the same command recorded its marker first."""


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    return {name: deserializer.deserialize(value) for name, value in item.items()}


def _stored(item: dict[str, Any]) -> dict[str, Any]:
    return {name: serializer.serialize(value) for name, value in item.items()}


@tracer.capture_method
def load(account_id: str) -> Loaded:
    """The account's newest snapshot plus the events after it, folded; strongly consistent reads."""
    snapshots = dynamodb.query(
        TableName=EVENT_STORE_TABLE,
        KeyConditionExpression="#id = :id",
        ExpressionAttributeNames={"#id": "aggregate_id"},
        ExpressionAttributeValues={":id": {"S": account_id + SNAPSHOT_SUFFIX}},
        ScanIndexForward=False,
        Limit=1,
        ConsistentRead=True,
    )["Items"]
    state = AccountState()
    if snapshots:
        snapshot = _plain(snapshots[0])
        state = state_from_snapshot(int(snapshot["version"]), snapshot.get("state"))
    pages = dynamodb.get_paginator("query").paginate(
        TableName=EVENT_STORE_TABLE,
        KeyConditionExpression="#id = :id AND #version > :after",
        ExpressionAttributeNames={"#id": "aggregate_id", "#version": "version"},
        ExpressionAttributeValues={":id": {"S": account_id}, ":after": {"N": str(state.version)}},
        ConsistentRead=True,
    )
    events = [_event(_plain(raw)) for page in pages for raw in page["Items"]]
    return Loaded(state=fold(events, state), snapshot_version=state.version, events_read=len(events))


def _event(item: dict[str, Any]) -> Event:
    return Event(type=item.get("type", ""), version=int(item["version"]), data=item.get("data", {}))


def event_item(account_id: str, event: Event, after: AccountState, command_id: str, occurred_at: str) -> dict[str, Any]:
    """The stored form of an event, built with its contract (the producer's view): the fact and the state it leads to."""
    contract = EVENT_CONTRACTS[event.type]
    fields = {"aggregate_id": account_id, "version": event.version, "kind": "event", "type": event.type, "data": event.data}
    state = {"balance": after.balance, "status": after.status, "owner": after.owner, "occurred_at": occurred_at, "command_id": command_id}
    return contract.model_validate(fields | state).model_dump(exclude_none=True)


def snapshot_item(account_id: str, state: AccountState) -> dict[str, Any]:
    return {"aggregate_id": account_id + SNAPSHOT_SUFFIX, "version": state.version, "kind": "snapshot", "state": snapshot_state(state)}


def transaction(account_id: str, state: AccountState, events: list[Event], command_id: str, occurred_at: str) -> tuple[list[dict[str, Any]], AccountState]:
    """The TransactWriteItems entries that append ``events`` to an account in ``state``, and the state after them."""
    entries = []
    for event in events:
        state = evolve(state, event)
        entries.append(
            {
                "Put": {
                    "TableName": EVENT_STORE_TABLE,
                    "Item": _stored(event_item(account_id, event, state, command_id, occurred_at)),
                    "ConditionExpression": "attribute_not_exists(#version)",
                    "ExpressionAttributeNames": {"#version": "version"},
                }
            }
        )
        if snapshot_due(event.version, SNAPSHOT_EVERY):
            # No condition: the event Put in the same transaction already guards the version.
            entries.append({"Put": {"TableName": EVENT_STORE_TABLE, "Item": _stored(snapshot_item(account_id, state))}})
    return entries, state


def marker_key(account_id: str, command_id: str) -> dict[str, Any]:
    return {"aggregate_id": COMMAND_PREFIX + account_id + "#" + command_id, "version": 0}


def answer(account_id: str, result: dict[str, Any]) -> dict[str, Any]:
    return {"ok": True, "account_id": account_id, "version": int(result["version"]), "balance": result["balance"], "status": result["status"]}


def marker_entry(command: Command, command_id: str, result: dict[str, Any], recorded_at: str) -> dict[str, Any]:
    """The conditional Put of the command marker, which records the answer of an accepted command."""
    item = {**marker_key(command.account_id, command_id), "kind": "command", "command": command.command, "result": result, "recorded_at": recorded_at}
    return {
        "Put": {
            "TableName": EVENT_STORE_TABLE,
            "Item": _stored(item),
            "ConditionExpression": "attribute_not_exists(#id)",
            "ExpressionAttributeNames": {"#id": "aggregate_id"},
        }
    }


@tracer.capture_method
def recorded_answer(account_id: str, command_id: str) -> dict[str, Any] | None:
    """The answer recorded for the command, or None when it has had no effect yet; a strongly consistent read."""
    item = dynamodb.get_item(TableName=EVENT_STORE_TABLE, Key=_stored(marker_key(account_id, command_id)), ConsistentRead=True).get("Item")
    return None if item is None else answer(account_id, _plain(item)["result"])


@tracer.capture_method
def append(entries: list[dict[str, Any]]) -> None:
    """Write the entries all or nothing (the last one the command marker); raise DuplicateCommand when the
    marker exists, ConcurrencyConflict when another writer took a version."""
    try:
        dynamodb.transact_write_items(TransactItems=entries)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
            raise
        reasons = [reason.get("Code", "None") for reason in exc.response.get("CancellationReasons", [])]
        if len(reasons) == len(entries) and reasons[-1] == "ConditionalCheckFailed":
            raise DuplicateCommand(", ".join(reasons)) from exc
        if CONFLICT_REASONS.intersection(reasons):
            raise ConcurrencyConflict(", ".join(reasons)) from exc
        raise


def backoff_delay(retry: int) -> float:
    """Full jitter: a random pause below an exponentially growing ceiling."""
    ceiling = min(MAX_BACKOFF_SECONDS, CONFLICT_RETRY_BASE_DELAY_SECONDS * 2 ** (retry - 1))
    return random.uniform(0, ceiling)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def reject(rejection: Rejection) -> dict[str, Any]:
    logger.info("Command rejected", extra={"error": rejection.code, "reason": rejection.message})
    metrics.add_metric(name="CommandsRejected", unit=MetricUnit.Count, value=1)
    # The same count by error code, in a metric of its own so the dimension stays off the others.
    with single_metric(name="CommandsRejected", unit=MetricUnit.Count, value=1, default_dimensions=metrics.default_dimensions) as metric:
        metric.add_dimension(name="error", value=rejection.code)
    return {"ok": False, "error": rejection.code, "message": rejection.message}


def duplicate(recorded: dict[str, Any]) -> dict[str, Any]:
    logger.info("Command already applied; answering as the first time", extra={"version": recorded["version"]})
    metrics.add_metric(name="DuplicateCommands", unit=MetricUnit.Count, value=1)
    return recorded


def execute(command: Command, command_id: str) -> dict[str, Any]:
    """Load, decide and append, reloading after each concurrency conflict; the caller's answer."""
    account_id = command.account_id
    events_read = 0
    for attempt in range(MAX_CONFLICT_RETRIES + 1):
        if attempt:
            sleep(backoff_delay(attempt))
        recorded = recorded_answer(account_id, command_id)
        if recorded is not None:
            return duplicate(recorded)
        loaded = load(account_id)
        events_read += loaded.events_read
        metrics.add_metric(name="EventsRead", unit=MetricUnit.Count, value=loaded.events_read)
        metrics.add_metric(name="SnapshotsRead", unit=MetricUnit.Count, value=1 if loaded.snapshot_version else 0)
        decision = decide(loaded.state, command)
        if isinstance(decision, Rejection):
            return reject(decision)
        occurred_at = now()
        entries, after = transaction(account_id, loaded.state, decision, command_id, occurred_at)
        result = {"version": after.version, "balance": money(after.balance), "status": after.status}
        try:
            append(entries + [marker_entry(command, command_id, result, occurred_at)])
        except DuplicateCommand:
            recorded = recorded_answer(account_id, command_id)
            if recorded is None:  # the marker cannot go away: the store is append-only
                raise
            return duplicate(recorded)
        except ConcurrencyConflict as exc:
            metrics.add_metric(name="ConcurrencyConflicts", unit=MetricUnit.Count, value=1)
            logger.warning(
                "Another command wrote the account first",
                extra={"attempt": attempt + 1, "loaded_version": loaded.state.version, "cancellation_reasons": str(exc)},
            )
            continue
        metrics.add_metric(name="CommandsAccepted", unit=MetricUnit.Count, value=1)
        logger.info(
            "Command accepted",
            extra={
                "events": [event.type for event in decision],
                "version": after.version,
                "snapshot_version": loaded.snapshot_version,
                "events_read": events_read,
                "attempts": attempt + 1,
            },
        )
        return answer(account_id, result)
    return reject(
        Rejection(
            CONFLICT,
            f"Account {account_id} kept changing while the command was applied ({MAX_CONFLICT_RETRIES + 1} attempts); "
            "nothing was written, the command can be sent again.",
        )
    )


@logger.inject_lambda_context(clear_state=True)  # the command's keys below go with its invocation
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    command = parse_command(event)
    if isinstance(command, Rejection):
        return reject(command)
    command_id = command.command_id or context.aws_request_id
    logger.append_keys(command=command.command, account_id=command.account_id, command_id=command_id)
    try:
        return execute(command, command_id)
    except Exception:
        logger.exception("Command failed")
        metrics.add_metric(name="CommandsFailed", unit=MetricUnit.Count, value=1)
        raise
