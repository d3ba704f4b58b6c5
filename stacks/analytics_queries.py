"""CapstoneAnalytics' Athena named queries: the questions people ask of the clickstream, as Athena (Trino) SQL.

The lake (``messaging_runtime.lake``) has two Iceberg tables in one Glue
database, ``events`` and ``quarantine``; the SQL names them ``{database}.events``
and ``{database}.quarantine`` and ``queries_for(database)`` puts the Glue
database's name in. The queries:

- ``events_per_type_per_day``: how many events of each type, and how many users
  sent them, each day (the last 30 days).
- ``sessions``: each session of the last 7 days (the producer's ``session_id``):
  its user, first and last event time, duration in seconds, number of events.
- ``sessions_per_day``: sessions started each day (the last 30 days), the median
  and average session length in seconds and the average events per session.
- ``funnel_per_day``: per day (the last 30 days), the users who viewed a page,
  of them those who then added to cart, and of those who then purchased, each
  step after the one before it on that day by event time; and the rates.
- ``top_pages``: the 10 pages with the most page views over the last 7 days.
- ``late_share_per_day``: per day (the last 30 days), the events, the late ones
  (arrived more than ``lake.LATE_AFTER`` after their event time) and their share.
- ``freshness``: per event type, its latest arrival, how many seconds ago that
  was, and the p50/p95 of arrival delay (arrival minus event time) of the events
  that arrived in the last hour (event dates of the last 7 days).
- ``quarantine_per_day``: the records quarantined each day (the last 30 days), by reason.

How they read the lake:

- Duplicates: Firehose's transformation drops a second copy of an event id in
  one buffer only; copies further apart are both rows. Every query reads events
  through a ``first_copy`` CTE that keeps an event id's earliest arrival
  (``ROW_NUMBER() OVER (PARTITION BY event_id ORDER BY arrival_time) = 1``), so
  an event counts once (a quarantined record, once per ``record_id``).
- Partitions: a query over a time range filters ``event_date`` (or
  ``quarantine_date``) inside ``first_copy``, before the window function: a
  filter outside it would not reach the scan, and Athena would read every
  partition. Dates are text (``YYYY-MM-DD``), so the bound is text too:
  ``event_date >= CAST(current_date - INTERVAL '6' DAY AS varchar)`` is today and
  the 6 days before (Athena's session time zone is UTC, the lake's too).
- Times are ISO 8601 text, read once in ``first_copy`` with
  ``from_iso8601_timestamp`` as ``event_at`` and ``arrived_at`` (to the
  millisecond); ``arrival_time`` is ordered as text (the lake's fixed format
  sorts as time does). Durations are ``date_diff('millisecond', ...) / 1e3``:
  seconds as a double, to the millisecond. Percentiles are taken of whole
  milliseconds (``approx_percentile`` of a bigint answers one of the values).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from messaging_runtime import lake

#: The placeholder the SQL names the Glue database with.
DATABASE = "{database}"
#: The daily reports cover today and the days before it, this many in all.
REPORT_DAYS = 30
#: The session list, the top pages and the freshness query look at this many days.
RECENT_DAYS = 7
#: The freshness query's percentiles are of the events that arrived within this.
FRESHNESS_WINDOW = timedelta(hours=1)
#: How many pages ``top_pages`` lists.
TOP_PAGES = 10
#: The funnel's steps, in order.
FUNNEL = ("page_view", "add_to_cart", "purchase")


@dataclass(frozen=True)
class NamedQuery:
    """An Athena named query: its name, what it answers, its SQL (with ``{database}`` until rendered)."""

    name: str
    description: str
    sql: str


def interval_literal(duration: timedelta) -> str:
    """``duration`` as a Trino interval literal in seconds (``INTERVAL '300' SECOND``); Athena's times are to the millisecond."""
    milliseconds, rest = divmod(duration // timedelta(microseconds=1), 1000)
    if rest or milliseconds <= 0:
        raise ValueError(f"an interval for Athena is a positive whole number of milliseconds, got {duration!r}")
    seconds, fraction = divmod(milliseconds, 1000)
    return f"INTERVAL '{seconds}.{fraction:03d}' SECOND" if fraction else f"INTERVAL '{seconds}' SECOND"


#: ``lake.LATE_AFTER`` in SQL: an event is late when ``arrived_at - event_at`` is more than this (as ``lake.is_late``).
LATE_AFTER_SQL = interval_literal(lake.LATE_AFTER)


def _since(days: int, column: str = "event_date") -> str:
    """The partition filter for today and the ``days - 1`` days before it."""
    return f"{column} >= CAST(current_date - INTERVAL '{days - 1}' DAY AS varchar)"


def _first_copy(where: str) -> str:
    """The ``first_copy`` CTE: the events that match ``where`` (a partition filter), each event id once (its earliest
    arrival), with its times read as ``event_at`` and ``arrived_at``."""
    return f"""first_copy AS (
    -- Each event id once: its earliest arrival (copies further apart than one Firehose buffer are all in the table).
    SELECT *
    FROM (
        SELECT
            *,
            ROW_NUMBER() OVER (PARTITION BY event_id ORDER BY arrival_time) AS copy_number,
            from_iso8601_timestamp(event_time) AS event_at,
            from_iso8601_timestamp(arrival_time) AS arrived_at
        FROM {DATABASE}.{lake.EVENTS_TABLE}
        WHERE {where}
    )
    WHERE copy_number = 1
)"""


def _sql(text: str) -> str:
    return text.strip() + "\n"


EVENTS_PER_TYPE_PER_DAY = NamedQuery(
    "events_per_type_per_day",
    f"Events of each type per day, and the users who sent them (the last {REPORT_DAYS} days, each event id once).",
    _sql(f"""
WITH
{_first_copy(_since(REPORT_DAYS))}
SELECT
    event_date,
    event_type,
    count(*) AS events,
    count(DISTINCT user_id) AS users
FROM first_copy
GROUP BY event_date, event_type
ORDER BY event_date, event_type
"""),
)

SESSIONS = NamedQuery(
    "sessions",
    f"Each session (the producer's session_id) of the last {RECENT_DAYS} days: user, start, end, duration in seconds, events.",
    _sql(f"""
WITH
{_first_copy(f"{_since(RECENT_DAYS)} AND session_id IS NOT NULL")}
SELECT
    session_id,
    user_id,
    min(event_at) AS session_start,
    max(event_at) AS session_end,
    date_diff('millisecond', min(event_at), max(event_at)) / 1e3 AS duration_seconds,
    count(*) AS events
FROM first_copy
GROUP BY session_id, user_id
ORDER BY session_start, session_id
"""),
)

SESSIONS_PER_DAY = NamedQuery(
    "sessions_per_day",
    f"Sessions started each day (the last {REPORT_DAYS} days): how many, by how many users, median and average length in seconds, average events per session.",
    _sql(f"""
WITH
{_first_copy(f"{_since(REPORT_DAYS)} AND session_id IS NOT NULL")},
sessions AS (
    SELECT
        session_id,
        user_id,
        min(event_date) AS session_date,
        date_diff('millisecond', min(event_at), max(event_at)) AS duration_ms,
        count(*) AS events
    FROM first_copy
    GROUP BY session_id, user_id
)
SELECT
    session_date,
    count(*) AS sessions,
    count(DISTINCT user_id) AS users,
    approx_percentile(duration_ms, 0.5) / 1e3 AS median_duration_seconds,
    avg(duration_ms) / 1e3 AS avg_duration_seconds,
    avg(events) AS avg_events
FROM sessions
GROUP BY session_date
ORDER BY session_date
"""),
)

_VIEW, _CART, _PURCHASE = FUNNEL
FUNNEL_PER_DAY = NamedQuery(
    "funnel_per_day",
    f"Per day (the last {REPORT_DAYS} days): users who did {_VIEW}, then {_CART} after it, then {_PURCHASE} after that, on the same day; "
    f"the share of the first step's users that reached each later step.",
    _sql(f"""
WITH
{_first_copy(f"{_since(REPORT_DAYS)} AND event_type IN ('{_VIEW}', '{_CART}', '{_PURCHASE}')")},
with_view AS (
    -- Step 1: the user's first {_VIEW} of the day.
    SELECT
        *,
        min(CASE WHEN event_type = '{_VIEW}' THEN event_at END) OVER (PARTITION BY event_date, user_id) AS viewed_at
    FROM first_copy
),
with_cart AS (
    -- Step 2: their first {_CART} after it (the earliest, so that any {_PURCHASE} after a later one is after it too).
    SELECT
        *,
        min(CASE WHEN event_type = '{_CART}' AND event_at > viewed_at THEN event_at END) OVER (PARTITION BY event_date, user_id) AS added_at
    FROM with_view
),
per_user AS (
    -- Step 3: a {_PURCHASE} after that.
    SELECT
        event_date,
        user_id,
        max(added_at) IS NOT NULL AS added,
        count_if(event_type = '{_PURCHASE}' AND event_at > added_at) > 0 AS purchased
    FROM with_cart
    WHERE viewed_at IS NOT NULL
    GROUP BY event_date, user_id
)
SELECT
    event_date,
    count(*) AS viewed,
    count_if(added) AS added_to_cart,
    count_if(purchased) AS purchased,
    round(CAST(count_if(added) AS double) / count(*), 4) AS cart_rate,
    round(CAST(count_if(purchased) AS double) / count(*), 4) AS purchase_rate
FROM per_user
GROUP BY event_date
ORDER BY event_date
"""),
)

TOP_PAGES_QUERY = NamedQuery(
    "top_pages",
    f"The {TOP_PAGES} pages with the most page views over the last {RECENT_DAYS} days (today included), and their users.",
    _sql(f"""
WITH
{_first_copy(f"{_since(RECENT_DAYS)} AND event_type = 'page_view'")}
SELECT
    page,
    count(*) AS views,
    count(DISTINCT user_id) AS users
FROM first_copy
WHERE page IS NOT NULL
GROUP BY page
ORDER BY views DESC, page
LIMIT {TOP_PAGES}
"""),
)

LATE_SHARE_PER_DAY = NamedQuery(
    "late_share_per_day",
    f"Per day (the last {REPORT_DAYS} days): events, late events (arrived more than {lake.LATE_AFTER.total_seconds():g} seconds after "
    "their event time) and the late share.",
    _sql(f"""
WITH
{_first_copy(_since(REPORT_DAYS))},
judged AS (
    SELECT event_date, arrived_at - event_at > {LATE_AFTER_SQL} AS late
    FROM first_copy
)
SELECT
    event_date,
    count(*) AS events,
    count_if(late) AS late_events,
    round(CAST(count_if(late) AS double) / count(*), 4) AS late_share
FROM judged
GROUP BY event_date
ORDER BY event_date
"""),
)

FRESHNESS = NamedQuery(
    "freshness",
    f"Per event type (event dates of the last {RECENT_DAYS} days): latest arrival, seconds since it, and for the events that arrived "
    f"in the last {FRESHNESS_WINDOW.total_seconds() / 60:g} minutes, their number and p50/p95 arrival delay in seconds.",
    _sql(f"""
WITH
{_first_copy(_since(RECENT_DAYS))},
timed AS (
    SELECT
        event_type,
        arrived_at,
        date_diff('millisecond', event_at, arrived_at) AS delay_ms,
        arrived_at > current_timestamp - {interval_literal(FRESHNESS_WINDOW)} AS recent
    FROM first_copy
)
SELECT
    event_type,
    max(arrived_at) AS latest_arrival,
    date_diff('millisecond', max(arrived_at), current_timestamp) / 1e3 AS seconds_since_latest_arrival,
    count_if(recent) AS recent_events,
    approx_percentile(delay_ms, 0.5) FILTER (WHERE recent) / 1e3 AS p50_delay_seconds,
    approx_percentile(delay_ms, 0.95) FILTER (WHERE recent) / 1e3 AS p95_delay_seconds
FROM timed
GROUP BY event_type
ORDER BY event_type
"""),
)

QUARANTINE_PER_DAY = NamedQuery(
    "quarantine_per_day",
    f"Records quarantined per day (the last {REPORT_DAYS} days) by reason, each record once.",
    _sql(f"""
WITH
first_copy AS (
    -- Each record once (a buffer Firehose transformed again writes its rows again).
    SELECT *
    FROM (
        SELECT *, ROW_NUMBER() OVER (PARTITION BY record_id ORDER BY arrival_time) AS copy_number
        FROM {DATABASE}.{lake.QUARANTINE_TABLE}
        WHERE {_since(REPORT_DAYS, "quarantine_date")}
    )
    WHERE copy_number = 1
)
SELECT
    quarantine_date,
    reason,
    count(*) AS records
FROM first_copy
GROUP BY quarantine_date, reason
ORDER BY quarantine_date, records DESC, reason
"""),
)

NAMED_QUERIES: tuple[NamedQuery, ...] = (
    EVENTS_PER_TYPE_PER_DAY,
    SESSIONS,
    SESSIONS_PER_DAY,
    FUNNEL_PER_DAY,
    TOP_PAGES_QUERY,
    LATE_SHARE_PER_DAY,
    FRESHNESS,
    QUARANTINE_PER_DAY,
)

_PLAIN_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,254}$")


def render(sql: str, database: str) -> str:
    """``sql`` with the Glue database's name for ``{database}``.

    A name that is not lower-case letters, digits and ``_`` (not starting with a digit) is refused, unless it is a
    CDK token (resolved at deployment, such as a ``CfnDatabase``'s ``ref``).
    """
    if not _PLAIN_NAME.match(database):
        from aws_cdk import Token  # only for a name that is not plain: the tests need no jsii

        if not Token.is_unresolved(database):
            raise ValueError(f"the Glue database name must be lower-case letters, digits and _ (not first a digit), got {database!r}")
    return sql.replace(DATABASE, database)


def queries_for(database: str) -> list[NamedQuery]:
    """The named queries with ``database`` for ``{database}``."""
    return [NamedQuery(query.name, query.description, render(query.sql, database)) for query in NAMED_QUERIES]
