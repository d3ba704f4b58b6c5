"""Account events: the items of Exercise 04's event store.

The command function appends one item per event; the projection reads them
from the table's stream (INSERTs of ``kind`` ``event``), the rebuild by a scan.
Item values are what DynamoDB's ``TypeDeserializer`` gives (numbers are
Decimals). ``version`` is the event's place in its account's history, not a
schema version: the items have no schema version yet, so they are version 1,
and the first breaking change adds ``schema_version`` (absent meaning 1) and an
upcaster, since stored events are never rewritten.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, StringConstraints, WithJsonSchema

from ._base import Contract, EventKind, OneOf
from .fields import Number, UtcTimestampText

_CHANNEL = "DynamoDB event store of Exercise04EventSourcing: its stream, and scans"


def _whole_number(value: Any) -> Any:
    """DynamoDB numbers arrive as Decimal; a version must be a whole one."""
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        return int(value)
    return value


#: The account id, the table's partition key: never a ``#``, which the snapshot and command marker keys use.
AccountId = Annotated[str, StringConstraints(strict=True, pattern=r"^[A-Za-z0-9_-]{1,64}$")]
#: Money on an account: at most 2 decimal places and 15 digits.
_Money = Annotated[Number, Field(max_digits=15, decimal_places=2)]
#: A positive amount of money moved by one event.
MoneyAmount = Annotated[_Money, Field(gt=0), WithJsonSchema({"type": "number", "exclusiveMinimum": 0})]
#: A balance: never below zero.
Balance = Annotated[_Money, Field(ge=0), WithJsonSchema({"type": "number", "minimum": 0})]
#: Whose account it is: 1 to 200 characters, not blank, no control characters.
Owner = Annotated[str, StringConstraints(strict=True, pattern=r"^[^\x00-\x1f\x7f]*\S[^\x00-\x1f\x7f]*$", max_length=200)]


class Opened(Contract):
    """What an AccountOpened event says."""

    owner: Owner


class Moved(Contract):
    """What a MoneyDeposited or MoneyWithdrawn event says."""

    amount: MoneyAmount


class Closed(Contract):
    """What an AccountClosed event says: nothing."""


class AccountEvent(Contract):
    """An event item: the fact (``type``, ``data``) and the state it leads to (``balance``, ``status``, ``owner``)."""

    VERSION_FIELD = None

    aggregate_id: AccountId
    version: Annotated[int, Field(strict=True, ge=1), BeforeValidator(_whole_number)]
    """The event's place in the account's history: 1 for the first event, no gaps."""
    kind: Literal["event"]
    type: str
    balance: Balance
    status: Literal["open", "closed"]
    owner: Owner | None = None
    """The account's owner after the event; every event the command function writes names it."""
    occurred_at: UtcTimestampText
    """When the event was appended, as the text stored (millisecond precision)."""
    command_id: Annotated[str, StringConstraints(strict=True, pattern=r"^[\x21-\x7e]{1,128}$")]
    """The command that caused the event (the caller's id, or the Lambda request id)."""


class AccountOpenedV1(AccountEvent):
    """An account was opened for an owner."""

    type: Literal["AccountOpened"]
    data: Opened


class MoneyDepositedV1(AccountEvent):
    """Money was paid into an account."""

    type: Literal["MoneyDeposited"]
    data: Moved


class MoneyWithdrawnV1(AccountEvent):
    """Money was taken out of an account."""

    type: Literal["MoneyWithdrawn"]
    data: Moved


class AccountClosedV1(AccountEvent):
    """An account with a zero balance was closed; it accepts no further command."""

    type: Literal["AccountClosed"]
    data: Closed


ACCOUNT_OPENED = EventKind("AccountOpened", AccountOpenedV1, channel=_CHANNEL)
MONEY_DEPOSITED = EventKind("MoneyDeposited", MoneyDepositedV1, channel=_CHANNEL)
MONEY_WITHDRAWN = EventKind("MoneyWithdrawn", MoneyWithdrawnV1, channel=_CHANNEL)
ACCOUNT_CLOSED = EventKind("AccountClosed", AccountClosedV1, channel=_CHANNEL)
#: Any event item, by its ``type``.
ACCOUNT_EVENTS = OneOf("type", {kind.name: kind for kind in (ACCOUNT_OPENED, MONEY_DEPOSITED, MONEY_WITHDRAWN, ACCOUNT_CLOSED)})

KINDS = (ACCOUNT_OPENED, MONEY_DEPOSITED, MONEY_WITHDRAWN, ACCOUNT_CLOSED)
