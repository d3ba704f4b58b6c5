"""Erase one user's data from the analytics lake and the real-time aggregates, and report what was removed.

The steps, each safe to run again (a request is retried whole until its report says ``done``):

1. **Count** the user's share before anything changes: their events per type,
   minute of arrival and event date (and how many were late), and their
   quarantined records per date. The counts go into the report
   (``erasures/<request id>.json``, status ``counted``) first, so a retry after
   the deletes reuses them instead of counting nothing.
2. **Delete** the user's rows from both tables (Athena ``DELETE``: Iceberg
   position deletes; from then on no query returns them).
3. **Subtract** the user's share from the aggregates: one item per type and
   minute whose aggregates still exist, keyed by the request (written again on
   a retry, never added twice; ``messaging_runtime.minute_counts``).
4. **Rewrite** the partitions that held the rows (``OPTIMIZE ... REWRITE DATA
   USING BIN_PACK``), so that the current data files no longer contain them,
   and ``VACUUM`` each table: snapshots older than the table's
   ``vacuum_max_snapshot_age_seconds`` and the files only they reference are
   deleted. The bytes are gone from S3 once the last snapshot holding them has
   aged past that and a later VACUUM ran (the lake's tables keep one day), and
   noncurrent object versions have expired (the bucket's lifecycle).
5. **Report**: status ``done``, the rows removed per table, the aggregate
   items written, the Athena executions, the times.

The user id is validated by the contract (``u-`` and letters, digits, ``_``,
``-``) before it is put in SQL, and quoted besides.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from . import lake
from .athena import AthenaQueries
from .contracts.analytics import ErasureRequestV1
from .minute_counts import erasure_items
from .publishers.table import DynamoDbPublisher

REPORT_PREFIX = "erasures/"


def quoted(text: str) -> str:
    """``text`` as a SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def shares_query(database: str, user_id: str) -> str:
    """The user's events per type, minute of arrival and event date, with how many were late."""
    late = int(lake.LATE_AFTER.total_seconds())
    return (
        "SELECT event_type, date_format(from_iso8601_timestamp(arrival_time), '%Y-%m-%dT%H:%i') AS minute, event_date,\n"
        "       count(*) AS events,\n"
        f"       count_if(to_unixtime(from_iso8601_timestamp(arrival_time)) - to_unixtime(from_iso8601_timestamp(event_time)) > {late}) AS late\n"
        f"FROM {database}.{lake.EVENTS_TABLE}\n"
        f"WHERE user_id = {quoted(user_id)}\n"
        "GROUP BY event_type, date_format(from_iso8601_timestamp(arrival_time), '%Y-%m-%dT%H:%i'), event_date"
    )


def quarantined_query(database: str, user_id: str) -> str:
    """The user's quarantined records per date."""
    return f"SELECT quarantine_date, count(*) AS records FROM {database}.{lake.QUARANTINE_TABLE} WHERE user_id = {quoted(user_id)} GROUP BY quarantine_date"


def delete_statement(database: str, table: str, user_id: str) -> str:
    return f"DELETE FROM {database}.{table} WHERE user_id = {quoted(user_id)}"


def optimize_statement(database: str, table: str, partition: str, values: list[str]) -> str:
    # Athena allows only partition columns in OPTIMIZE's WHERE; files holding any matching row are rewritten
    # (https://docs.aws.amazon.com/athena/latest/ug/optimize-statement.html).
    return f"OPTIMIZE {database}.{table} REWRITE DATA USING BIN_PACK WHERE {partition} IN ({', '.join(quoted(v) for v in sorted(values))})"


def vacuum_statement(database: str, table: str) -> str:
    return f"VACUUM {database}.{table}"


