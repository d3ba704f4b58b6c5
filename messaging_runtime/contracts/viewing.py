"""Viewing and studio events (CaseNetflix): what members' devices and the content pipeline put on the bus.

Playback events (source ``netflix.playback``) come from the playback services; studio events (source
``netflix.studio``) from the content pipeline: a title's source file uploaded, and the title published once its
renditions are encoded. Every event carries ``event_id``, the producer's id of the event, which consumers use as
their idempotency key (EventBridge and SQS deliver at least once).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from ._base import Contract, EventKind
from .fields import UtcTimestamp, WholeNumber

PLAYBACK_SOURCE = "netflix.playback"
STUDIO_SOURCE = "netflix.studio"
_BUS = "EventBridge bus of CaseNetflix"

EventId = Annotated[str, StringConstraints(strict=True, pattern=r"^[A-Za-z0-9_-]{1,64}$")]
TitleId = Annotated[str, StringConstraints(strict=True, pattern=r"^t-[A-Za-z0-9_-]{1,40}$")]
MemberId = Annotated[str, StringConstraints(strict=True, pattern=r"^m-[A-Za-z0-9_-]{1,40}$")]
UploadId = Annotated[str, StringConstraints(strict=True, pattern=r"^u-[A-Za-z0-9_-]{1,40}$")]
Seconds = Annotated[int, Field(strict=True, ge=0)]
#: The encoding profiles the pipeline knows (a profile is a codec and a ladder of resolutions).
Profile = Literal["h264-sd", "h264-hd", "hevc-4k", "av1-hd"]


class PlaybackStartedV1(Contract):
    """A member started playing a title on a device."""

    version: Annotated[Literal[1], WholeNumber]
    event_id: EventId
    member_id: MemberId
    title_id: TitleId
    device: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=40)]
    at: UtcTimestamp


class PlaybackStoppedV1(Contract):
    """A member stopped playing: where, and how often the stream stalled to refill its buffer."""

    version: Annotated[Literal[1], WholeNumber]
    event_id: EventId
    member_id: MemberId
    title_id: TitleId
    position_seconds: Seconds
    rebuffer_count: Seconds
    at: UtcTimestamp


class TitleUploadedV1(Contract):
    """A title's source file is uploaded: encode it in each profile, then publish it."""

    version: Annotated[Literal[1], WholeNumber]
    event_id: EventId
    upload_id: UploadId
    title_id: TitleId
    source_uri: Annotated[str, StringConstraints(strict=True, pattern=r"^s3://[a-z0-9.-]{3,63}/.{1,900}$")]
    profiles: Annotated[list[Profile], Field(min_length=1, max_length=4)]


class TitlePublishedV1(Contract):
    """A title's renditions are encoded and it can be played."""

    version: Annotated[Literal[1], WholeNumber]
    event_id: EventId
    upload_id: UploadId
    title_id: TitleId
    renditions: Annotated[list[str], Field(min_length=1, max_length=4)]


PLAYBACK_STARTED = EventKind("PlaybackStarted", PlaybackStartedV1, source=PLAYBACK_SOURCE, channel=_BUS)
PLAYBACK_STOPPED = EventKind("PlaybackStopped", PlaybackStoppedV1, source=PLAYBACK_SOURCE, channel=_BUS)
TITLE_UPLOADED = EventKind("TitleUploaded", TitleUploadedV1, source=STUDIO_SOURCE, channel=_BUS)
TITLE_PUBLISHED = EventKind("TitlePublished", TitlePublishedV1, source=STUDIO_SOURCE, channel=_BUS)

KINDS = (PLAYBACK_STARTED, PLAYBACK_STOPPED, TITLE_UPLOADED, TITLE_PUBLISHED)
#: (source, detail-type) -> the kind.
BY_TYPE: dict[tuple[str, str], EventKind] = {(kind.source, kind.name): kind for kind in KINDS}  # type: ignore[misc]
