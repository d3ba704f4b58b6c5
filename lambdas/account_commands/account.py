"""The account aggregate: its commands, its events and the rules between them.

Nothing here does I/O, reads the clock or the environment, so the rules can
be tested on their own, example by example or with generated histories:

- ``parse_command(raw)`` turns the invocation payload into a command, or a
  ``Rejection`` with the code ``InvalidCommand`` naming the fields at fault;
- ``decide(state, command)`` returns the events the command leads to, or a
  ``Rejection`` when a rule forbids it;
- ``evolve(state, event)`` returns the state after one event; ``fold`` runs
  it over a history.

The rules:

- ``open`` opens an account for an owner; opening one that is open is
  ``AccountExists``.
- ``deposit`` and ``withdraw`` move a positive amount with at most two
  decimal places; a withdrawal larger than the balance is
  ``InsufficientFunds``, so the balance never goes below zero.
- ``close`` closes an account whose balance is zero. An account with money
  in it is not closed (``BalanceNotZero``): the money has to be withdrawn
  first, so closing never moves money on its own and a closed account holds
  none.
- A closed account accepts no command at all, ``open`` included
  (``AccountClosed``); an account id is never reused.
- Any command but ``open`` on an account that was never opened is
  ``AccountNotFound``.
"""

import functools
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Annotated, Any, Iterable, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError

from messaging_runtime.contracts.accounts import AccountId, MoneyAmount, Owner

OPEN = "open"
CLOSED = "closed"
COMMAND_NAMES = ("open", "deposit", "withdraw", "close")
ZERO = Decimal("0")
CENT = Decimal("0.01")

# Error codes a caller can get back.
INVALID_COMMAND = "InvalidCommand"
ACCOUNT_EXISTS = "AccountExists"
ACCOUNT_NOT_FOUND = "AccountNotFound"
ACCOUNT_CLOSED = "AccountClosed"
INSUFFICIENT_FUNDS = "InsufficientFunds"
BALANCE_NOT_ZERO = "BalanceNotZero"
CONFLICT = "Conflict"


# --- commands -----------------------------------------------------------------
#
# The fields the events carry on (account id, owner, amount) have the event
# contract's types (``messaging_runtime.contracts.accounts``), so a command is
# refused for exactly what its event could not store.

#: Printable ASCII, as the contract's ``command_id``; the Lambda request id when the caller gives none.
CommandId = Annotated[str, StringConstraints(strict=True, pattern=r"^[\x21-\x7e]{1,128}$")]


class _Command(BaseModel):
    model_config = ConfigDict(strict=True, frozen=True, extra="forbid")

    account_id: AccountId
    command_id: CommandId | None = None


class OpenAccount(_Command):
    command: Literal["open"]
    owner: Owner


class Deposit(_Command):
    command: Literal["deposit"]
    amount: MoneyAmount


class Withdraw(_Command):
    command: Literal["withdraw"]
    amount: MoneyAmount


class CloseAccount(_Command):
    command: Literal["close"]


Command = Union[OpenAccount, Deposit, Withdraw, CloseAccount]
_COMMAND: TypeAdapter[Command] = TypeAdapter(Annotated[Command, Field(discriminator="command")])


@dataclass(frozen=True)
class Rejection:
    """A command the rules refuse: nothing is written and the caller gets the code and message."""

    code: str
    message: str


def parse_command(raw: Any) -> Command | Rejection:
    """The command in an invocation payload, or an ``InvalidCommand`` rejection naming every bad field."""
    if not isinstance(raw, dict):
        return Rejection(INVALID_COMMAND, f"The command must be a JSON object, got {type(raw).__name__}.")
    if raw.get("command") not in COMMAND_NAMES:
        return Rejection(INVALID_COMMAND, f"command: must be one of {', '.join(COMMAND_NAMES)}.")
    try:
        return _COMMAND.validate_python(raw)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False, include_input=False):
            location = error["loc"][1:]  # the first part is the command's tag
            problems.append(f"{'.'.join(str(part) for part in location) or 'command'}: {error['msg']}")
        return Rejection(INVALID_COMMAND, f"Invalid {raw['command']} command: {'; '.join(problems)}.")


