"""Keep the accounts read model up to date from the event store's stream.

Reads the DynamoDB stream of the event store (``NEW_IMAGE``). The event
source mapping lets through only INSERTs of event items, and every event is
applied to the read model with ``read_model.apply``: a conditional update
that keeps the newest version of each account. A duplicate delivery, or an
event older than the read model, is a success that changes nothing
(``SkippedStaleEvents``), so retries and replays are harmless.

Binary attributes (``B``, ``BS``) arrive as base64 text, at the top of the
image or nested in maps and lists, and are decoded before the image is read.

A record that is not the INSERT of an event item (a MODIFY or REMOVE, a
snapshot, an image that does not read as an event, or one that fails to be
read in any other way) is logged with the reason and reported as a failed
item: the event store is append-only, so such a record means something else
writes to it, and it is not skipped silently.
Lambda retries a shard from its first failed record (the records after it
are applied again, harmlessly) until the mapping's retry limit, then sends a
description of the batch (shard and sequence numbers, not the records) to the
mapping's on-failure destination; the events stay in the store, and the
rebuild function can re-apply them to this read model. A record without its
``dynamodb.SequenceNumber``, which names it in the response, fails the
invocation with a ValueError.

Environment:
    READ_MODEL_TABLE    read model table (required)
"""

import base64
import os
from typing import Any

import boto3
import read_model
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from boto3.dynamodb.types import TypeDeserializer
from botocore.config import Config
from pydantic import ValidationError

# The attribute value types other than M and L, which nest.
SCALAR_TYPES = frozenset({"S", "N", "B", "BOOL", "NULL", "SS", "NS", "BS"})
# DynamoDB nests maps and lists at most 32 levels deep; an image deeper than that did not come from it.
MAX_NESTING = 32

READ_MODEL_TABLE = os.environ["READ_MODEL_TABLE"]

logger = Logger()
tracer = Tracer()
metrics = Metrics()
processor = BatchProcessor(event_type=EventType.DynamoDBStreams, raise_on_entire_batch_failure=False)
dynamodb = boto3.client("dynamodb", config=Config(retries={"mode": "standard", "max_attempts": 3}))
deserializer = TypeDeserializer()


class RejectedRecord(ValueError):
    """The record is not an appended event; it fails and ends at the mapping's on-failure destination."""


def _why_not_an_event(record: DynamoDBRecord) -> tuple[str, dict[str, Any] | None]:
    """The reason the record cannot be projected ("" when it can) and its new image as plain values."""
    event_name = record.get("eventName")
    if event_name != "INSERT":
        return f"eventName is {event_name!r}: the event store is append-only, only INSERT records are projected", None
    stream_record = record.get("dynamodb")
    image = stream_record.get("NewImage") if isinstance(stream_record, dict) else None
    if not isinstance(image, dict) or not image:
        return "no NewImage: the stream must carry new images", None
    try:
        return "", {name: deserializer.deserialize(_from_stream(value, name)) for name, value in image.items()}
    except Exception as exc:  # whatever reading one image raises is that record's failure
        return f"NewImage is not DynamoDB JSON: {exc if isinstance(exc, ValueError) else f'{type(exc).__name__}: {exc}'}", None


def _binary(text: Any, path: str, kind: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {kind} is not base64 ({exc})") from None


def _from_stream(value: Any, path: str, depth: int = 0) -> dict[str, Any]:
    """``value`` as TypeDeserializer takes it (B and BS decoded from the stream's base64), or ValueError unless it is
    one DynamoDB attribute value: exactly one known type key.

    TypeDeserializer reads only the first key of a value, so ``{"S": "a", "N": "1"}``
    would pass through it as "a"; a stream record never looks like that.
    """
    if depth > MAX_NESTING:
        raise ValueError(f"{path}: nested deeper than the {MAX_NESTING} levels DynamoDB allows")
    if not isinstance(value, dict) or len(value) != 1:
        raise ValueError(f"{path}: an attribute value is an object with exactly one type key")
    [(kind, inner)] = value.items()
    if kind == "M":
        if not isinstance(inner, dict):
            raise ValueError(f"{path}: M holds an object")
        return {"M": {name: _from_stream(item, f"{path}.{name}", depth + 1) for name, item in inner.items()}}
    if kind == "L":
        if not isinstance(inner, list):
            raise ValueError(f"{path}: L holds a list")
        return {"L": [_from_stream(item, f"{path}[{index}]", depth + 1) for index, item in enumerate(inner)]}
    if kind == "B":
        return {"B": _binary(inner, path, "B")}
    if kind == "BS":
        if not isinstance(inner, list):
            raise ValueError(f"{path}: BS holds a list")
        return {"BS": [_binary(item, path, "BS") for item in inner]}
    if kind not in SCALAR_TYPES:
        raise ValueError(f"{path}: unknown type {kind!r}")
    return value


def parse_record(record: DynamoDBRecord) -> read_model.AccountEvent:
    reason, item = _why_not_an_event(record)
    if item is not None:
        try:
            return read_model.parse_item(item)
        except ValidationError as exc:
            reason = read_model.describe(exc)
        except Exception as exc:  # any failure to read one record is that record's failure
            reason = f"the image is not an event: {type(exc).__name__}: {exc}"
    stream_record = record.get("dynamodb") if isinstance(record.get("dynamodb"), dict) else {}
    logger.error(
        "Rejected record",
        extra={"event_id": record.get("eventID"), "sequence_number": stream_record.get("SequenceNumber"), "keys": stream_record.get("Keys"), "reason": reason},
    )
    metrics.add_metric(name="RejectedRecords", unit=MetricUnit.Count, value=1)
    raise RejectedRecord(reason)


@tracer.capture_method
def record_handler(record: DynamoDBRecord) -> bool:
    event = parse_record(record)
    applied = read_model.apply(dynamodb, READ_MODEL_TABLE, event)
    details = {"account_id": event.aggregate_id, "version": event.version, "event_type": event.type}
    if applied:
        logger.debug("Event applied to the read model", extra=details)
        metrics.add_metric(name="EventsProjected", unit=MetricUnit.Count, value=1)
    else:
        logger.info("Read model already at this version or a newer one, nothing changed", extra=details)
        metrics.add_metric(name="SkippedStaleEvents", unit=MetricUnit.Count, value=1)
    return applied


def _check_stream_event(event: Any) -> None:
    """Every record must be one the response can name; the rest of a record is read record by record."""
    records = event.get("Records") if isinstance(event, dict) else None
    if not isinstance(records, list):
        raise ValueError('not a DynamoDB stream event: expected "Records", a list of records')
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise ValueError(f"not a DynamoDB stream event: Records[{index}] is {type(record).__name__}, expected a record object")
        stream_record = record.get("dynamodb")
        if not isinstance(stream_record, dict) or not isinstance(stream_record.get("SequenceNumber"), str) or not stream_record["SequenceNumber"]:
            raise ValueError(
                f"not a DynamoDB stream event: Records[{index}] has no dynamodb.SequenceNumber, which names a record in the partial batch response"
            )


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    _check_stream_event(event)
    response = process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
    # Partial failures are not invocation errors, so they get a metric of their own.
    metrics.add_metric(name="FailedRecords", unit=MetricUnit.Count, value=len(response["batchItemFailures"]))
    return response
