"""Product and device events for the analytics platform (CapstoneAnalytics).

One event type, ``AnalyticsEvent``, from every producer: web and mobile clients
(HTTP), devices (MQTT through an AWS IoT Core rule, which sets ``device_id``
from the topic and ``platform`` to ``device``) and Kafka producers (Exercise
03's clicks, translated by ``from_click``). Every record on the stream is one
event as JSON; the stream's partition key is the ``user_id``, so that one
user's events stay on one shard (in order, and counted as one unique user by
one shard's window only).

The schema registered in AWS Glue Schema Registry is generated from this model
(``messaging_runtime.contracts.schemas.registry_schema``), BACKWARD compatible:
a consumer of version N reads N-1.
"""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from pydantic import Field, StringConstraints

from ._base import Contract, EventKind
from .clicks import ClickV1
from .fields import Number, UtcTimestamp, WholeNumber

#: Where an event comes from: a web page, a mobile app, a device (set by the IoT rule), a server-side producer.
PLATFORMS = ("web", "ios", "android", "device", "server")

#: ``u-`` and 1 to 64 letters, digits, ``_`` or ``-`` (nothing that needs quoting in SQL or a key).
UserId = Annotated[str, StringConstraints(strict=True, pattern=r"^u-[A-Za-z0-9_-]{1,64}$")]
# bool before Number: a union serializes with its first member that accepts the value, and Number's float serializer
# would take True as 1.0.
PropertyValue = Annotated[str, StringConstraints(strict=True, max_length=1024)] | bool | Number


class AnalyticsEventV1(Contract):
    """One thing a user, or a device of theirs, did."""

    VERSION_FIELD = "schema_version"

    schema_version: Annotated[Literal[1], WholeNumber]
    event_id: UUID
    """Set by the producer, kept through retries: the lake keeps one row per ``event_id``."""
    event_type: Annotated[str, StringConstraints(strict=True, pattern=r"^[a-z][a-z0-9_]{0,63}$")]
    """``page_view``, ``add_to_cart``, ``purchase``, ``reading``...: lower case, digits and ``_``; a partition of the lake."""
    event_time: UtcTimestamp
    """When it happened, on the producer's clock. An event that arrives more than 5 minutes after it is late (kept, counted)."""
    user_id: UserId
    """The stream's partition key and what an erasure names."""
    platform: Literal["web", "ios", "android", "device", "server"]
    session_id: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=128)] | None = None
    page: Annotated[str, StringConstraints(strict=True, pattern=r"^/\S*$", max_length=2048)] | None = None
    """The page's path (``/`` and no white space), for web and app screens."""
    device_id: Annotated[str, StringConstraints(strict=True, pattern=r"^[A-Za-z0-9:_-]{1,128}$")] | None = None
    """The AWS IoT thing name, from the topic the device published on (a device cannot claim another's)."""
    properties: Annotated[dict[Annotated[str, StringConstraints(strict=True, pattern=r"^[A-Za-z0-9_]{1,64}$")], PropertyValue], Field(max_length=50)] = {}
    """Up to 50 named values (text up to 1,024 characters, numbers, booleans): the product's, the sensor's readings."""


ANALYTICS_EVENT = EventKind("AnalyticsEvent", AnalyticsEventV1, channel="Kinesis stream of CapstoneAnalytics (HTTP, MQTT, Kafka)")


def from_click(click: ClickV1) -> AnalyticsEventV1:
    """Exercise 03's click as an analytics event (its ``action`` is the event type; ``view`` becomes ``page_view``)."""
    return AnalyticsEventV1(
        schema_version=1,
        event_id=click.event_id,
        event_type="page_view" if click.action == "view" else click.action,
        event_time=click.occurred_at,
        user_id=click.user_id,
        platform="web",
        session_id=click.session_id,
        page=click.page,
    )


class ErasureRequestV1(Contract):
    """A request to erase one user's data from the lake and the aggregates (GDPR article 17)."""

    VERSION_FIELD = "schema_version"

    schema_version: Annotated[Literal[1], WholeNumber]
    request_id: Annotated[str, StringConstraints(strict=True, pattern=r"^er-[A-Za-z0-9_-]{1,64}$")]
    """``er-`` and 1 to 64 letters, digits, ``_`` or ``-``: names the report and makes a repeated request harmless."""
    user_id: UserId
    requested_at: UtcTimestamp


ERASURE_REQUEST = EventKind("ErasureRequest", ErasureRequestV1, channel="SQS queue erasure-requests of CapstoneAnalytics")

KINDS = (ANALYTICS_EVENT, ERASURE_REQUEST)
