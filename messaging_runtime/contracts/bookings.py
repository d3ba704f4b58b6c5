"""Booking events (CaseAirbnb): the items of the bookings event store, and the booking changes its outbox puts on the bus.

The event store holds one item per event of a booking (``aggregate_id`` the
booking, ``version`` its place in the booking's history). Every item holds the
fact (``type``, ``data``) and the booking's state after it (``status``, the
price and what was charged and refunded, in minor units), so that the ledger
projection can keep the newest state it has seen whatever order the events
arrive in. Items carry ``schema_version``: the store keeps events for ever, so
every version ever written stays readable.

``BookingRequested`` has two versions. Version 1 wrote the price as ``total``,
a decimal JSON number in the currency's main unit; version 2 writes ``price``,
a whole number of minor units (cents) with its currency, as every other
amount of the ledger already was: no reader turns money into a float any
more. Changing a field's name and type is a breaking change, hence version 2;
the upcaster turns a version 1 item into version 2 exactly (a version 1
total never had more decimals than its currency's minor unit).

On the bus (source ``blueprints.stays``), every event of a booking is a
``BookingChanged`` whose ``seq`` is the event's version: a consumer keeps the
highest ``seq`` it applied. Rules route the requests, and the cancellations of
confirmed bookings, to the payment saga.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, StringConstraints

from ._base import Contract, EventKind, OneOf
from .fields import Amount, Currency, UtcTimestamp, UtcTimestampText, WholeNumber

SOURCE = "blueprints.stays"
_STORE = "DynamoDB event store of CaseAirbnb: its stream (the ledger projection), and scans (the rebuild)"
_BUS = "EventBridge bus of CaseAirbnb, from the outbox by a pipe"


def _identifier(prefix: str) -> Any:
    return Annotated[str, StringConstraints(strict=True, pattern=rf"^{prefix}[A-Za-z0-9_-]{{1,64}}$")]


#: ``b-`` and 1 to 64 letters, digits, ``_`` or ``-``: the event store's partition key and the saga's execution name.
BookingId = _identifier("b-")
#: ``g-`` and 1 to 64 letters, digits, ``_`` or ``-``.
GuestId = _identifier("g-")
#: ``l-`` and 1 to 64 letters, digits, ``_`` or ``-``.
ListingId = _identifier("l-")
#: An amount in the currency's minor unit (cents; yen for JPY): a whole number from 0 to 10^12.
MinorUnits = Annotated[int, Field(strict=True, ge=0, le=10**12)]
#: Printable ASCII, as idempotency keys and command ids are.
Key = Annotated[str, StringConstraints(strict=True, pattern=r"^[\x21-\x7e]{1,128}$")]
#: A short free text (a reason, an error name).
Text = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=500)]

#: Every status a booking can have. REQUESTED until the payment saga confirms it (CONFIRMED) or gives up (FAILED);
#: the guest may cancel a REQUESTED or CONFIRMED booking (CANCELLED). The last three are final.
Status = Literal["REQUESTED", "CONFIRMED", "CANCELLED", "FAILED"]
#: Currencies whose minor unit is the main unit (ISO 4217 exponent 0); every other currency here has cents.
ZERO_DECIMAL_CURRENCIES = frozenset({"JPY", "KRW", "CLP", "VND"})


def minor_units(amount: Decimal, currency: str) -> int:
    """``amount`` in the main unit as a whole number of minor units: 12.5 EUR -> 1250, 1000 JPY -> 1000."""
    exponent = 0 if currency in ZERO_DECIMAL_CURRENCIES else 2
    return int((amount * 10**exponent).to_integral_value(rounding=ROUND_HALF_EVEN))


def _whole(value: Any) -> Any:
    """DynamoDB numbers arrive as Decimal; a position in a history must be a whole one."""
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        return int(value)
    return value


Position = Annotated[int, Field(strict=True, ge=1), BeforeValidator(_whole)]


class Price(Contract):
    """An amount of money: minor units and the currency."""

    VERSION_FIELD = None

    amount_minor: MinorUnits
    currency: Currency


class RequestedV1(Contract):
    """What a BookingRequested said in version 1: the total as a decimal number in the main unit."""

    VERSION_FIELD = None

    listing_id: ListingId
    guest_id: GuestId
    nights: Annotated[int, Field(strict=True, ge=1, le=365)]
    total: Annotated[Amount, Field(decimal_places=2)]
    currency: Currency


class RequestedV2(Contract):
    """What a BookingRequested says in version 2: the price in minor units."""

    VERSION_FIELD = None

    listing_id: ListingId
    guest_id: GuestId
    nights: Annotated[int, Field(strict=True, ge=1, le=365)]
    price: Price


class Confirmed(Contract):
    """What a BookingConfirmed says: the charge that paid for it."""

    VERSION_FIELD = None

    charge_id: Key
    amount_minor: MinorUnits


class Cancelled(Contract):
    """What a BookingCancelled says: the status the guest cancelled from."""

    VERSION_FIELD = None

    previous_status: Literal["REQUESTED", "CONFIRMED"]
    reason: Text | None = None


class PaymentFailedData(Contract):
    """What a PaymentFailed says: the saga's error (a Step Functions error name) and its cause."""

    VERSION_FIELD = None

    error: Text
    cause: Annotated[str, StringConstraints(strict=True, max_length=2000)] | None = None


