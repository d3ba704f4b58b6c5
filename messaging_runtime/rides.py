"""What the CaseUber ride handlers share: the ride request, ride ids, statuses, the WebSocket channels and their tokens.

A ride is requested with ``POST /rides`` (``RideRequest``) and an ``Idempotency-Key``; its id comes from the rider and
the key, so a retry names the same ride. Riders and drivers follow the ride over one WebSocket API, each on a channel:
``ride-<ride id>`` (the rider: statuses) and ``driver-<driver id>`` (the driver: offers). A channel is opened with a
token, the KMS HMAC of ``ride-channel:v1:<channel>`` (``messaging_runtime.status_tokens``): the ride API gives the
rider theirs; drivers get theirs from the drivers' sign-in, which is not part of the case.

Drivers answer an offer on their channel with ``{"action": "seen" | "accept" | "decline", "ride_id": ...}``:
``seen`` keeps the offer alive (a Step Functions heartbeat), ``accept`` and ``decline`` end it.
"""

from __future__ import annotations

import hashlib
import re

from pydantic import BaseModel, ConfigDict, Field

TOKEN_PURPOSE = "ride-channel:v1"
RIDE_ID = re.compile(r"r-[0-9a-f]{32}")
DRIVER_ID = re.compile(r"[A-Za-z0-9_:-]{1,128}")
RIDER_PREFIX, DRIVER_PREFIX = "ride-", "driver-"
#: Ride statuses, in the order a ride goes through them (NO_DRIVER ends a ride nobody took).
SEARCHING, OFFERED, ASSIGNED, NO_DRIVER = "SEARCHING", "OFFERED", "ASSIGNED", "NO_DRIVER"
#: The errors with which an offer ends without a driver; the dispatch then offers the ride to the next one.
DRIVER_DECLINED, DRIVER_UNREACHABLE = "DriverDeclined", "DriverUnreachable"
ANSWERS = ("seen", "accept", "decline")


class RideRequest(BaseModel):
    """The body of ``POST /rides``: where the rider waits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lat: float = Field(ge=-90, le=90, allow_inf_nan=False)
    lng: float = Field(ge=-180, le=180, allow_inf_nan=False)


def ride_id_for(rider_id: str, idempotency_key: str) -> str:
    """The ride a rider's request names: the same rider and key always give the same id."""
    return "r-" + hashlib.sha256(f"{rider_id}\n{idempotency_key}".encode()).hexdigest()[:32]


def rider_channel(ride_id: str) -> str:
    return RIDER_PREFIX + ride_id


def driver_channel(driver_id: str) -> str:
    return DRIVER_PREFIX + driver_id


def parse_channel(channel: object) -> tuple[str, str] | None:
    """``("rider", ride id)`` or ``("driver", driver id)`` for a valid channel name, else None."""
    if not isinstance(channel, str):
        return None
    if channel.startswith(RIDER_PREFIX) and RIDE_ID.fullmatch(channel[len(RIDER_PREFIX) :]):
        return "rider", channel[len(RIDER_PREFIX) :]
    if channel.startswith(DRIVER_PREFIX) and DRIVER_ID.fullmatch(channel[len(DRIVER_PREFIX) :]):
        return "driver", channel[len(DRIVER_PREFIX) :]
    return None
