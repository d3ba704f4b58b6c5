"""The booking aggregate: its commands and the rules between them. No I/O here.

- ``request`` books a listing for a guest at a price (minor units); a booking id is used once (``BookingExists``).
- ``cancel`` (the guest) cancels a REQUESTED or CONFIRMED booking; cancelling one that is already CANCELLED or
  FAILED changes nothing and answers its status.
- ``confirm`` (the payment saga, after the charge) confirms a REQUESTED booking with the charge; a CONFIRMED one
  answers as it is; a CANCELLED or FAILED one cannot be confirmed (``BookingNotConfirmable``: the saga refunds).
  A charge of another amount than the price is refused the same way.
- ``fail`` (the saga's failure path) marks a REQUESTED booking FAILED; on a CANCELLED or FAILED one it changes
  nothing; on a CONFIRMED one the saga's work is done (``SagaAlreadyCompleted``: nothing to undo).
- ``record_refund`` (the saga, after the refund) records what was given back, whatever the status: money moved.
  A refund of nothing changes nothing.
- Any command but ``request`` on a booking that does not exist is ``BookingNotFound``.

``decide`` returns the one event a command leads to (the event's ``type``, its ``data`` and the state after it),
nothing, or a ``Refused``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from messaging_runtime.contracts.bookings import BookingId, Currency, GuestId, Key, ListingId, MinorUnits, Text
from messaging_runtime.event_sourcing import Refused

COMMAND_NAMES = ("request", "cancel", "confirm", "fail", "record_refund")
#: Commands the payment saga sends; their command id is the command's name (one of each per booking).
SAGA_COMMANDS = frozenset({"confirm", "fail", "record_refund"})

INVALID_COMMAND = "InvalidCommand"
BOOKING_EXISTS = "BookingExists"
BOOKING_NOT_FOUND = "BookingNotFound"
NOT_CONFIRMABLE = "BookingNotConfirmable"
ALREADY_COMPLETED = "SagaAlreadyCompleted"


class _Command(BaseModel):
    model_config = ConfigDict(strict=True, frozen=True, extra="forbid")

    booking_id: BookingId
    command_id: Key | None = None


class Request(_Command):
    command: Literal["request"]
    command_id: Key  # the client's idempotency key: required
    guest_id: GuestId
    listing_id: ListingId
    nights: Annotated[int, Field(ge=1, le=365)]
    amount_minor: Annotated[int, Field(ge=1, le=10**12)]
    currency: Currency


class Cancel(_Command):
    command: Literal["cancel"]
    command_id: Key
    reason: Text | None = None


class Charge(BaseModel):
    """What the charge step answered (``$.results.ChargeGuest.result``)."""

    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")

    charge_id: Key
    charged_minor: MinorUnits


class Confirm(_Command):
    command: Literal["confirm"]
    charge: Charge


class SagaError(BaseModel):
    """The saga's ``$.error``: Step Functions' ``Error`` and ``Cause``."""

    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")

    Error: Text
    Cause: str | None = None


class Fail(_Command):
    command: Literal["fail"]
    error: SagaError


class Refund(BaseModel):
    """What the refund step answered (``$.results.RefundGuest.result``)."""

    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")

    refund_id: Key | None = None
    charged_minor: MinorUnits
    refunded_minor: MinorUnits


class RecordRefund(_Command):
    command: Literal["record_refund"]
    refund: Refund


Command = Union[Request, Cancel, Confirm, Fail, RecordRefund]
_COMMAND: TypeAdapter[Command] = TypeAdapter(Annotated[Command, Field(discriminator="command")])


def parse_command(raw: Any) -> Command | Refused:
    """The command in an invocation payload, or ``InvalidCommand`` naming every bad field."""
    if not isinstance(raw, dict) or raw.get("command") not in COMMAND_NAMES:
        return Refused(INVALID_COMMAND, f'expected {{"command": {" | ".join(COMMAND_NAMES)}, "booking_id": ...}}, got {str(raw)[:200]}')
    try:
        return _COMMAND.validate_python(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'command'}: {e['msg']}" for e in exc.errors(include_url=False)[:5])
        return Refused(INVALID_COMMAND, f"invalid {raw['command']} command: {problems}")


@dataclass(frozen=True)
class Booking:
    """A booking after its newest event (``version``), as that event's item says."""

    version: int
    status: str
    guest_id: str
    amount_minor: int
    currency: str
    charged_minor: int = 0
    refunded_minor: int = 0

    def state(self) -> dict[str, Any]:
        """The state fields every event item carries."""
        names = ("status", "guest_id", "amount_minor", "currency", "charged_minor", "refunded_minor")
        return {name: getattr(self, name) for name in names}


@dataclass(frozen=True)
class Change:
    """One event: its type, its data and the booking after it."""

    type: str
    data: dict[str, Any]
    after: Booking


def decide(booking: Booking | None, command: Command) -> Change | Booking | Refused:
    """The event ``command`` leads to, the booking unchanged (nothing to do), or why it is refused."""
    if isinstance(command, Request):
        if booking is not None:
            return Refused(BOOKING_EXISTS, f"booking {command.booking_id} exists already")
        after = Booking(1, "REQUESTED", command.guest_id, command.amount_minor, command.currency)
        price = {"amount_minor": command.amount_minor, "currency": command.currency}
        data = {"listing_id": command.listing_id, "guest_id": command.guest_id, "nights": command.nights, "price": price}
        return Change("BookingRequested", data, after)
    if booking is None:
        return Refused(BOOKING_NOT_FOUND, f"booking {command.booking_id} does not exist")
    following = replace(booking, version=booking.version + 1)
    if isinstance(command, Cancel):
        if booking.status in ("CANCELLED", "FAILED"):
            return booking
        data = {"previous_status": booking.status} | ({"reason": command.reason} if command.reason else {})
        return Change("BookingCancelled", data, replace(following, status="CANCELLED"))
    if isinstance(command, Confirm):
        if booking.status == "CONFIRMED":
            return booking
        if booking.status != "REQUESTED":
            return Refused(NOT_CONFIRMABLE, f"booking {command.booking_id} is {booking.status}: it cannot be confirmed")
        if command.charge.charged_minor != booking.amount_minor:
            return Refused(NOT_CONFIRMABLE, f"the charge of {command.charge.charged_minor} does not pay the price of {booking.amount_minor}")
        after = replace(following, status="CONFIRMED", charged_minor=command.charge.charged_minor)
        return Change("BookingConfirmed", {"charge_id": command.charge.charge_id, "amount_minor": command.charge.charged_minor}, after)
    if isinstance(command, Fail):
        if booking.status == "CONFIRMED":
            return Refused(ALREADY_COMPLETED, f"booking {command.booking_id} is confirmed: the saga's work is done")
        if booking.status != "REQUESTED":
            return booking
        data = {"error": command.error.Error} | ({"cause": command.error.Cause[:2000]} if command.error.Cause else {})
        return Change("PaymentFailed", data, replace(following, status="FAILED"))
    refund = command.refund
    if refund.refunded_minor == 0 or refund.refund_id is None:
        return booking
    charged = max(booking.charged_minor, refund.charged_minor)
    after = replace(following, charged_minor=charged, refunded_minor=refund.refunded_minor)
    return Change("PaymentRefunded", {"refund_id": refund.refund_id, "charged_minor": charged, "refunded_minor": refund.refunded_minor}, after)
