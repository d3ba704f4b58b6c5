"""What the producer accepts: click events to send, or a request for synthetic ones; what it writes: ``Click`` contracts.

The request is this function's API: it is read strictly before anything is sent, and an invalid one is
refused with the place of each error (``events[3].action: ...``). Its events are the contract's
``ClickV1`` (``messaging_runtime.contracts.clicks``), with one allowance: ``occurred_at`` may carry any
offset and is turned to UTC, which the contract requires of what is written.
"""

import json
import random
import uuid
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, ValidationError, model_validator

from messaging_runtime.contracts.clicks import ACTIONS, ClickV1
from messaging_runtime.contracts.fields import Timestamp

MAX_EVENTS = 10_000  # events given in one request (a synchronous invocation carries at most 6 MB)
MAX_GENERATED = 100_000  # synthetic events in one request
MAX_ERRORS_SHOWN = 10

# How often each action happens in the synthetic stream: mostly views, a few purchases.
ACTION_WEIGHTS = (70, 22, 6, 2)
PAGES = ("/", "/search", "/products/1", "/products/2", "/products/3", "/products/4", "/deals", "/cart", "/checkout", "/help")


class RequestedClick(ClickV1):
    """A click as a caller gives it: the contract's fields and rules, but ``occurred_at`` at any offset, kept in UTC."""

    occurred_at: Annotated[Timestamp, AfterValidator(lambda moment: moment.astimezone(timezone.utc))]


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

    events: Annotated[list[RequestedClick], Field(min_length=1, max_length=MAX_EVENTS)] | None = None
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


def to_record(event: ClickV1) -> tuple[bytes, bytes]:
    """The Kafka key (the user id, so that a user's events stay in order on one partition) and the value: the contract's JSON."""
    click = event if type(event) is ClickV1 else ClickV1.model_validate(dict(event))  # what is written is the producer's view
    return click.record_key(), click.model_dump_json().encode()


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
        click = ClickV1(
            schema_version=1,
            event_id=uuid.UUID(int=rng.getrandbits(128), version=4),
            user_id=user,
            session_id=sessions[user],
            page=rng.choice(PAGES),
            action=action,
            occurred_at=start + timedelta(milliseconds=index),
        )
        records.append(to_record(click))
    return records
