"""Clickstream events on the MSK topic ``clickstream`` (Exercise 03).

Each event is one Kafka record whose key is the ``user_id`` (so a user's events
stay in order on one partition) and whose value is the event as JSON.
"""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from pydantic import StringConstraints

from ._base import Contract, EventKind
from .fields import UtcTimestamp, WholeNumber

ACTIONS = ("view", "click", "add_to_cart", "purchase")


class ClickV1(Contract):
    """One thing a user did on the site."""

    VERSION_FIELD = "schema_version"

    schema_version: Annotated[Literal[1], WholeNumber]
    event_id: UUID
    user_id: Annotated[str, StringConstraints(strict=True, pattern=r"^u-\S+$", max_length=128)]
    """``u-`` and at least one character that is not white space; the record's key."""
    session_id: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=128)]
    page: Annotated[str, StringConstraints(strict=True, pattern=r"^/\S*$", max_length=2048)]
    """The page's path: ``/`` and no white space."""
    action: Literal["view", "click", "add_to_cart", "purchase"]
    occurred_at: UtcTimestamp

    def record_key(self) -> bytes:
        """The Kafka record key: the user id."""
        return self.user_id.encode()


CLICK = EventKind("Click", ClickV1, channel="MSK topic clickstream (Exercise03Streaming)")

KINDS = (CLICK,)
