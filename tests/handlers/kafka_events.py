"""Kafka events as an Amazon MSK event source mapping passes them to a function, and click events to put in them.

The shape (Lambda developer guide, "Using Lambda with Amazon MSK", example
event): ``records`` maps ``"<topic>-<partition>"`` to that partition's records
in offset order; ``key`` and ``value`` are base64 text, and each is absent
from the JSON when it is ``null`` (a record without a key; a tombstone, whose
value is null); each header is a one-entry object whose value is the header's
bytes as a list of integers.
"""

import base64
import itertools
import json
import time
import uuid
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from typing import Any

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"
CLUSTER_ARN = f"arn:aws:kafka:{REGION}:{ACCOUNT_ID}:cluster/clickstream/7d1f0a52-3c2b-4e8e-9b7a-5a6f3e2d1c0b-2"
BOOTSTRAP_SERVERS = "b-1.clickstream.a1bcde.c2.kafka.us-east-1.amazonaws.com:9098,b-2.clickstream.a1bcde.c2.kafka.us-east-1.amazonaws.com:9098"
TOPIC = "clickstream"
ACTIONS = ("view", "click", "add_to_cart", "purchase")

_clock = itertools.count()
_start = datetime(2025, 3, 14, 9, 0, tzinfo=timezone.utc)


def click(user_id: str, **overrides: Any) -> dict[str, Any]:
    """A valid click event for ``user_id``; keyword arguments override fields (``None`` removes one)."""
    moment = _start + timedelta(seconds=next(_clock))
    event = {
        "schema_version": 1,
        "event_id": str(uuid.uuid4()),
        "user_id": user_id,
        "session_id": f"s-{uuid.uuid4().hex[:8]}",
        "page": "/products/42",
        "action": "view",
        "occurred_at": moment.isoformat().replace("+00:00", "Z"),
    }
    event.update(overrides)
    return {name: value for name, value in event.items() if value is not None}


def _b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def header(name: str, value: bytes | str) -> dict[str, list[int]]:
    return {name: list(value.encode() if isinstance(value, str) else value)}


def record(
    *,
    offset: int,
    partition: int = 0,
    topic: str = TOPIC,
    key: bytes | str | None = None,
    value: bytes | str | dict[str, Any] | None = None,
    raw_key: str | None = None,
    raw_value: str | None = None,
    headers: list[dict[str, list[int]]] | None = None,
    timestamp_ms: int | None = None,
) -> dict[str, Any]:
    """One record. ``value`` as a dict is JSON-encoded, None makes a tombstone; ``raw_key``/``raw_value`` go in as they are (for text that is not base64)."""
    if isinstance(value, dict):
        value = json.dumps(value)
    entry: dict[str, Any] = {
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "timestamp": timestamp_ms if timestamp_ms is not None else int(time.time() * 1000),
        "timestampType": "CREATE_TIME",
        "headers": headers if headers is not None else [header("content-type", "application/json")],
    }
    encoded_value = raw_value if raw_value is not None else (None if value is None else _b64(value))
    if encoded_value is not None:  # Lambda leaves a null value out, as it does a null key
        entry["value"] = encoded_value
    encoded_key = raw_key if raw_key is not None else (None if key is None else _b64(key))
    if encoded_key is not None:
        entry["key"] = encoded_key
    return entry


def click_record(event: dict[str, Any], *, offset: int, partition: int = 0, topic: str = TOPIC, **options: Any) -> dict[str, Any]:
    """A record carrying ``event``, keyed by its user_id as the producer keys it."""
    options.setdefault("key", event.get("user_id"))
    return record(offset=offset, partition=partition, topic=topic, value=event, **options)


def event(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The invocation event: records grouped under ``<topic>-<partition>``, in the order given."""
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in records:
        grouped[f"{entry['topic']}-{entry['partition']}"].append(entry)
    return {
        "eventSource": "aws:kafka",
        "eventSourceArn": CLUSTER_ARN,
        "bootstrapServers": BOOTSTRAP_SERVERS,
        "records": dict(grouped),
    }


def failure(entry: dict[str, Any]) -> dict[str, Any]:
    """The batchItemFailures entry naming ``entry``."""
    return {"itemIdentifier": {"partition": f"{entry['topic']}-{entry['partition']}", "offset": entry["offset"]}}


def flattened(kafka_event: dict[str, Any]) -> list[dict[str, Any]]:
    """The records in the order the function walks them: partition after partition, each in offset order."""
    return [entry for entries in kafka_event["records"].values() for entry in entries]


def failures(kafka_event: dict[str, Any], *entries: dict[str, Any]) -> dict[str, Any]:
    """The partial batch response naming ``entries`` of ``kafka_event``, in the event's order."""
    order = {id(entry): position for position, entry in enumerate(flattened(kafka_event))}
    missing = [entry for entry in entries if id(entry) not in order]
    assert not missing, f"not in the event: {missing}"
    return {"batchItemFailures": [failure(entry) for entry in sorted(entries, key=lambda entry: order[id(entry)])]}
