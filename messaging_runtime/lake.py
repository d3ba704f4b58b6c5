"""The analytics lake's tables and what goes in them: one row per event, one per record that is not an event.

Two Apache Iceberg tables in one Glue database, written by Amazon Data Firehose
from the events stream through a transformation function that reads every
record with the ``AnalyticsEvent`` contract:

- ``events``: one row per event, partitioned by ``event_date`` and
  ``event_type`` (identity partitions: a query for a day and a type reads only
  that folder). ``arrival_time`` is when the stream received the record;
  ``event_time`` when the producer says it happened.
- ``quarantine``: one row per record that is not a valid event, with the
  reason, the payload as it came and, when the payload names one, the
  ``user_id`` (so that an erasure finds it), partitioned by ``quarantine_date``.

Timestamps are written as ISO 8601 text in UTC with microseconds
(``2026-12-01T10:00:00.123456Z``) and read with ``from_iso8601_timestamp`` in
the named queries: the same text whichever engine or writer, and never a time
zone bug between Firehose's JSON conversion and the reader. Dates are
``YYYY-MM-DD`` text (the partition values).

An event is late when it arrives more than ``LATE_AFTER`` after its event
time: kept in the lake like any other, counted by the aggregates and the
late-arriving-share query.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from .contracts.analytics import ANALYTICS_EVENT, AnalyticsEventV1
from .rejection import Rejected, validation_reason

EVENTS_TABLE = "events"
QUARANTINE_TABLE = "quarantine"
#: An event that arrives later than this after its event time is late.
LATE_AFTER = timedelta(minutes=5)
#: The longest payload kept whole in quarantine (characters); a longer one is cut there, its length noted in the reason.
MAX_QUARANTINED_PAYLOAD = 65_536

#: The ``events`` table's columns, in order: name, Iceberg type, whether a row always has it.
EVENT_COLUMNS: tuple[tuple[str, str, bool], ...] = (
    ("event_id", "string", True),
    ("event_type", "string", True),
    ("event_date", "string", True),
    ("event_time", "string", True),
    ("arrival_time", "string", True),
    ("user_id", "string", True),
    ("platform", "string", True),
    ("session_id", "string", False),
    ("page", "string", False),
    ("device_id", "string", False),
    ("properties", "string", True),
    ("schema_version", "int", True),
)
EVENT_PARTITIONS = ("event_date", "event_type")

QUARANTINE_COLUMNS: tuple[tuple[str, str, bool], ...] = (
    ("record_id", "string", True),
    ("quarantine_date", "string", True),
    ("arrival_time", "string", True),
    ("reason", "string", True),
    ("payload", "string", True),
    ("user_id", "string", False),
)
QUARANTINE_PARTITIONS = ("quarantine_date",)


def timestamp_text(moment: datetime) -> str:
    """``moment`` as the lake writes a time: UTC, four-digit year, microseconds, ``Z`` (text sorts as time does)."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def arrival(milliseconds: Any) -> datetime:
    """The stream's ``approximateArrivalTimestamp`` (milliseconds since 1970 in a Firehose record, seconds in a Lambda
    Kinesis record: pass seconds * 1000) as a time."""
    if isinstance(milliseconds, bool) or not isinstance(milliseconds, (int, float)):
        raise ValueError(f"approximateArrivalTimestamp must be a number, got {milliseconds!r}")
    return datetime.fromtimestamp(milliseconds / 1000, UTC)


def read_event(data: bytes) -> AnalyticsEventV1:
    """One stream record's data as an event; ``Rejected`` with the reason (no payload values in it) otherwise."""
    try:
        return ANALYTICS_EVENT.parse(data)  # type: ignore[return-value]
    except ValidationError as error:
        raise Rejected(validation_reason(error, root="event")) from None
    except Exception as error:  # anything else that stops one record being read is that record's reason
        raise Rejected(f"the record cannot be read: {type(error).__name__}: {error}") from None


def is_late(event: AnalyticsEventV1, arrived: datetime) -> bool:
    return arrived - event.event_time > LATE_AFTER


def event_row(event: AnalyticsEventV1, arrived: datetime) -> dict[str, Any]:
    """The ``events`` row of ``event``, received by the stream at ``arrived``."""
    properties = json.loads(event.model_dump_json(include={"properties"}))["properties"]
    return {
        "event_id": str(event.event_id),
        "event_type": event.event_type,
        "event_date": event.event_time.astimezone(UTC).date().isoformat(),
        "event_time": timestamp_text(event.event_time),
        "arrival_time": timestamp_text(arrived),
        "user_id": event.user_id,
        "platform": event.platform,
        "session_id": event.session_id,
        "page": event.page,
        "device_id": event.device_id,
        "properties": json.dumps(properties, sort_keys=True, separators=(",", ":")),
        "schema_version": event.schema_version,
    }


