"""Report requests the scheduler puts on the Exercise 02 bus (source ``blueprints.scheduler``)."""

from __future__ import annotations

from typing import Annotated, Literal

from ._base import Contract, EventKind
from .fields import WholeNumber

SOURCE = "blueprints.scheduler"


class DailyReportRequestedV1(Contract):
    """Time for the daily report. The day is the event's ``time`` (UTC), which EventBridge Scheduler sets."""

    version: Annotated[Literal[1], WholeNumber]
    report: Literal["daily"]


DAILY_REPORT_REQUESTED = EventKind(
    "DailyReportRequested", DailyReportRequestedV1, source=SOURCE, channel="EventBridge Scheduler schedule to the bus of Exercise02EventBridge"
)

KINDS = (DAILY_REPORT_REQUESTED,)
