"""What the producer accepts: a request with click events to send, or one asking for synthetic events.

Both are read strictly: every field of every event is checked before anything
is sent, and an invalid request is refused with the place of each error
(``events[3].action: ...``).
"""

import json
import random
import uuid
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

SCHEMA_VERSION = 1
MAX_EVENTS = 10_000  # events given in one request (a synchronous invocation carries at most 6 MB)
MAX_GENERATED = 100_000  # synthetic events in one request
MAX_ERRORS_SHOWN = 10

ACTIONS = ("view", "click", "add_to_cart", "purchase")
# How often each action happens in the synthetic stream: mostly views, a few purchases.
ACTION_WEIGHTS = (70, 22, 6, 2)
PAGES = ("/", "/search", "/products/1", "/products/2", "/products/3", "/products/4", "/deals", "/cart", "/checkout", "/help")


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc)


class ClickEvent(BaseModel):
    """One clickstream event; ``occurred_at`` is kept in UTC."""

    model_config = ConfigDict(strict=True, frozen=True, extra="forbid")

    schema_version: StrictInt
    event_id: UUID
    user_id: Annotated[str, StringConstraints(pattern=r"^u-\S+$", max_length=128)]
    session_id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    page: Annotated[str, StringConstraints(pattern=r"^/\S*$", max_length=2048)]
    action: Literal["view", "click", "add_to_cart", "purchase"]
    occurred_at: Annotated[AwareDatetime, AfterValidator(_utc)]

    @field_validator("schema_version")
    @classmethod
    def _supported_version(cls, value: int) -> int:
        if value != SCHEMA_VERSION:
            raise ValueError(f"unsupported schema_version {value}, this producer writes {SCHEMA_VERSION}")
        return value


class Generate(BaseModel):
    model_config = ConfigDict(strict=True, frozen=True, extra="forbid")

    count: Annotated[StrictInt, Field(ge=1, le=MAX_GENERATED)]
    users: Annotated[StrictInt, Field(ge=1, le=MAX_GENERATED)]

    @model_validator(mode="after")
    def _users_have_events(self) -> "Generate":
        if self.users > self.count:
            raise ValueError(f"users ({self.users}) must not exceed count ({self.count}): every user gets at least one event")
        return self


class ProduceRequest(BaseModel):
    """``{"events": [...]}`` or ``{"generate": {"count": N, "users": K}}``, not both."""

    model_config = ConfigDict(strict=True, frozen=True, extra="forbid")

    events: Annotated[list[ClickEvent], Field(min_length=1, max_length=MAX_EVENTS)] | None = None
    generate: Generate | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> "ProduceRequest":
        if (self.events is None) == (self.generate is None):
            raise ValueError('give either "events" (a list of click events) or "generate" ({"count": N, "users": K}), not both')
        return self


class InvalidRequest(ValueError):
    """The request cannot be sent as it is; nothing was sent."""


def _place(location: tuple[int | str, ...]) -> str:
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "request"


def parse_request(event: Any) -> ProduceRequest:
    """The request, or ``InvalidRequest`` naming the index and field of every error (the first ten)."""
    try:
        # Strict JSON reading: ids and times must be text, numbers must be numbers.
        return ProduceRequest.model_validate_json(json.dumps(event))
    except Exception as exc:  # whatever reading the request raises (RecursionError for one nested too deeply) refuses it
        if not isinstance(exc, ValidationError):
            raise InvalidRequest(f"invalid request, nothing was sent: not a JSON object this function can read ({type(exc).__name__}: {exc})") from exc
        errors = exc.errors(include_url=False, include_input=False)
        shown = "; ".join(f"{_place(error['loc'])}: {error['msg']}" for error in errors[:MAX_ERRORS_SHOWN])
        more = f" (and {len(errors) - MAX_ERRORS_SHOWN} more)" if len(errors) > MAX_ERRORS_SHOWN else ""
        raise InvalidRequest(f"invalid request, nothing was sent: {shown}{more}") from exc


def to_record(event: ClickEvent) -> tuple[bytes, bytes]:
    """The Kafka key (the user id, so that a user's events stay in order on one partition) and the JSON value."""
    return event.user_id.encode(), event.model_dump_json().encode()


def synthetic_records(generate: Generate, *, rng: random.Random | None = None, now: datetime | None = None) -> list[tuple[bytes, bytes]]:
    """``count`` events spread over ``users`` users (``u-000001``...), one session per user, times a millisecond apart."""
    rng = rng or random.Random()
    start = now or datetime.now(timezone.utc)
    users = [f"u-{number:06d}" for number in range(1, generate.users + 1)]
    sessions = {user: f"s-{uuid.UUID(int=rng.getrandbits(128), version=4).hex[:12]}" for user in users}
    actions = rng.choices(ACTIONS, weights=ACTION_WEIGHTS, k=generate.count)
    records = []
    for index, action in enumerate(actions):
        user = users[index % len(users)] if index < len(users) else rng.choice(users)
        event = {
            "schema_version": SCHEMA_VERSION,
            "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "user_id": user,
            "session_id": sessions[user],
            "page": rng.choice(PAGES),
            "action": action,
            "occurred_at": (start + timedelta(milliseconds=index)).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }
        records.append((user.encode(), json.dumps(event, separators=(",", ":")).encode()))
    return records
