"""A stand-in for a consumer team's own service (its store, index or model feature): ``deliver`` one event.

A deployment replaces this module with the team's client, keeping the call and its errors. Like a real service that
takes an idempotency key, it keeps one delivery per event id: a repeated delivery returns the first one's answer.
Deliveries are kept in memory, per Lambda instance, which is enough for a stand-in.

Knobs, for trying the isolation and the circuit breaker out: SINK_FAILURE_RATE (default 0: the share of calls, 0 to
1, that raise ``SinkUnavailable`` instead of answering) and SINK_LATENCY_MS (default 0: how long each call takes).
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from typing import Any


class SinkUnavailable(ConnectionError):
    """The team's service did not answer: the event may be delivered again."""


class TeamSink:
    """The stand-in's API. :param failure_rate: share of calls that fail. :param latency_seconds: time each call takes."""

    def __init__(self, failure_rate: float = 0, latency_seconds: float = 0, chance: Callable[[], float] = random.random) -> None:
        self.failure_rate, self.latency_seconds, self.chance = failure_rate, latency_seconds, chance
        self.delivered: dict[str, dict[str, Any]] = {}  # by event id
        self.calls = 0

    @classmethod
    def from_environment(cls) -> TeamSink:
        return cls(failure_rate=float(os.environ.get("SINK_FAILURE_RATE", "0")), latency_seconds=int(os.environ.get("SINK_LATENCY_MS", "0")) / 1000)

    def deliver(self, event_id: str, kind: str, detail: dict[str, Any]) -> bool:
        """Take one event: True when it is new, False when ``event_id`` was delivered before (nothing is done twice)."""
        self.calls += 1
        if self.latency_seconds:
            time.sleep(self.latency_seconds)
        if self.failure_rate and self.chance() < self.failure_rate:
            raise SinkUnavailable("the team's service did not answer")
        if event_id in self.delivered:
            return False
        self.delivered[event_id] = {"kind": kind, **detail}
        return True
