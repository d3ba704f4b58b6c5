"""Readers: one record of a batch source to the value a handler's effect takes.

Each returns a function for ``BatchConsumer(read=...)``; whatever it raises
becomes that record's ``Rejected`` reason.

- ``sqs_json(Model)``: an SQS message body (raw SNS delivery included) as ``Model``;
- ``eventbridge_in_sqs(Model)``: an EventBridge event a rule delivered to an SQS
  queue, its ``detail`` as ``Model``; ``detail-type`` and ``source`` are checked too;
- ``new_image``: a DynamoDB stream record's ``NewImage``
  as plain Python values, binary attributes decoded from the stream's base64;
- ``kafka_json(Model)``: a Kafka record's value (base64 JSON) as ``Model``;
  a tombstone (no value) is ``Skipped``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Collection
from typing import Any, TypeVar

from boto3.dynamodb.types import TypeDeserializer
from pydantic import BaseModel

from .rejection import Rejected, Skipped, parse_json, parse_object, reason_of

M = TypeVar("M", bound=BaseModel)

#: DynamoDB's attribute value types that do not nest.
SCALAR_TYPES = frozenset({"S", "N", "B", "BOOL", "NULL", "SS", "NS", "BS"})
#: DynamoDB nests maps and lists at most 32 levels deep; an image deeper than that did not come from it.
MAX_NESTING = 32

_deserializer = TypeDeserializer()


def sqs_json(model: type[M]) -> Callable[[Any], M]:
    """An SQS record's body read as ``model``."""

    def read(record: Any) -> M:
        body = record.get("body")
        if not isinstance(body, str):
            raise Rejected("the record has no body")
        return parse_json(model, body)

    return read


def eventbridge_in_sqs(model: type[M], *, detail_types: Collection[str] = (), sources: Collection[str] = ()) -> Callable[[Any], M]:
    """The ``detail`` of the EventBridge event an SQS record carries, read as ``model``.

    :param detail_types: accepted ``detail-type`` values. Default: any.
    :param sources: accepted ``source`` values. Default: any.
    """

    def read(record: Any) -> M:
        body = record.get("body")
        if not isinstance(body, str):
            raise Rejected("the record has no body")
        try:
            event = json.loads(body)
        except Exception as error:
            raise Rejected(reason_of(error)) from error
        if not isinstance(event, dict) or not isinstance(event.get("detail"), dict):
            raise Rejected("the body is not an EventBridge event: expected an object with a 'detail' object")
        if detail_types and event.get("detail-type") not in detail_types:
            raise Rejected(f"detail-type {event.get('detail-type')!r} is not one of {sorted(detail_types)}")
        if sources and event.get("source") not in sources:
            raise Rejected(f"source {event.get('source')!r} is not one of {sorted(sources)}")
        return parse_object(model, event["detail"], what="the detail")

    return read


def _binary(text: Any, path: str, kind: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: {kind} is not base64 ({error})") from None


def _from_stream(value: Any, path: str, depth: int = 0) -> dict[str, Any]:
    """``value`` as TypeDeserializer takes it (B and BS decoded from the stream's base64), or ValueError unless it is
    one DynamoDB attribute value: exactly one known type key (TypeDeserializer reads only the first key of a value)."""
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


def new_image(record: Any, *, event_names: Collection[str] = ("INSERT",)) -> dict[str, Any]:
    """A DynamoDB stream record's ``NewImage`` as plain values (``Decimal`` numbers, ``bytes`` binaries), or ``Rejected``.

    :param event_names: the record kinds accepted. Default: ``INSERT`` only (an append-only table).
    """
    event_name = record.get("eventName")
    if event_name not in event_names:
        raise Rejected(f"eventName is {event_name!r}: only {', '.join(sorted(event_names))} records are read")
    stream = record.get("dynamodb")
    image = stream.get("NewImage") if isinstance(stream, dict) else None
    if not isinstance(image, dict) or not image:
        raise Rejected("no NewImage: the stream must carry new images")
    try:
        return {name: _deserializer.deserialize(_from_stream(value, name)) for name, value in image.items()}
    except Exception as error:  # whatever reading one image raises is that record's failure
        raise Rejected(f"NewImage is not DynamoDB JSON: {error if isinstance(error, ValueError) else f'{type(error).__name__}: {error}'}") from error


def kafka_json(model: type[M], *, tombstone_metric: str = "TombstonesSkipped", key_field: str | None = None) -> Callable[[Any], M]:
    """A Kafka record's value (base64 of JSON text) read as ``model``; a record without a value (a tombstone) is ``Skipped``.

    Lambda leaves out the ``value`` of a record whose value is null, as it leaves out a null key. A tombstone
    deletes a key on a compacted topic and carries no event: there is nothing to read and nothing a retry could
    change, so it is skipped and counted, never failed.

    :param key_field: the event's field the record's key must be (its text, as the producer keys it); a record
        with no key, a key that is not base64 or another key is ``Rejected``. Default: the key is not checked.
    """

    def read(record: Any) -> M:
        raw = record.raw_event.get("value")
        if raw is None:
            raise Skipped("a tombstone (no value) carries no event", metric=tombstone_metric)
        try:
            text = base64.b64decode(raw, validate=True)
        except Exception as error:
            raise Rejected(f"the value is not base64: {type(error).__name__}: {error}") from error
        event = parse_json(model, text, what="the value")
        if key_field is not None:
            _check_key(record.raw_event.get("key"), key_field, getattr(event, key_field))
        return event

    return read


def _check_key(key: Any, field: str, value: str) -> None:
    if key == base64.b64encode(value.encode()).decode():  # the usual case, without decoding
        return
    if key is None:
        raise Rejected("the record has no key")
    try:
        text = base64.b64decode(key, validate=True).decode(errors="backslashreplace")
    except (TypeError, ValueError) as error:
        raise Rejected(f"the key is not base64: {error}") from None
    raise Rejected(f"key {text!r} is not the event's {field} {value!r}")
