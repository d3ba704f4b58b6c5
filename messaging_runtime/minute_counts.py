"""Per-minute counts of events and unique users per event type, kept in a Kinesis tumbling window's state.

The aggregator counts each event type's events, late events and unique users
per minute of arrival (the stream's ``approximateArrivalTimestamp``, which the
lake keeps as ``arrival_time``, so an erasure can take a user's share back out).
Unique users are kept as 8-byte hashes of their ids, so a window's state stays
well under Lambda's 1 MB per shard (about 90,000 users per type and minute).
Because every producer partitions the stream by ``user_id``, one user's events
are on one shard: the shards' unique users add up to the stream's (except
across a reshard, when a user's parent and child shards may each count them).

One DynamoDB item per type, minute and window segment, written whole when the
window ends (a retry writes the same item again)::

    pk  "<event_type>#<YYYY-MM-DDTHH:MM>"      sk  "shard#<shard id>#<first sequence number>"
    events, late, users (numbers), expires_at (TTL)

An erasure adds an item ``sk = "erasure#<request id>"`` with the user's share
negated; a minute's totals are the sum of its items (``minute_totals``).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

#: The version of the state's encoding: a state of another version is refused, not misread.
STATE_VERSION = "1"
_HASH_BYTES = 8


def minute_of(moment: datetime) -> str:
    """``YYYY-MM-DDTHH:MM`` in UTC: the minute an aggregate item is for."""
    return moment.strftime("%Y-%m-%dT%H:%M")


def user_hash(user_id: str) -> bytes:
    return hashlib.blake2b(user_id.encode(), digest_size=_HASH_BYTES).digest()


@dataclass
class Tally:
    events: int = 0
    late: int = 0
    users: set[bytes] = field(default_factory=set)


@dataclass
class MinuteCounts:
    """The counts of one window segment, keyed by ``(event_type, minute)``; ``first`` is the segment's first sequence number."""

    tallies: dict[tuple[str, str], Tally] = field(default_factory=dict)
    first: str | None = None

    def add(self, event_type: str, minute: str, user_id: str, *, late: bool, sequence_number: str) -> None:
        tally = self.tallies.setdefault((event_type, minute), Tally())
        tally.events += 1
        tally.late += late
        tally.users.add(user_hash(user_id))
        if self.first is None:
            self.first = sequence_number

    def to_state(self) -> dict[str, str]:
        """The window's state for Lambda: text values only."""
        state = {"v": STATE_VERSION}
        if self.first is not None:
            state["first"] = self.first
        for (event_type, minute), tally in self.tallies.items():
            users = base64.b64encode(b"".join(sorted(tally.users))).decode()
            state[f"{event_type}|{minute}"] = f"{tally.events}|{tally.late}|{users}"
        return state

    @classmethod
    def from_state(cls, state: Mapping[str, Any] | None) -> MinuteCounts:
        """The counts a window's state holds (an empty or missing state: none); ValueError for a state this did not write."""
        if not state:
            return cls()
        if state.get("v") != STATE_VERSION:
            raise ValueError(f"window state of version {state.get('v')!r}, expected {STATE_VERSION}")
        counts = cls(first=state.get("first"))
        for key, value in state.items():
            if key in ("v", "first"):
                continue
            event_type, minute = key.split("|")
            events, late, users = str(value).split("|")
            packed = base64.b64decode(users)
            counts.tallies[(event_type, minute)] = Tally(int(events), int(late), {packed[i : i + _HASH_BYTES] for i in range(0, len(packed), _HASH_BYTES)})
        return counts

    def items(self, shard_id: str, expires_at: int) -> list[dict[str, Any]]:
        """The DynamoDB items (low-level format) of this segment."""
        return [
            {
                "pk": {"S": f"{event_type}#{minute}"},
                "sk": {"S": f"shard#{shard_id}#{self.first}"},
                "events": {"N": str(tally.events)},
                "late": {"N": str(tally.late)},
                "users": {"N": str(len(tally.users))},
                "expires_at": {"N": str(expires_at)},
            }
            for (event_type, minute), tally in sorted(self.tallies.items())
        ]


def erasure_items(request_id: str, shares: Iterable[tuple[str, str, int, int]], expires_at: int) -> list[dict[str, Any]]:
    """The items that take one user's share out of the aggregates: for each ``(event_type, minute, events, late)`` they
    had, that many events and late events and one unique user, negated."""
    return [
        {
            "pk": {"S": f"{event_type}#{minute}"},
            "sk": {"S": f"erasure#{request_id}"},
            "events": {"N": str(-events)},
            "late": {"N": str(-late)},
            "users": {"N": "-1"},
            "expires_at": {"N": str(expires_at)},
        }
        for event_type, minute, events, late in shares
    ]


def minute_totals(items: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """The totals of one minute's items (low-level format): ``events``, ``late`` and ``users``."""
    totals = {"events": 0, "late": 0, "users": 0}
    for item in items:
        for name in totals:
            totals[name] += int(item[name]["N"])
    return totals