def quarantine_row(record_id: str, data: bytes, reason: str, arrived: datetime) -> dict[str, Any]:
    """The ``quarantine`` row of a record that is not an event: its payload as text (``base64:`` and the bytes when
    they are not UTF-8), the reason, and the ``user_id`` its JSON names, if any (what an erasure looks for)."""
    try:
        payload = data.decode()
    except UnicodeDecodeError:
        payload = "base64:" + base64.b64encode(data).decode()
    if len(payload) > MAX_QUARANTINED_PAYLOAD:
        reason = f"{reason} (payload of {len(payload)} characters cut to {MAX_QUARANTINED_PAYLOAD})"
        payload = payload[:MAX_QUARANTINED_PAYLOAD]
    return {
        "record_id": record_id,
        "quarantine_date": arrived.date().isoformat(),
        "arrival_time": timestamp_text(arrived),
        "reason": reason,
        "payload": payload,
        "user_id": user_named_in(data),
    }


def user_named_in(data: bytes) -> str | None:
    """The ``user_id`` a JSON object names at its top level, when it is text; None otherwise."""
    try:
        document = json.loads(data)
    except (ValueError, RecursionError):  # not JSON, or nested deeper than the parser goes (it was quarantined for that)
        return None
    user = document.get("user_id") if isinstance(document, Mapping) else None
    return user if isinstance(user, str) and 0 < len(user) <= 256 else None


@dataclass
class Buffer:
    """Firehose's answer to one transformation buffer: a record each, in order, with what became of them.

    ``answers`` are Firehose's ``records[]`` (``Ok`` with the row and the Iceberg table it is routed to, or
    ``Dropped``); ``counts`` the rows written, the records quarantined and the duplicates dropped; ``events`` each
    event written with the time the stream received it.
    """

    answers: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: {"RowsWritten": 0, "RecordsQuarantined": 0, "DuplicatesDropped": 0})
    events: list[tuple[Any, datetime]] = field(default_factory=list)


def answer(record_id: str, row: Mapping[str, Any], database: str, table: str) -> dict[str, Any]:
    """Firehose's ``Ok`` answer for a record: the row as JSON, routed to ``database.table`` (``otfMetadata``)."""
    return {
        "recordId": record_id,
        "result": "Ok",
        "data": base64.b64encode(json.dumps(row, separators=(",", ":")).encode()).decode(),
        "metadata": {"otfMetadata": {"destinationDatabaseName": database, "destinationTableName": table, "operation": "insert"}},
    }


def buffer_records(event: Any) -> list[dict[str, Any]]:
    """The ``records`` of a Firehose transformation event; ValueError when it is not one (each record needs a ``recordId``)."""
    records = event.get("records") if isinstance(event, dict) else None
    if not isinstance(records, list) or not all(isinstance(r, dict) and isinstance(r.get("recordId"), str) for r in records):
        raise ValueError("expected a Firehose transformation event: records[] each with a recordId")
    return records


def transform_buffer(
    records: list[dict[str, Any]],
    now: datetime,
    *,
    database: str,
    read: Callable[[bytes], Any],
    row: Callable[[Any, datetime], tuple[Mapping[str, Any], str]],
    quarantine: Callable[[str, bytes, str, datetime], tuple[Mapping[str, Any], str]],
    logger: Any = None,
) -> Buffer:
    """Answer a Firehose transformation buffer of a Kinesis source: every record once, in order, nothing lost.

    ``read`` turns a record's bytes into an event (``Rejected`` when they are not one); ``row`` makes the event's row
    and names its table; ``quarantine(where, data, reason, arrived)`` does the same for a record that is not an event
    (``where`` is ``<shard>/<sequence number>``), logged first as a warning with ``logger`` when one is given. A second copy of an event id
    in the buffer is ``Dropped``. A record's arrival is ``approximateArrivalTimestamp``, or ``now`` when it has none.
    """
    buffer, seen = Buffer(), set()
    for record in records:
        record_id = record["recordId"]
        metadata = record.get("kinesisRecordMetadata") or {}
        where = f"{metadata.get('shardId', '?')}/{metadata.get('sequenceNumber', record_id)}"
        try:
            arrived = arrival(record.get("approximateArrivalTimestamp"))
        except (ValueError, OverflowError, OSError):  # absent, or out of any calendar: the time it is handled
            arrived = now
        try:
            data = base64.b64decode(record.get("data") or "", validate=True)
        except (binascii.Error, ValueError, TypeError):
            data, reason = str(record.get("data")).encode(), "the record's data is not base64"
        else:
            try:
                event = read(data)
            except Rejected as rejected:
                reason = rejected.reason
            else:
                if event.event_id in seen:
                    buffer.answers.append({"recordId": record_id, "result": "Dropped", "data": record["data"]})
                    buffer.counts["DuplicatesDropped"] += 1
                    continue
                seen.add(event.event_id)
                made, table = row(event, arrived)
                buffer.answers.append(answer(record_id, made, database, table))
                buffer.counts["RowsWritten"] += 1
                buffer.events.append((event, arrived))
                continue
        if logger is not None:
            logger.warning("Record quarantined", extra={"record": where, "reason": reason})
        quarantined, table = quarantine(where, data, reason, arrived)
        buffer.answers.append(answer(record_id, quarantined, database, table))
        buffer.counts["RecordsQuarantined"] += 1
    return buffer
