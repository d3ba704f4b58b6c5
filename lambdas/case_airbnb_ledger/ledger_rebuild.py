"""Rebuild the ledger read model from the whole bookings event store.

Invoked by hand with ``{}`` (into ``REBUILD_TABLE``) or ``{"target_table": "<name>"}`` (a table the function was
granted), and ``{"start_key": ...}`` to go on where an earlier invocation stopped. Scans the store (strongly
consistent, event items only), reads each item with its contract in any schema version, as the stream consumer does
(``ledger.parse_item``), and applies it with ``ledger.apply``: the newest version of each booking wins whatever the
order of the scan, so rebuilding into an empty table, an up-to-date one, or while the stream consumer writes gives
the same ledger. An item that does not read is logged, counted in ``rejected`` and listed (the first 50); the rebuild
goes on. With less than a minute left it stops after the page it is on and answers ``"complete": false`` and
``next_start_key``.

Answer: ``{"events", "aggregates", "already_current", "rejected", "rejected_items", "complete", "target_table"}``.

Environment: EVENT_STORE_TABLE (required), REBUILD_TABLE (the default target).
"""

import os
from typing import Any

import boto3
import ledger
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config

from messaging_runtime.event_sourcing import rebuild

REMAINING_TIME_MARGIN_MS = 60_000
EVENT_STORE_TABLE = os.environ["EVENT_STORE_TABLE"]
REBUILD_TABLE = os.environ.get("REBUILD_TABLE") or None
logger, tracer, metrics = Logger(), Tracer(), Metrics()
dynamodb = boto3.client("dynamodb", config=Config(retries={"mode": "standard", "max_attempts": 5}))


def target_of(event: Any) -> tuple[str, dict[str, Any] | None]:
    """The table to rebuild into and where to start; ValueError naming what is wrong with the request."""
    if not isinstance(event, dict) or set(event) - {"target_table", "start_key"}:
        raise ValueError(f'expected {{"target_table"?: <name>, "start_key"?: {{...}}}}, got {str(event)[:200]}')
    target = event.get("target_table") or REBUILD_TABLE
    if not isinstance(target, str) or not target:
        raise ValueError("no target table: the request names none and REBUILD_TABLE is not set")
    if target == EVENT_STORE_TABLE:
        raise ValueError("the target table cannot be the event store")
    start_key = event.get("start_key")
    if start_key is not None and not isinstance(start_key, dict):
        raise ValueError("start_key must be the next_start_key of an earlier answer")
    return target, start_key


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    target, start_key = target_of(event if event is not None else {})
    result = rebuild(
        dynamodb,
        EVENT_STORE_TABLE,
        lambda item: ledger.apply(dynamodb, target, ledger.parse_item(item)),
        start_key=start_key,
        keep_going=lambda: context.get_remaining_time_in_millis() >= REMAINING_TIME_MARGIN_MS,
        on_rejected=lambda item, error: logger.error("Rejected item", extra={**item, "reason": str(error)}),
    )
    result["target_table"] = target
    metrics.add_metric(name="EventsRebuilt", unit=MetricUnit.Count, value=result["events"])
    metrics.add_metric(name="RejectedItems", unit=MetricUnit.Count, value=result["rejected"])
    logger.info("Rebuild finished" if result["complete"] else "Rebuild stopped before the end, to be continued", extra=result)
    return result
