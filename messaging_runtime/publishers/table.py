"""DynamoDB BatchWriteItem: item sizes as DynamoDB counts them, one write per key per call, UnprocessedItems retried."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from .core import INVALID_ENTRY, Answer, BatchPublisher, Entry, Prepared, Rejected, Retry, failure, mapping, utf8_size

# BatchWriteItem: "up to 16MB of data over the network, consisting of up to 25 item put or delete operations"; the
# whole call is refused when it holds two operations on one item, an item over 400 KB, more than 16 MB, or a key
# over 2048 bytes (partition key) or 1024 bytes (sort key). Unprocessed writes come back in UnprocessedItems.
# https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchWriteItem.html
# Item size: attribute names plus values, counted as "DynamoDB item sizes and formats" says (``item_size`` below):
# https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html
DYNAMODB_MAX_ENTRIES = 25
DYNAMODB_MAX_ITEM_BYTES = 400 * 1024
DYNAMODB_MAX_REQUEST_BYTES = 16 * 1024 * 1024
_MAX_KEY_BYTES = (2048, 1024)  # partition key, sort key
_KEY_TYPES = ("S", "N", "B")
_EXPONENT = re.compile(r"[eE]")


def _number_size(text: Any) -> int:
    """1 byte per two significant digits (leading and trailing zeroes trimmed), plus 1; rounded up."""
    mantissa = _EXPONENT.split(str(text).strip().lstrip("+-"), maxsplit=1)[0].replace(".", "")
    digits = len(mantissa.strip("0")) or 1
    return (digits + 1) // 2 + 1


def _key_value(kind: str, inner: Any, name: str) -> Any:
    """A key value as DynamoDB compares it: "1.0" and "1" are one number, so they are one key."""
    if kind == "N":
        try:
            return str(Decimal(str(inner)).normalize())
        except InvalidOperation:
            raise Rejected(INVALID_ENTRY, f"key attribute {name!r} is not a number: {inner!r:.40}") from None
    return bytes(inner) if isinstance(inner, (bytes, bytearray)) else str(inner)


def attribute_size(value: Any) -> int:
    """The size of one AttributeValue (``{"S": "..."}``, ``{"M": {...}}``...), without its name."""
    if not isinstance(value, Mapping) or len(value) != 1:
        raise Rejected(INVALID_ENTRY, f"an attribute value must be a dict with one type, got {value!r:.80}")
    ((kind, inner),) = value.items()
    if kind in ("S", "B"):
        return utf8_size(inner)
    if kind == "N":
        return _number_size(inner)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind in ("SS", "BS"):
        return sum(utf8_size(element) for element in inner)
    if kind == "NS":
        return sum(_number_size(element) for element in inner)
    if kind == "L" and isinstance(inner, Sequence) and not isinstance(inner, (str, bytes)):
        return 3 + sum(1 + attribute_size(element) for element in inner)
    if kind == "M" and isinstance(inner, Mapping):
        return 3 + sum(1 + utf8_size(name) + attribute_size(element) for name, element in inner.items())
    raise Rejected(INVALID_ENTRY, f"unknown attribute value type {kind!r}")


def item_size(item: Mapping[str, Any]) -> int:
    """The size DynamoDB counts for an item: each attribute's name in UTF-8 plus its value (see the guide above)."""
    return sum(utf8_size(name) + attribute_size(value) for name, value in item.items())


def _wire_bytes(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)  # type: ignore[return-value]
    raise TypeError(f"not serializable: {type(value).__name__}")


def request_size(entry: Entry) -> int:
    """The entry's share of the request as botocore sends it: compact JSON, binary values in base64."""
    return len(json.dumps(entry, separators=(",", ":"), default=_wire_bytes)) + 1


