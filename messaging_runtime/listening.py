"""CaseSpotify's lake: one Iceberg table per event type, its personal fields sealed under the user's own key.

Each family's stream goes to its own tables: ``plays`` and ``skips`` (playback),
``likes`` and ``searches`` (interaction), and a quarantine table per family
for records that are not events of that family. A row keeps in the clear only
what says nothing about a person by itself: the event id and type, the times
(``event_date`` is the partition) and the ``key_id``, a random id of the
user's data key (a pseudonym that stops pointing at anyone once the key is
erased). Everything else that the event says about the listener (who, which
track, how long, what they searched for, device, country) is sealed with
``crypto_shredding.seal`` under the user's key, the row's ``event_id`` and the
column's name as associated data.

A quarantined record's payload is sealed under the key of the user it names
(``user_id`` at the top of its JSON, when that is a valid user id); one that
names none cannot be tied to a user and is kept as it came.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import TypeAdapter, ValidationError

from .contracts.analytics import UserId
from .contracts.listening import FAMILIES, FAMILY_KINDS, ListeningEventV1
from .crypto_shredding import AESGCM, open_value, seal
from .lake import timestamp_text, user_named_in
from .rejection import Rejected, validation_reason

#: Each event type's table.
TABLES = {"play": "plays", "skip": "skips", "like": "likes", "search": "searches"}
#: The personal fields of each event type, sealed in its table's columns of the same names.
SEALED_FIELDS: dict[str, tuple[str, ...]] = {
    "play": ("user_id", "track_id", "ms_played", "device", "country"),
    "skip": ("user_id", "track_id", "ms_played", "device", "country"),
    "like": ("user_id", "track_id", "device", "country"),
    "search": ("user_id", "query", "device", "country"),
}
CLEAR_COLUMNS = ("event_id", "event_type", "event_date", "event_time", "arrival_time", "key_id", "schema_version")
PARTITIONS = ("event_date",)
QUARANTINE_COLUMNS = ("record_id", "quarantine_date", "arrival_time", "reason", "key_id", "payload")
QUARANTINE_PARTITIONS = ("quarantine_date",)

_USER_ID: TypeAdapter[str] = TypeAdapter(UserId)


def quarantine_table(family: str) -> str:
    return f"{family}_quarantine"


def family_tables(family: str) -> list[str]:
    """The tables a family's delivery writes: one per event type, then its quarantine."""
    return [*(TABLES[t] for t in FAMILIES[family]), quarantine_table(family)]


def columns(table: str) -> list[tuple[str, str]]:
    """``table``'s columns (name, Athena type): the sealed ones are text, like the times."""
    if table.endswith("_quarantine"):
        return [(name, "string") for name in QUARANTINE_COLUMNS]
    (event_type,) = [t for t, name in TABLES.items() if name == table]
    return [(name, "int" if name == "schema_version" else "string") for name in (*CLEAR_COLUMNS, *SEALED_FIELDS[event_type])]


def partitions(table: str) -> tuple[str, ...]:
    return QUARANTINE_PARTITIONS if table.endswith("_quarantine") else PARTITIONS


def read_event(data: bytes, family: str) -> ListeningEventV1:
    """One stream record's data as an event of ``family``; ``Rejected`` with the reason otherwise."""
    try:
        event: ListeningEventV1 = FAMILY_KINDS[family].parse(data)  # type: ignore[assignment]
    except ValidationError as error:
        raise Rejected(validation_reason(error, root="event")) from None
    except Exception as error:  # anything else that stops one record being read is that record's reason
        raise Rejected(f"the record cannot be read: {type(error).__name__}: {error}") from None
    if event.event_type not in FAMILIES[family]:
        raise Rejected(f"a {event.event_type} event does not belong on the {family} stream ({', '.join(FAMILIES[family])})")
    return event


def _text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def event_row(event: ListeningEventV1, arrived: datetime, key_id: str, aead: AESGCM) -> dict[str, Any]:
    """The row of ``event`` in its type's table, its personal fields sealed under the user's key ``key_id``."""
    row_id = str(event.event_id)
    row: dict[str, Any] = {
        "event_id": row_id,
        "event_type": event.event_type,
        "event_date": event.event_time.astimezone(UTC).date().isoformat(),
        "event_time": timestamp_text(event.event_time),
        "arrival_time": timestamp_text(arrived),
        "key_id": key_id,
        "schema_version": event.schema_version,
    }
    for name in SEALED_FIELDS[event.event_type]:
        row[name] = seal(aead, key_id, name, row_id, _text(getattr(event, name)))
    return row


def valid_user_named_in(data: bytes) -> str | None:
    """The ``user_id`` a payload names, when it is a valid user id (so that the payload can be sealed under its key)."""
    user = user_named_in(data)
    if user is None:
        return None
    try:
        _USER_ID.validate_python(user)
    except ValidationError:
        return None
    return user


def quarantine_row(record_id: str, data: bytes, reason: str, arrived: datetime, key: tuple[str, AESGCM] | None) -> dict[str, Any]:
    """The quarantine row of a record that is not an event of the family; its payload sealed when ``key`` is given."""
    try:
        payload = data.decode()
    except UnicodeDecodeError:
        payload = "base64:" + base64.b64encode(data).decode()
    key_id = None
    if key is not None:
        key_id, aead = key
        payload = seal(aead, key_id, "payload", record_id, payload)
    return {
        "record_id": record_id,
        "quarantine_date": arrived.date().isoformat(),
        "arrival_time": timestamp_text(arrived),
        "reason": reason,
        "key_id": key_id,
        "payload": payload,
    }


def open_row(table: str, row: Mapping[str, Any], key_for: Callable[[str], AESGCM]) -> dict[str, str]:
    """The sealed fields of ``row`` (of ``table``) opened with its user's key (``key_for(key_id)``).

    Raises ``KeyErased`` when the key is gone, ``InvalidTag`` when a value was not sealed for this user, column and row.
    """
    (event_type,) = [t for t, name in TABLES.items() if name == table]
    key_id, row_id = row["key_id"], row["event_id"]
    aead = key_for(key_id)
    return {name: open_value(aead, key_id, name, row_id, row[name]) for name in SEALED_FIELDS[event_type]}
