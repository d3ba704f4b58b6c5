"""Rebuild the accounts read model from the whole event store.

Invoked by hand, with ``{}`` to rebuild into ``REBUILD_TABLE`` or with
``{"target_table": "<name>"}`` (the function can write only to the tables
it was granted). It scans the event store with strongly consistent reads,
keeps the event items (snapshots are filtered out), reads each with its
contract (``read_model.parse_item``, as the stream consumer does) and applies
it with ``read_model.apply``, the update the stream consumer makes: the newest
version of each account wins whatever the order of the scan, so rebuilding
into an empty table, into a table that is already up to date, or while the
stream consumer keeps writing to the same table gives the same result.

Answer::

    {"events": <event items applied or already current>, "accounts": <distinct accounts>,
     "target_table": <name>, "already_current": <events the table already had a newer or equal version of>,
     "rejected": <items that are not valid events>, "rejected_items": [<the first 50 of them, with the reason>],
     "complete": true}

An item that does not read as an event (or fails to be read in any other
way) is logged with the reason, counted in ``rejected`` and listed, and the
rebuild goes on with the others. Scan hands binary attributes over as bytes,
so unlike the stream consumer the rebuild has no base64 to decode.

When less than a minute of the invocation's time is left, the rebuild stops
after the page it is on and answers ``"complete": false`` with a
``next_start_key``; invoking it again with ``{"start_key": <that key>}`` (and
the same target table) goes on where it stopped. The counts are per
invocation.

Environment:
    EVENT_STORE_TABLE   event store table (required)
    REBUILD_TABLE       default target table (required unless every request names one)
    SCAN_PAGE_SIZE      items per Scan page, default 0: as many as fit in 1 MB
"""

import os
from typing import Annotated, Any

import boto3
import read_model
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from boto3.dynamodb.types import TypeDeserializer
from botocore.config import Config
from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError

from messaging_runtime.event_sourcing import rebuild
from messaging_runtime.rejection import reason_of, validation_reason

REMAINING_TIME_MARGIN_MS = 60_000

EVENT_STORE_TABLE = os.environ["EVENT_STORE_TABLE"]
REBUILD_TABLE = os.environ.get("REBUILD_TABLE") or None
SCAN_PAGE_SIZE = max(0, int(os.environ.get("SCAN_PAGE_SIZE", "0")))

logger = Logger()
tracer = Tracer()
metrics = Metrics()
dynamodb = boto3.client("dynamodb", config=Config(retries={"mode": "standard", "max_attempts": 5}))
deserializer = TypeDeserializer()

TableName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{3,255}$")]


class RebuildRequest(BaseModel):
    model_config = ConfigDict(strict=True, frozen=True, extra="forbid")

    target_table: TableName | None = None
    start_key: dict[str, dict[str, str]] | None = None


def target_of(event: Any) -> tuple[str, dict[str, Any] | None]:
    """The table to rebuild into and where to start; ValueError naming what is wrong with the request."""
    try:
        request = RebuildRequest.model_validate(event if event is not None else {})
    except ValidationError as exc:
        raise ValueError(f"invalid rebuild request: {validation_reason(exc, root='item')}") from None
    target = request.target_table or REBUILD_TABLE
    if target is None:
        raise ValueError("no target table: the request names none and REBUILD_TABLE is not set")
    if target == EVENT_STORE_TABLE:
        raise ValueError("the target table cannot be the event store")
    return target, request.start_key


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        target, start_key = target_of(event)
    except ValueError as exc:
        logger.error("Rebuild request refused", extra={"reason": str(exc)})
        metrics.add_metric(name="RebuildRequestsRefused", unit=MetricUnit.Count, value=1)
        raise
    logger.info("Rebuild started", extra={"target_table": target, "start_key": start_key})
    result = rebuild(
        dynamodb,
        EVENT_STORE_TABLE,
        lambda item: read_model.apply(dynamodb, target, read_model.parse_item(item)),
        start_key=start_key,
        page_size=SCAN_PAGE_SIZE,
        keep_going=lambda: context.get_remaining_time_in_millis() >= REMAINING_TIME_MARGIN_MS,
        on_rejected=lambda item, error: logger.error("Rejected item", extra={**item, "reason": reason_of(error, what="the item")}),
        # Plain values as TypeDeserializer gives them (the accounts contract reads Decimals), not made into ints.
        read=lambda raw: {name: deserializer.deserialize(value) for name, value in raw.items()},
        reason=lambda error: reason_of(error, what="the item"),
    )
    result["accounts"] = result.pop("aggregates")
    result["target_table"] = target
    metrics.add_metric(name="EventsRebuilt", unit=MetricUnit.Count, value=result["events"])
    metrics.add_metric(name="RejectedItems", unit=MetricUnit.Count, value=result["rejected"])
    logger.info("Rebuild finished" if result["complete"] else "Rebuild stopped before the end, to be continued", extra=result)
    return result