@dataclass
class Erasure:
    """The erasure of users' data from one lake and its aggregates.

    :param athena: runs the statements in the lake's workgroup.
    :param database: the Glue database of the lake's tables.
    :param s3: a boto3 S3 client; ``reports_bucket`` holds the reports.
    :param dynamodb: a boto3 DynamoDB client; ``aggregates_table`` holds the aggregates.
    :param aggregate_seconds: how long an erasure item is kept (the aggregates' own TTL).
    """

    athena: AthenaQueries
    database: str
    s3: Any
    reports_bucket: str
    dynamodb: Any
    aggregates_table: str
    aggregate_seconds: int
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    def erase(self, request: ErasureRequestV1) -> dict[str, Any]:
        """Carry out ``request`` (or finish it, when a run before stopped part way); its report."""
        report = self._report(request.request_id)
        if report is not None and report["status"] == "done":
            return report
        if report is None:
            report = self._count(request)
            self._save(report)
        user = request.user_id
        for table in (lake.EVENTS_TABLE, lake.QUARANTINE_TABLE):
            self.athena.execute(delete_statement(self.database, table, user))
        report["aggregate_items"] = self._subtract(request.request_id, report["shares"])
        dates = {lake.EVENTS_TABLE: ("event_date", sorted({s["event_date"] for s in report["shares"]}))}
        dates[lake.QUARANTINE_TABLE] = ("quarantine_date", sorted(report["quarantined"]))
        for table, (partition, values) in dates.items():
            if values:
                self.athena.execute(optimize_statement(self.database, table, partition, values))
            self.athena.execute(vacuum_statement(self.database, table))
        report.update(status="done", finished_at=self.clock().isoformat(), athena_executions=list(self.athena.executions))
        self._save(report)
        return report

    def _count(self, request: ErasureRequestV1) -> dict[str, Any]:
        shares = [
            {"event_type": r["event_type"], "minute": r["minute"], "event_date": r["event_date"], "events": int(r["events"]), "late": int(r["late"])}
            for r in self.athena.run(shares_query(self.database, request.user_id))
        ]
        quarantined = {r["quarantine_date"]: int(r["records"]) for r in self.athena.run(quarantined_query(self.database, request.user_id))}
        return {
            "request_id": request.request_id,
            "user_id": request.user_id,
            "requested_at": request.requested_at.isoformat(),
            "counted_at": self.clock().isoformat(),
            "status": "counted",
            "removed": {lake.EVENTS_TABLE: sum(s["events"] for s in shares), lake.QUARANTINE_TABLE: sum(quarantined.values())},
            "shares": sorted(shares, key=lambda s: (s["event_type"], s["minute"], s["event_date"])),
            "quarantined": quarantined,
        }

    def _subtract(self, request_id: str, shares: list[dict[str, Any]]) -> int:
        """Write the items that take the user's share out of each minute that still has aggregates; how many."""
        per_minute: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        for share in shares:
            totals = per_minute[(share["event_type"], share["minute"])]
            totals[0] += share["events"]
            totals[1] += share["late"]
        kept = [(t, m, events, late) for (t, m), (events, late) in sorted(per_minute.items()) if self._has_aggregates(t, m)]
        expires_at = int(self.clock().timestamp()) + self.aggregate_seconds
        items = erasure_items(request_id, kept, expires_at)
        publisher = DynamoDbPublisher(self.dynamodb, self.aggregates_table, key_attributes=("pk", "sk"))
        publisher.publish({"PutRequest": {"Item": item}} for item in items).raise_for_failures()
        return len(items)

    def _has_aggregates(self, event_type: str, minute: str) -> bool:
        found = self.dynamodb.query(
            TableName=self.aggregates_table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :shard)",
            ExpressionAttributeValues={":pk": {"S": f"{event_type}#{minute}"}, ":shard": {"S": "shard#"}},
            Limit=1,
            ConsistentRead=True,
        )
        return bool(found.get("Items"))

    def _report(self, request_id: str) -> dict[str, Any] | None:
        try:
            body = self.s3.get_object(Bucket=self.reports_bucket, Key=f"{REPORT_PREFIX}{request_id}.json")["Body"].read()
        except self.s3.exceptions.NoSuchKey:
            return None
        return json.loads(body)

    def _save(self, report: dict[str, Any]) -> None:
        body = json.dumps(report, indent=2, sort_keys=True).encode()
        self.s3.put_object(Bucket=self.reports_bucket, Key=f"{REPORT_PREFIX}{report['request_id']}.json", Body=body, ContentType="application/json")
