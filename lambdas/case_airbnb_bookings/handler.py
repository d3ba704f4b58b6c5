"""Run one command on a booking kept as events, and publish the event through the outbox in the same transaction.

Invoked synchronously (Lambda Invoke API) by clients and by the payment saga::

    {"command": "request", "booking_id": "b-1", "command_id": "<client key>", "guest_id": "g-1", "listing_id": "l-1",
     "nights": 3, "amount_minor": 36000, "currency": "EUR"}
    {"command": "cancel", "booking_id": "b-1", "command_id": "<client key>"}
    {"command": "confirm", "booking_id": "b-1", "charge": {"charge_id": ..., "charged_minor": 36000}}       (the saga)
    {"command": "fail", "booking_id": "b-1", "error": {"Error": ..., "Cause": ...}}                          (the saga)
    {"command": "record_refund", "booking_id": "b-1", "refund": {"refund_id": ..., "charged_minor", "refunded_minor"}}

and answers ``{"ok": true, "booking_id", "version", "status", "charged_minor", "refunded_minor"}`` or, when a client's
command is refused, ``{"ok": false, "error": <code>, "message": ...}``. The rules are in ``booking.py``.

Each command is idempotent on its ``command_id``: the client's idempotency key, or for the saga's commands the
command's name (one of each per booking). The event store, the outbox and the command marker are written in one
``TransactWriteItems`` (``messaging_runtime.event_sourcing``): the event item (``BookingRequested`` in schema version
2), the booking's outbox slot with its ``BookingChanged`` (``seq`` = the event's version), and the marker holding the
answer. A copy of a command that was applied answers the same and writes nothing (``DuplicateCommands``); a lost race
reloads and decides again. Botocore retries throttling with the same client request token.

For the saga a refusal is an error, named for Step Functions: ``BookingNotConfirmable`` (the saga refunds),
``SagaAlreadyCompleted`` (the saga ends, nothing undone), ``BookingConflict`` (retried), ``InvalidCommand`` (a bug:
not retried).

Environment: EVENT_STORE_TABLE, OUTBOX_TABLE_NAME (required); MAX_CONFLICT_RETRIES (3).
"""

import os
from datetime import datetime, timezone
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from booking import SAGA_COMMANDS, Booking, Change, Command, decide, parse_command
from botocore.config import Config

from messaging_runtime.contracts.bookings import BOOKING_CHANGED, BOOKING_EVENTS, BookingChangedV1
from messaging_runtime.event_sourcing import Decision, EventStoreWriter, Refused
from messaging_runtime.outbox import Outbox

EVENT_CONTRACTS = {kind.name: kind.current for kind in BOOKING_EVENTS.kinds.values()}

logger, tracer, metrics = Logger(), Tracer(), Metrics()
dynamodb = boto3.client("dynamodb", config=Config(retries={"mode": "standard", "max_attempts": 3}))
store = EventStoreWriter(dynamodb, os.environ["EVENT_STORE_TABLE"], max_conflict_retries=int(os.environ.get("MAX_CONFLICT_RETRIES", "3")))
outbox = Outbox(os.environ["OUTBOX_TABLE_NAME"])


class BookingNotConfirmable(Exception):
    """The booking was cancelled (or failed) before the saga confirmed it, or the charge does not pay its price."""


class SagaAlreadyCompleted(Exception):
    """The saga's failure path found the booking confirmed: nothing to undo."""


class BookingConflict(Exception):
    """The booking kept changing while the command was applied; nothing was written (retried by the saga)."""


class InvalidCommand(Exception):
    """The saga sent a command this function does not read, or for a booking that does not exist: a bug, not retried."""


SAGA_ERRORS = {"BookingNotConfirmable": BookingNotConfirmable, "SagaAlreadyCompleted": SagaAlreadyCompleted, "Conflict": BookingConflict}


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def current(items: list[dict[str, Any]]) -> Booking | None:
    """The booking after its newest event, as that item (read with its contract, any schema version) says."""
    if not items:
        return None
    newest = BOOKING_EVENTS.parse(items[-1])
    return Booking(newest.version, newest.status, newest.guest_id, newest.amount_minor, newest.currency, newest.charged_minor, newest.refunded_minor)


def answer(booking_id: str, booking: Booking) -> dict[str, Any]:
    return {"ok": True, "booking_id": booking_id, "version": booking.version, **booking.state()}


def decision(command: Command, command_id: str, at: str, items: list[dict[str, Any]]) -> Decision | Refused:
    """What ``command`` does to the booking in ``items``: the event item and its outbox slot, or nothing, or a refusal."""
    before = current(items)
    outcome = decide(before, command)
    if isinstance(outcome, Refused):
        return outcome
    if isinstance(outcome, Booking):
        return Decision(events=(), result=answer(command.booking_id, outcome))
    change: Change = outcome
    after = change.after
    fields = {"aggregate_id": command.booking_id, "version": after.version, "kind": "event", "type": change.type, "schema_version": 1}
    fields |= {"data": change.data, **after.state(), "occurred_at": at, "command_id": command_id}
    if change.type == "BookingRequested":
        fields["schema_version"] = 2
    item = EVENT_CONTRACTS[change.type].model_validate(fields).model_dump(exclude_none=True)
    bus_event = BookingChangedV1(
        version=1,
        booking_id=command.booking_id,
        seq=after.version,
        type=change.type,
        previous_status=before.status if before else None,
        occurred_at=at,
        **after.state(),
    )
    slot = outbox.put(command.booking_id, after.version, BOOKING_CHANGED, bus_event)
    return Decision(events=(item,), extra=(slot,), result=answer(command.booking_id, after))


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    command = parse_command(event)
    from_saga = isinstance(event, dict) and event.get("command") in SAGA_COMMANDS
    if isinstance(command, Refused):
        return refuse(command, from_saga)
    command_id = command.command_id or command.command
    logger.append_keys(command=command.command, booking_id=command.booking_id, command_id=command_id)
    outcome = store.execute(command.booking_id, command_id, lambda items: decision(command, command_id, now(), items), now=now)
    if outcome.conflicts:
        metrics.add_metric(name="ConcurrencyConflicts", unit=MetricUnit.Count, value=outcome.conflicts)
    if outcome.refused is not None:
        return refuse(outcome.refused, from_saga)
    if outcome.duplicate:
        metrics.add_metric(name="DuplicateCommands", unit=MetricUnit.Count, value=1)
    elif outcome.events:
        metrics.add_metric(name="BookingEventsAppended", unit=MetricUnit.Count, value=outcome.events)
    logger.info("Command answered", extra={"duplicate": outcome.duplicate, "events": outcome.events, "status": outcome.result["status"]})
    return dict(outcome.result)


def refuse(refused: Refused, from_saga: bool) -> dict[str, Any]:
    logger.info("Command refused", extra={"error": refused.code, "reason": refused.message})
    metrics.add_metric(name="CommandsRefused", unit=MetricUnit.Count, value=1)
    if from_saga:
        raise SAGA_ERRORS.get(refused.code, InvalidCommand)(refused.message)
    return {"ok": False, "error": refused.code, "message": refused.message}
