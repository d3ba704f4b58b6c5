"""Where the drivers are: positions indexed by H3 cell in DynamoDB, the nearest drivers by ring search, the client's filter.

Three parts, used by the CaseUber handlers and by whatever stands for a driver's app:

- ``DriverPosition``: what a driver's app publishes over MQTT (``rides/drivers/<driver id>/events``), a JSON object
  ``{"driver_id", "lat", "lng", "ts" (epoch milliseconds), "available"}``. The topic rule overwrites ``driver_id``
  with the thing name from the topic, so a driver cannot move another.
- ``DistanceFilter``: the app's decision to publish or not. A position is sent when the driver moved at least
  ``min_move_m`` since the last one sent, when availability changed, or when the last one sent is ``refresh_s`` old
  (so that the index keeps a parked driver: its entries live ``3 * refresh_s``). A parked driver therefore sends one
  refresh a minute instead of fifteen 4-second updates. The filter belongs in the app, not in the topic rule: IoT
  SQL has no memory of the previous message, so a rule could only drop a message by a distance the app had already
  computed, after IoT Core had billed the message and the rule (AWS IoT Core pricing: messages are metered on
  receipt, https://aws.amazon.com/iot-core/pricing/).
- ``DriverIndex``: one table, two kinds of items. ``pk = "driver#<id>", sk = "position"`` holds the driver's last
  position and cell; ``pk = "cell#<H3 cell>", sk = <driver id>`` lists the available drivers of a cell. Every item
  has ``expires_at`` (DynamoDB TTL). ``record`` keeps both consistent: a conditional update of the driver's item
  (only a newer ``ts`` wins, so a repeated or late record changes nothing), then the cell item put and, when the
  driver left its cell or became unavailable, the old cell item deleted. ``nearest`` is the ring search: the cells
  of ``h3.grid_disk(origin, k)`` for k = 0, 1, 2... (each ring queried once), until ``n`` drivers are found *and*
  no unsearched cell can hold a nearer one. TTL deletes expired items only eventually ("typically within a few
  days", https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ttl-expired-items.html), so every read
  filters ``expires_at`` against the clock.

The stopping rule. With ``e`` the edge length of the origin's cell (its circumradius), neighbouring centres are
``sqrt(3) * e`` apart, and the centres of the cells at grid distance ``m`` lie on a hexagon whose nearest point to the
origin's centre is ``m * sqrt(3) * e * sqrt(3) / 2 = 1.5 * m * e`` away. A point in such a cell is within ``e`` of its
centre and the rider within ``e`` of the origin's centre, so anything not yet searched after ring ``k`` is at least
``e * (1.5 * (k + 1) - 2)`` away. H3 cells are not perfectly regular (gnomonic projection on an icosahedron), so
``e`` is taken as 0.9 times the shortest edge of the origin cell. The tests compare the answer with a brute-force
haversine search.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import h3
from pydantic import BaseModel, ConfigDict, Field

#: H3 resolution 8: hexagons of 0.74 km² and edges of 0.53 km on average (h3.average_hexagon_area, average_hexagon_edge_length).
RESOLUTION = 8
#: Mean Earth radius in metres (IUGG), for the haversine distance.
EARTH_RADIUS_M = 6_371_008.8
#: Rings searched at most (k = 0..MAX_RING): at resolution 8, about 5 km around the rider.
MAX_RING = 8
#: Cell edges are taken 10 % shorter than the origin's shortest, for the irregularity of H3 cells.
EDGE_MARGIN = 0.9
DRIVER_PREFIX, CELL_PREFIX, POSITION_SK = "driver#", "cell#", "position"
DRIVER_ID_PATTERN = r"^[A-Za-z0-9_:-]{1,128}$"


class DriverPosition(BaseModel):
    """One position a driver's app publishes; ``ts`` in epoch milliseconds."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    driver_id: str = Field(pattern=DRIVER_ID_PATTERN)
    lat: float = Field(ge=-90, le=90, allow_inf_nan=False)
    lng: float = Field(ge=-180, le=180, allow_inf_nan=False)
    ts: int = Field(gt=0)
    available: bool = True


