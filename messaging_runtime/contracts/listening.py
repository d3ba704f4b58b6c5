"""Listening events for CaseSpotify: what a user played, skipped, liked or searched for.

Two event families, each on a Kinesis stream of its own (a surge of one family
cannot slow the other): ``playback`` (``play``, ``skip``) and ``interaction``
(``like``, ``search``). Every record is one event as JSON; the stream's
partition key is the ``user_id``. One model reads both families; which fields
an event must carry depends on its type (``REQUIRED_FIELDS``).

The schemas registered in AWS Glue Schema Registry are generated from these
kinds (``messaging_runtime.contracts.schemas``), BACKWARD compatible.
"""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from pydantic import Field, StringConstraints, model_validator

from ._base import Contract, EventKind
from .analytics import UserId
from .fields import UtcTimestamp, WholeNumber

#: Each family's event types, in the order of their tables.
FAMILIES: dict[str, tuple[str, ...]] = {"playback": ("play", "skip"), "interaction": ("like", "search")}
#: The optional fields each event type must carry.
REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "play": ("track_id", "ms_played"),
    "skip": ("track_id", "ms_played"),
    "like": ("track_id",),
    "search": ("query",),
}
DEVICES = ("ios", "android", "web", "desktop", "speaker", "car")

TrackId = Annotated[str, StringConstraints(strict=True, pattern=r"^spotify:track:[0-9A-Za-z]{22}$")]


class ListeningEventV1(Contract):
    """One thing a listener did in a client: played or skipped a track, liked one, searched."""

    VERSION_FIELD = "schema_version"

    schema_version: Annotated[Literal[1], WholeNumber]
    event_id: UUID
    """Set by the client, kept through retries."""
    event_type: Literal["play", "skip", "like", "search"]
    event_time: UtcTimestamp
    """When it happened, on the client's clock."""
    user_id: UserId
    """The stream's partition key; in the lake only encrypted, under the user's own key."""
    device: Literal["ios", "android", "web", "desktop", "speaker", "car"]
    country: Annotated[str, StringConstraints(strict=True, pattern=r"^[A-Z]{2}$")]
    """ISO 3166-1 alpha-2, where the client was."""
    track_id: TrackId | None = None
    ms_played: Annotated[int, Field(strict=True, ge=0, le=86_400_000)] | None = None
    """How long the track played before it ended or was skipped (milliseconds)."""
    query: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=256)] | None = None

    @model_validator(mode="after")
    def _fields_of_the_type(self) -> ListeningEventV1:
        missing = [name for name in REQUIRED_FIELDS[self.event_type] if getattr(self, name) is None]
        if missing:
            raise ValueError(f"a {self.event_type} event needs {', '.join(missing)}")
        return self


PLAYBACK_EVENT = EventKind("PlaybackEvent", ListeningEventV1, channel="Kinesis stream PlaybackEvents of CaseSpotify (play, skip)")
INTERACTION_EVENT = EventKind("InteractionEvent", ListeningEventV1, channel="Kinesis stream InteractionEvents of CaseSpotify (like, search)")
#: The kind of each family's stream.
FAMILY_KINDS = {"playback": PLAYBACK_EVENT, "interaction": INTERACTION_EVENT}

KINDS = (PLAYBACK_EVENT, INTERACTION_EVENT)
