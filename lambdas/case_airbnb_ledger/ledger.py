"""The ledger read model: one item per booking with what the guest was charged, refunded, and owes nothing more of.

Both entry points of this folder use it: the stream consumer (``handler.py``) applies events as they are appended,
the rebuild (``ledger_rebuild.py``) every event in the store. Every event item carries the booking's state after
it, so applying an event is one conditional UpdateItem that copies that state unless the item already shows this
version or a newer one (``messaging_runtime.event_sourcing.apply_newest``): duplicates and events older than the read
model change nothing, so the result depends neither on the order nor on the number of deliveries.

An item is read with its contract in any schema version (``BookingRequested`` version 1 is upcast to version 2), so
a rebuild reads the store's oldest items as the stream consumer read the newest.

The read model item:
    booking_id        the booking (partition key)
    status            REQUESTED, CONFIRMED, CANCELLED or FAILED
    guest_id, currency, amount_minor       the booking and its price
    charged_minor, refunded_minor, balance_minor   the money: balance = charged - refunded (what the guest paid, net)
    last_version, last_event_type          the newest event applied
    updated_at        its ``occurred_at``, so a rebuild writes the same item
"""

from typing import Any

from messaging_runtime.contracts.bookings import BOOKING_EVENTS, BookingEvent
from messaging_runtime.event_sourcing import apply_newest, whole_numbers
from messaging_runtime.rejection import parse_object


def parse_item(item: dict[str, Any]) -> BookingEvent:
    """The event an item (values as TypeDeserializer gives them) holds, in the consumer's view of its contract's current
    version; ``Rejected`` otherwise."""
    return parse_object(BOOKING_EVENTS, whole_numbers(item), what="the item")


def apply(dynamodb: Any, table_name: str, event: BookingEvent) -> bool:
    """Make the ledger show the booking after ``event``, unless it shows that version or a newer one. True when it changed."""
    fields = {
        "status": event.status,
        "guest_id": event.guest_id,
        "currency": event.currency,
        "amount_minor": event.amount_minor,
        "charged_minor": event.charged_minor,
        "refunded_minor": event.refunded_minor,
        "balance_minor": event.balance_minor,
        "last_event_type": event.type,
        "updated_at": event.occurred_at,
    }
    return apply_newest(dynamodb, table_name, {"booking_id": event.aggregate_id}, event.version, fields)