def haversine_m(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """The great-circle distance between two points, in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def cell_of(lat: float, lng: float) -> str:
    return h3.latlng_to_cell(lat, lng, RESOLUTION)


def shortest_edge_m(cell: str) -> float:
    """The shortest edge of ``cell`` in metres (from its boundary's vertices)."""
    boundary = h3.cell_to_boundary(cell)
    return min(haversine_m(*boundary[i], *boundary[(i + 1) % len(boundary)]) for i in range(len(boundary)))


def unsearched_bound_m(edge_m: float, k: int) -> float:
    """The least distance from the rider of any point outside ``grid_disk(origin, k)`` (see the module's docstring)."""
    return edge_m * (1.5 * (k + 1) - 2)


@dataclass
class DistanceFilter:
    """The driver app's filter: ``offer(position)`` says whether to publish it (and remembers it when so)."""

    min_move_m: float = 50.0
    refresh_s: float = 60.0
    _last: DriverPosition | None = None

    def offer(self, position: DriverPosition) -> bool:
        last = self._last
        send = (
            last is None
            or position.available != last.available
            or (position.ts - last.ts) / 1000 >= self.refresh_s
            or haversine_m(last.lat, last.lng, position.lat, position.lng) >= self.min_move_m
        )
        if send:
            self._last = position
        return send


@dataclass(frozen=True)
class NearbyDriver:
    driver_id: str
    lat: float
    lng: float
    distance_m: float

    def as_json(self) -> dict[str, Any]:
        return {"driver_id": self.driver_id, "lat": self.lat, "lng": self.lng, "distance_m": round(self.distance_m, 1)}


@dataclass(frozen=True)
class Search:
    """What ``nearest`` found, and what it cost: the rings searched and the cells queried."""

    drivers: list[NearbyDriver]
    rings: int
    cells: int


class DriverIndex:
    """The driver index in the DynamoDB table ``table_name`` (keys ``pk``, ``sk``; TTL ``expires_at``).

    :param client: a boto3 DynamoDB client.
    :param keep_s: how long an item lives after its position's time. Default: 180 s (3 refreshes of the filter).
    :param query_threads: cells queried at once. Default: 8.
    """

    def __init__(self, client: Any, table_name: str, *, keep_s: int = 180, query_threads: int = 8) -> None:
        self.client, self.table, self.keep_s, self.query_threads = client, table_name, keep_s, query_threads

    def record(self, position: DriverPosition) -> str:
        """Write one position; returns what it did: ``moved`` (to another cell), ``updated`` (a first position too), ``unavailable`` or ``stale``."""
        cell, expires = cell_of(position.lat, position.lng), position.ts // 1000 + self.keep_s
        numbers = {":lat": {"N": repr(position.lat)}, ":lng": {"N": repr(position.lng)}, ":ts": {"N": str(position.ts)}, ":e": {"N": str(expires)}}
        try:
            answer = self.client.update_item(
                TableName=self.table,
                Key={"pk": {"S": DRIVER_PREFIX + position.driver_id}, "sk": {"S": POSITION_SK}},
                UpdateExpression="SET cell = :c, lat = :lat, lng = :lng, ts = :ts, available = :a, expires_at = :e",
                ConditionExpression="attribute_not_exists(ts) OR ts < :ts",
                ExpressionAttributeValues={":c": {"S": cell}, ":a": {"BOOL": position.available}, **numbers},
                ReturnValues="ALL_OLD",
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return "stale"  # a newer (or the same) position is already recorded: a repeat or a late record
        old_cell = answer.get("Attributes", {}).get("cell", {}).get("S")
        if position.available:
            item = {"pk": {"S": CELL_PREFIX + cell}, "sk": {"S": position.driver_id}, **{k[1:]: v for k, v in numbers.items() if k != ":e"}}
            self.client.put_item(TableName=self.table, Item={**item, "expires_at": numbers[":e"]})
        if old_cell is not None and (old_cell != cell or not position.available):
            self.client.delete_item(TableName=self.table, Key={"pk": {"S": CELL_PREFIX + old_cell}, "sk": {"S": position.driver_id}})
        if not position.available:
            return "unavailable"
        return "moved" if old_cell is not None and old_cell != cell else "updated"

    def _drivers_in(self, cell: str, now: int) -> list[dict[str, Any]]:
        pages = self.client.get_paginator("query").paginate(
            TableName=self.table,
            KeyConditionExpression="pk = :pk",
            FilterExpression="expires_at > :now",
            ExpressionAttributeValues={":pk": {"S": CELL_PREFIX + cell}, ":now": {"N": str(now)}},
        )
        return [item for page in pages for item in page["Items"]]

    def nearest(self, lat: float, lng: float, n: int, *, now: float | None = None, max_ring: int = MAX_RING) -> Search:
        """The ``n`` available drivers nearest to (lat, lng), nearest first (fewer when the rings up to ``max_ring`` hold fewer)."""
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        clock = int(time.time() if now is None else now)
        origin = cell_of(lat, lng)
        edge = EDGE_MARGIN * shortest_edge_m(origin)
        found: dict[str, NearbyDriver] = {}
        searched: set[str] = set()
        with ThreadPoolExecutor(max_workers=self.query_threads) as pool:
            for k in range(max_ring + 1):
                ring = [cell for cell in h3.grid_disk(origin, k) if cell not in searched]
                searched.update(ring)
                for items in pool.map(lambda cell: self._drivers_in(cell, clock), ring):
                    for item in items:
                        found[item["sk"]["S"]] = self._nearby(item, lat, lng)
                ranked = sorted(found.values(), key=lambda d: (d.distance_m, d.driver_id))
                if len(ranked) >= n and ranked[n - 1].distance_m <= unsearched_bound_m(edge, k):
                    return Search(ranked[:n], k + 1, len(searched))
        return Search(ranked[:n], max_ring + 1, len(searched))

    @staticmethod
    def _nearby(item: dict[str, Any], lat: float, lng: float) -> NearbyDriver:
        dlat, dlng = float(item["lat"]["N"]), float(item["lng"]["N"])
        return NearbyDriver(item["sk"]["S"], dlat, dlng, haversine_m(lat, lng, dlat, dlng))


def brute_force_nearest(drivers: Iterable[tuple[str, float, float]], lat: float, lng: float, n: int) -> list[tuple[str, float]]:
    """The ``n`` nearest of ``drivers`` ((id, lat, lng)) by haversine distance, nearest first: what ``nearest`` must equal."""
    ranked = sorted(((driver_id, haversine_m(lat, lng, dlat, dlng)) for driver_id, dlat, dlng in drivers), key=lambda d: (d[1], d[0]))
    return ranked[:n]