class Refunded(Contract):
    """What a PaymentRefunded says: what the guest had been charged for the booking, and what was given back."""

    VERSION_FIELD = None

    refund_id: Key
    charged_minor: MinorUnits
    refunded_minor: MinorUnits


class BookingEvent(Contract):
    """An event item: the fact (``type``, ``data``) and the booking's state after it."""

    VERSION_FIELD = "schema_version"

    aggregate_id: BookingId
    version: Position
    """The event's place in the booking's history: 1 for the request, no gaps."""
    kind: Literal["event"]
    type: str
    schema_version: Annotated[Literal[1], WholeNumber]
    status: Status
    guest_id: GuestId
    amount_minor: MinorUnits
    """The booking's price."""
    currency: Currency
    charged_minor: MinorUnits
    """What the guest has been charged for the booking so far."""
    refunded_minor: MinorUnits
    """What has been given back."""
    occurred_at: UtcTimestampText
    command_id: Key
    """The command that caused the event: the client's idempotency key, or the saga step's."""

    @property
    def balance_minor(self) -> int:
        """What the guest has paid for the booking, net of refunds."""
        return self.charged_minor - self.refunded_minor


class BookingRequestedV1(BookingEvent):
    """A guest asked to book a listing (version 1: the total as a decimal number)."""

    type: Literal["BookingRequested"]
    data: RequestedV1


class BookingRequestedV2(BookingEvent):
    """A guest asked to book a listing (version 2, current: the price in minor units)."""

    type: Literal["BookingRequested"]
    schema_version: Annotated[Literal[2], WholeNumber]  # type: ignore[assignment]
    data: RequestedV2


class BookingConfirmedV1(BookingEvent):
    """The guest was charged and the booking is confirmed."""

    type: Literal["BookingConfirmed"]
    data: Confirmed


class BookingCancelledV1(BookingEvent):
    """The guest cancelled the booking."""

    type: Literal["BookingCancelled"]
    data: Cancelled


class PaymentFailedV1(BookingEvent):
    """The payment saga could not confirm the booking (declined, retries used up): it failed."""

    type: Literal["PaymentFailed"]
    data: PaymentFailedData


class PaymentRefundedV1(BookingEvent):
    """What the guest had been charged for a booking that failed or was cancelled was given back."""

    type: Literal["PaymentRefunded"]
    data: Refunded


def _price_in_minor_units(event: BookingRequestedV1) -> BookingRequestedV2:
    """A version 1 request as version 2: the same booking, its total as minor units (exact: v1 totals had at most 2 decimals)."""
    old = event.data
    data = {
        "listing_id": old.listing_id,
        "guest_id": old.guest_id,
        "nights": old.nights,
        "price": {"amount_minor": minor_units(old.total, old.currency), "currency": old.currency},
    }
    return BookingRequestedV2.Consumer.model_validate({**event.model_dump(exclude={"data"}), "schema_version": 2, "data": data})


BOOKING_REQUESTED = EventKind("BookingRequested", BookingRequestedV2, older=(BookingRequestedV1,), upcasters={1: _price_in_minor_units}, channel=_STORE)
BOOKING_CONFIRMED = EventKind("BookingConfirmed", BookingConfirmedV1, channel=_STORE)
BOOKING_CANCELLED = EventKind("BookingCancelled", BookingCancelledV1, channel=_STORE)
PAYMENT_FAILED = EventKind("PaymentFailed", PaymentFailedV1, channel=_STORE)
PAYMENT_REFUNDED = EventKind("PaymentRefunded", PaymentRefundedV1, channel=_STORE)
STORE_KINDS = (BOOKING_REQUESTED, BOOKING_CONFIRMED, BOOKING_CANCELLED, PAYMENT_FAILED, PAYMENT_REFUNDED)
#: Any event item, by its ``type``, in any schema version, as the current one.
BOOKING_EVENTS = OneOf("type", {kind.name: kind for kind in STORE_KINDS})


class BookingChangedV1(Contract):
    """An event of a booking, on the bus: what happened (``type``) and the booking after it."""

    version: Annotated[Literal[1], WholeNumber]
    booking_id: BookingId
    seq: Position
    """The event's version in the store: 1, 2, 3... per booking."""
    type: Literal["BookingRequested", "BookingConfirmed", "BookingCancelled", "PaymentFailed", "PaymentRefunded"]
    status: Status
    previous_status: Status | None = None
    """The status before the event (none for the request)."""
    guest_id: GuestId
    amount_minor: MinorUnits
    currency: Currency
    charged_minor: MinorUnits
    refunded_minor: MinorUnits
    occurred_at: UtcTimestamp


BOOKING_CHANGED = EventKind("BookingChanged", BookingChangedV1, source=SOURCE, channel=_BUS)

KINDS = (*STORE_KINDS, BOOKING_CHANGED)


class SagaBooking(Contract):
    """The booking as the payment saga carries it (its input's ``booking``): what to charge whom."""

    VERSION_FIELD = None

    booking_id: BookingId
    guest_id: GuestId
    amount_minor: Annotated[int, Field(strict=True, ge=1, le=10**12)]
    currency: Currency
