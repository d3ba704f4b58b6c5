"""The steps of the content-encoding workflow: encode an uploaded title, publish it, and undo or record a failure.

Invoked by the workflow (``lambda:invoke``) with ``{"action": ..., "title": {...}}``, the title being the
``TitleUploaded`` detail (``messaging_runtime.contracts.viewing``). An upload is ``pk = "upload#<upload_id>"`` in the
encodings table, ENCODED (with its renditions), PUBLISHED or DISCARDED, and its ``outcome`` when the workflow failed.

- ``encode``: one rendition per profile (a stand-in: the names the encoder would write), recorded ENCODED:
  ``{"renditions": [...]}``; a source that is not a mezzanine file (``.mov`` or ``.mxf``) is refused (``EncodeFailed``);
- ``publish``: ENCODED to PUBLISHED, then ``TitlePublished`` on the bus (again on a retry: consumers dedupe on its
  ``event_id``): ``{"published": true}``;
- ``discard`` (the compensation of ``encode``): DISCARDED unless published, or a DISCARDED tombstone when nothing was
  encoded, so that a late encode stops (``EncodingDiscarded``): ``{"discarded": bool}``;
- ``record`` with ``"to"`` COMPENSATING (the failure path's first step), COMPENSATED or ABANDONED: writes the outcome;
  COMPENSATING finds a PUBLISHED upload done and raises ``SagaAlreadyCompleted``, so nothing is undone.

All are idempotent. Input the workflow never sends raises ``InvalidSagaInput``.

Environment: ENCODINGS_TABLE_NAME, BUS_NAME (required).
"""

import json
import os
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from boto3.dynamodb.conditions import Attr

from messaging_runtime.contracts.viewing import STUDIO_SOURCE, TITLE_PUBLISHED, TITLE_UPLOADED, TitleUploadedV1
from messaging_runtime.rejection import reason_of
from messaging_runtime.saga_steps import InvalidSagaInput, SagaAlreadyCompleted

logger, tracer, metrics = Logger(), Tracer(), Metrics()
table = boto3.resource("dynamodb").Table(os.environ["ENCODINGS_TABLE_NAME"])
events = boto3.client("events")
BUS_NAME = os.environ["BUS_NAME"]
CHECK_FAILED = table.meta.client.exceptions.ConditionalCheckFailedException
MEZZANINE = (".mov", ".mxf")
OUTCOMES = ("COMPENSATING", "COMPENSATED", "ABANDONED")


class EncodeFailed(Exception):
    """The source cannot be encoded."""


class EncodingDiscarded(Exception):
    """The upload was discarded (the workflow compensated) before it was encoded."""


def key(title: TitleUploadedV1) -> dict[str, str]:
    return {"pk": f"upload#{title.upload_id}"}


def stored(title: TitleUploadedV1) -> dict[str, Any] | None:
    return table.get_item(Key=key(title), ConsistentRead=True).get("Item")


def encode(title: TitleUploadedV1, _: dict[str, Any]) -> dict[str, Any]:
    found = stored(title)
    if found is None:
        if not title.source_uri.lower().endswith(MEZZANINE):
            raise EncodeFailed(f"upload {title.upload_id}: {title.source_uri} is not a mezzanine file ({', '.join(MEZZANINE)})")
        base = title.source_uri.rsplit(".", 1)[0]
        renditions = [f"{base}/{profile}.mp4" for profile in title.profiles]
        try:
            table.put_item(
                Item={**key(title), "status": "ENCODED", "title_id": title.title_id, "renditions": renditions}, ConditionExpression=Attr("pk").not_exists()
            )
            return {"renditions": renditions}
        except CHECK_FAILED:
            found = stored(title)  # a concurrent encode or discard got there first
    if found["status"] == "DISCARDED":
        raise EncodingDiscarded(f"upload {title.upload_id} was discarded before it was encoded")
    return {"renditions": found["renditions"]}


def publish(title: TitleUploadedV1, _: dict[str, Any]) -> dict[str, Any]:
    try:
        table.update_item(
            Key=key(title), UpdateExpression="SET #s = :published", ConditionExpression="#s IN (:encoded, :published)",
            ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues={":published": "PUBLISHED", ":encoded": "ENCODED"},
        )  # fmt: skip
    except CHECK_FAILED:
        raise EncodingDiscarded(f"upload {title.upload_id} is not encoded (discarded or never encoded)") from None
    detail = TITLE_PUBLISHED.current(
        version=1, event_id=f"{title.upload_id}-published", upload_id=title.upload_id, title_id=title.title_id, renditions=stored(title)["renditions"]
    )
    entry = {"Source": STUDIO_SOURCE, "DetailType": TITLE_PUBLISHED.name, "Detail": detail.model_dump_json(), "EventBusName": BUS_NAME}
    answer = events.put_events(Entries=[entry])
    if answer.get("FailedEntryCount"):  # raised, so that the workflow retries the step (the update above is idempotent)
        raise RuntimeError(f"TitlePublished was not put on the bus: {answer['Entries'][0].get('ErrorCode')}")
    return {"published": True}


def discard(title: TitleUploadedV1, _: dict[str, Any]) -> dict[str, Any]:
    try:
        table.update_item(
            Key=key(title), UpdateExpression="SET #s = :discarded", ConditionExpression="attribute_not_exists(pk) OR #s <> :published",
            ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues={":discarded": "DISCARDED", ":published": "PUBLISHED"},
        )  # fmt: skip
    except CHECK_FAILED:
        return {"discarded": False}
    return {"discarded": True}


def record(title: TitleUploadedV1, event: dict[str, Any]) -> dict[str, Any]:
    to = event.get("to")
    if to not in OUTCOMES:
        raise InvalidSagaInput(f"expected 'to' to be one of {', '.join(OUTCOMES)}, got {str(to)[:40]}")
    found = stored(title)
    if to == "COMPENSATING" and found is not None and found["status"] == "PUBLISHED":
        raise SagaAlreadyCompleted(f"upload {title.upload_id} is published: nothing to undo")
    error = event.get("error") if isinstance(event.get("error"), dict) else {}
    table.update_item(
        Key=key(title), UpdateExpression="SET outcome = :to, #e = :error",
        ExpressionAttributeNames={"#e": "error"}, ExpressionAttributeValues={":to": to, ":error": str(error.get("Error", ""))[:200]},
    )  # fmt: skip
    return {"outcome": to}


ACTIONS = {"encode": encode, "publish": publish, "discard": discard, "record": record}


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    action = event.get("action") if isinstance(event, dict) else None
    try:
        if action not in ACTIONS:
            raise InvalidSagaInput(f'expected {{"action": {" | ".join(ACTIONS)}, "title": {{...}}}}, got {str(event)[:200]}')
        try:
            title = TITLE_UPLOADED.parse(event.get("title"))
        except Exception as error:
            raise InvalidSagaInput(reason_of(error, what="the title")) from None
        result = ACTIONS[action](title, event)
    except (EncodeFailed, EncodingDiscarded, InvalidSagaInput, SagaAlreadyCompleted) as error:
        metrics.add_metric(name=type(error).__name__, unit=MetricUnit.Count, value=1)
        logger.warning("Encoding step refused", extra={"action": action, "error": type(error).__name__, "reason": str(error)})
        raise
    logger.info("Encoding step done", extra={"action": action, "upload_id": title.upload_id, **json.loads(json.dumps(result))})
    return result