# --- events and state ---------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """One fact in an account's history. ``data`` holds what the type needs:
    ``owner`` for AccountOpened, ``amount`` (a Decimal) for the money events."""

    type: str
    version: int
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AccountState:
    """An account after the events up to ``version``; version 0 and status None: never opened."""

    version: int = 0
    status: str | None = None
    balance: Decimal = ZERO
    owner: str | None = None


class CorruptHistory(ValueError):
    """The stored history cannot be folded: a gap in the versions or an unknown event."""


def evolve(state: AccountState, event: Event) -> AccountState:
    """The state after ``event``. Events are facts: no business rule is checked here, only that the history is whole."""
    if event.version != state.version + 1:
        raise CorruptHistory(f"event version {event.version} follows version {state.version}")
    if event.type == "AccountOpened":
        return AccountState(version=event.version, status=OPEN, balance=ZERO, owner=_data(event, "owner", str))
    if event.type == "MoneyDeposited":
        return AccountState(event.version, state.status, state.balance + _data(event, "amount", Decimal), state.owner)
    if event.type == "MoneyWithdrawn":
        return AccountState(event.version, state.status, state.balance - _data(event, "amount", Decimal), state.owner)
    if event.type == "AccountClosed":
        return AccountState(event.version, CLOSED, state.balance, state.owner)
    raise CorruptHistory(f"unknown event type {event.type!r} at version {event.version}")


def _data(event: Event, name: str, kind: type) -> Any:
    value = event.data.get(name) if isinstance(event.data, dict) else None
    if not isinstance(value, kind):
        raise CorruptHistory(f"{event.type} at version {event.version} has no valid {name}")
    return value


def fold(events: Iterable[Event], state: AccountState | None = None) -> AccountState:
    """The state after every event, starting from ``state`` (a snapshot) or from nothing."""
    return functools.reduce(evolve, events, state if state is not None else AccountState())


def money(amount: Decimal) -> str:
    """An amount as text with two decimal places: "12.50"."""
    return str(amount.quantize(CENT))


def decide(state: AccountState, command: Command) -> list[Event] | Rejection:
    """The events ``command`` leads to on an account in ``state``, or why it is refused."""
    account = command.account_id
    version = state.version + 1
    if state.status == CLOSED:
        return Rejection(ACCOUNT_CLOSED, f"Account {account} is closed and accepts no further commands.")
    if isinstance(command, OpenAccount):
        if state.status == OPEN:
            return Rejection(ACCOUNT_EXISTS, f"Account {account} already exists.")
        return [Event("AccountOpened", version, {"owner": command.owner})]
    if state.status != OPEN:
        return Rejection(ACCOUNT_NOT_FOUND, f"Account {account} does not exist; open it first.")
    if isinstance(command, Deposit):
        return [Event("MoneyDeposited", version, {"amount": command.amount})]
    if isinstance(command, Withdraw):
        if command.amount > state.balance:
            return Rejection(
                INSUFFICIENT_FUNDS,
                f"Cannot withdraw {money(command.amount)} from account {account}: its balance is {money(state.balance)}.",
            )
        return [Event("MoneyWithdrawn", version, {"amount": command.amount})]
    if state.balance != ZERO:
        return Rejection(
            BALANCE_NOT_ZERO,
            f"Account {account} still holds {money(state.balance)}; withdraw it before closing the account.",
        )
    return [Event("AccountClosed", version, {})]


# --- snapshots ----------------------------------------------------------------


def snapshot_due(version: int, every: int) -> bool:
    """Whether the event at ``version`` is followed by a snapshot; ``every`` 0 means never."""
    return every > 0 and version % every == 0


def snapshot_state(state: AccountState) -> dict[str, Any]:
    """What a snapshot item stores under ``state``; its version is the item's sort key."""
    return {"balance": state.balance, "status": state.status, "owner": state.owner}


def state_from_snapshot(version: int, stored: Any) -> AccountState:
    """The state a snapshot item holds, checked: a snapshot that does not read is a corrupt history."""
    if (
        not isinstance(stored, dict)
        or not isinstance(stored.get("balance"), Decimal)
        or stored.get("status") not in (OPEN, CLOSED)
        or not isinstance(stored.get("owner"), str)
        or version < 1
    ):
        raise CorruptHistory(f"snapshot at version {version} is not a valid account state")
    return AccountState(version=version, status=stored["status"], balance=stored["balance"], owner=stored["owner"])