class DynamoDbPublisher(BatchPublisher):
    """Writes items to one table with BatchWriteItem: up to 25 puts and deletes per call, 400 KB per item, 16 MB in all.

    Entries are ``WriteRequest`` dicts (``{"PutRequest": {"Item": {...}}}`` or
    ``{"DeleteRequest": {"Key": {...}}}``) in the low-level client's
    AttributeValue form. ``key_attributes`` names the table's key so that a call
    never holds two writes of one item (DynamoDB refuses such a call whole):
    writes of one key go in input order, one per call, and once one of them
    fails the later ones are reported, not sent, so an older write can never
    land after a newer one. UnprocessedItems are retried in the next round.

    :param client: a boto3 DynamoDB client. Required.
    :param table_name: the table's name or ARN. Required.
    :param key_attributes: the partition key's name, then the sort key's if the table has one. Required.
    :param retry: rounds and backoff. Default: ``Retry()``.
    """

    api = "DynamoDB BatchWriteItem"
    max_entries = DYNAMODB_MAX_ENTRIES
    retryable_call_codes = frozenset({"InternalServerError", "ReplicatedWriteConflictException"})
    group_stopped_message = "an earlier write of its key was not sent"

    def __init__(self, client: Any, table_name: str, *, key_attributes: Sequence[str], retry: Retry | None = None) -> None:
        key_attributes = tuple(key_attributes)
        if isinstance(key_attributes, str) or not 1 <= len(key_attributes) <= 2 or not all(isinstance(name, str) and name for name in key_attributes):
            raise ValueError(f"key_attributes must name the partition key and, if any, the sort key, got {key_attributes!r}")
        super().__init__(client, table_name, max_entry_bytes=DYNAMODB_MAX_ITEM_BYTES, max_request_bytes=DYNAMODB_MAX_REQUEST_BYTES, ordered=True, retry=retry)
        self.key_attributes = key_attributes

    def _key(self, attributes: Mapping[str, Any]) -> tuple[Any, ...]:
        """The item's key as a hashable value; Rejected if a key attribute is missing, of a key type or too long."""
        key = []
        for name, limit in zip(self.key_attributes, _MAX_KEY_BYTES, strict=False):
            value = attributes.get(name)
            if not isinstance(value, Mapping) or len(value) != 1 or next(iter(value)) not in _KEY_TYPES:
                raise Rejected(INVALID_ENTRY, f"key attribute {name!r} must be an S, N or B value")
            ((kind, inner),) = value.items()
            if utf8_size(inner) > limit:
                raise Rejected(INVALID_ENTRY, f"key attribute {name!r} is {utf8_size(inner)} bytes, over DynamoDB's {limit}-byte limit")
            key.append((kind, _key_value(kind, inner, name)))
        return tuple(key)

    def _write(self, entry: Mapping[str, Any]) -> tuple[Mapping[str, Any], bool]:
        if len(entry) != 1 or not isinstance(entry.get("PutRequest", entry.get("DeleteRequest")), Mapping):
            raise Rejected(INVALID_ENTRY, "an entry must be {'PutRequest': {'Item': ...}} or {'DeleteRequest': {'Key': ...}}")
        if "PutRequest" in entry:
            attributes = entry["PutRequest"].get("Item")
        else:
            attributes = entry["DeleteRequest"].get("Key")
        if not isinstance(attributes, Mapping):
            raise Rejected(INVALID_ENTRY, "a PutRequest needs an Item and a DeleteRequest a Key, each a dict")
        return attributes, "DeleteRequest" in entry

    def _prepare(self, index: int, entry: Entry) -> Prepared:
        attributes, is_delete = self._write(mapping(entry, self.api))
        key = self._key(attributes)
        if is_delete and set(attributes) != set(self.key_attributes):
            raise Rejected(INVALID_ENTRY, f"a DeleteRequest's Key must hold exactly {', '.join(self.key_attributes)}", group=key)
        try:
            size = item_size(attributes)
            wire_size = request_size(entry)
        except TypeError as error:
            raise Rejected(INVALID_ENTRY, str(error), group=key) from None
        except Rejected as rejected:
            raise Rejected(rejected.code, rejected.message, group=key) from None
        return Prepared(entry, size=size, request_size=wire_size, group=key)

    def _send(self, wire: list[Entry]) -> list[Answer]:
        response = self.client.batch_write_item(RequestItems={self.target: wire})
        unprocessed = set()
        # One table per call, so every unprocessed write is one of ours, whichever way the table is named.
        for request in (write for writes in (response.get("UnprocessedItems") or {}).values() for write in writes or []):
            try:
                unprocessed.add(self._key(self._write(request)[0]))
            except Rejected:
                continue
        answers = []
        for entry in wire:
            if self._key(self._write(entry)[0]) in unprocessed:
                answers.append(failure("UnprocessedItems", "DynamoDB returned the write unprocessed", retryable=True))
            else:
                answers.append(Answer(result={}))
        return answers
