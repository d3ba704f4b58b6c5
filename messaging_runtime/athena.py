"""Run one Amazon Athena statement to its end and read its rows: what a handler needs to query or change a lake table.

``AthenaQueries(client, workgroup="analytics").run(sql)`` starts the query
in the workgroup (which holds the result location and its encryption, so the
caller names neither), waits for it with backoff (0.25 s doubling to 5 s) until
it succeeds, fails or is cancelled, and returns the result's rows as dicts of
text (Athena returns every value as text; a NULL is None); ``execute(sql)``
does the same for a statement and returns its execution id. A statement that
fails raises ``QueryFailed`` with Athena's reason and the query execution id;
one still running after ``timeout_seconds`` is stopped and raises too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

_DONE = ("SUCCEEDED", "FAILED", "CANCELLED")


class QueryFailed(Exception):
    """An Athena statement did not succeed. ``execution_id`` names it in Athena's history."""

    def __init__(self, message: str, execution_id: str) -> None:
        super().__init__(message)
        self.execution_id = execution_id


class AthenaQueries:
    """Athena statements run to their end in one workgroup.

    :param client: a boto3 Athena client. Required.
    :param workgroup: the workgroup (result location, encryption, bytes-scanned limit). Required.
    :param timeout_seconds: the longest one statement may run before it is stopped. Default: 600.
    :param sleep: how to wait between polls (tests pass a no-op). Default: ``time.sleep``.
    """

    def __init__(self, client: Any, *, workgroup: str, timeout_seconds: float = 600, sleep: Callable[[float], None] = time.sleep) -> None:
        self.client = client
        self.workgroup = workgroup
        self.timeout_seconds = timeout_seconds
        self.sleep = sleep
        #: The execution id of every statement run, in order: what a report names.
        self.executions: list[str] = []

    def run(self, sql: str) -> list[dict[str, str | None]]:
        """Run the query ``sql`` and return its rows."""
        return self._rows(self.execute(sql))

    def execute(self, sql: str) -> str:
        """Run the statement ``sql`` (DELETE, OPTIMIZE, VACUUM, DDL) to its end; its query execution id."""
        execution_id = self.client.start_query_execution(QueryString=sql, WorkGroup=self.workgroup)["QueryExecutionId"]
        self.executions.append(execution_id)
        waited, pause = 0.0, 0.25
        while True:
            status = self.client.get_query_execution(QueryExecutionId=execution_id)["QueryExecution"]["Status"]
            if status["State"] in _DONE:
                break
            if waited >= self.timeout_seconds:
                self.client.stop_query_execution(QueryExecutionId=execution_id)
                raise QueryFailed(f"still running after {self.timeout_seconds:g} s, stopped: {sql[:200]}", execution_id)
            self.sleep(pause)
            waited, pause = waited + pause, min(pause * 2, 5.0)
        if status["State"] != "SUCCEEDED":
            reason = status.get("StateChangeReason") or status.get("AthenaError", {}).get("ErrorMessage") or "no reason given"
            raise QueryFailed(f"{status['State']}: {reason}: {sql[:200]}", execution_id)
        return execution_id

    def _rows(self, execution_id: str) -> list[dict[str, str | None]]:
        rows: list[dict[str, str | None]] = []
        columns: list[str] | None = None
        for page in self.client.get_paginator("get_query_results").paginate(QueryExecutionId=execution_id):
            result = page["ResultSet"]
            if columns is None:
                columns = [column["Name"] for column in result.get("ResultSetMetadata", {}).get("ColumnInfo", [])]
                data = result.get("Rows", [])[1:]  # the first row of the first page repeats the column names
            else:
                data = result.get("Rows", [])
            rows.extend({name: cell.get("VarCharValue") for name, cell in zip(columns, row["Data"], strict=False)} for row in data)
        return rows
