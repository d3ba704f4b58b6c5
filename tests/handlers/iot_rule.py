"""A small, strict reading of the AWS IoT SQL (version 2016-03-23) that the CapstoneAnalytics device rule uses.

What a topic rule does with one MQTT message, as far as the rule
``SELECT *, topic(3) AS device_id, 'device' AS platform FROM 'analytics/devices/+/events'``
with a Kinesis action (``PartitionKey`` ``${user_id}``) and an error action needs:

- ``TopicRule.parse(sql, partition_key_template)`` reads the rule's text; ``rule.matches(topic)`` is the FROM
  clause's MQTT topic filter (``+`` one level, ``#`` the rest);
- ``rule.apply(topic, payload)`` is the SELECT clause's result for a JSON object payload: ``*`` and the named
  items, ``topic(n)`` and string literals; None when the payload is not a JSON object (see ``apply``);
- ``rule.partition_key(payload)`` evaluates the substitution template of the partition key; ``kinesis_refusal``
  says why Kinesis refuses a record (an empty or too long partition key), which fails the action;
- ``error_action_message(...)`` is the message the rules engine then sends to the rule's error action.

Anything else (a WHERE or SET clause, SELECT VALUE, functions other than ``topic()``, operators, CASE, payload
attribute references, nested SELECTs, other template expressions, another SQL version) raises NotImplementedError
naming it, so that a change to the rule fails the tests that read it instead of being misread. Text that is not SQL
at all (no FROM, an unterminated string, a malformed topic filter) raises ValueError.

Sources (AWS IoT Core Developer Guide):

- SELECT clause: https://docs.aws.amazon.com/iot/latest/developerguide/iot-sql-select.html
- FROM clause: https://docs.aws.amazon.com/iot/latest/developerguide/iot-sql-from.html
- topic(Decimal): https://docs.aws.amazon.com/iot/latest/developerguide/iot-sql-functions.html#iot-function-topic
- data types and conversions: https://docs.aws.amazon.com/iot/latest/developerguide/iot-sql-data-types.html
- substitution templates: https://docs.aws.amazon.com/iot/latest/developerguide/iot-substitution-templates.html
- binary payloads: https://docs.aws.amazon.com/iot/latest/developerguide/binary-payloads.html
- error action: https://docs.aws.amazon.com/iot/latest/developerguide/rule-error-handling.html
- Kinesis PutRecord: https://docs.aws.amazon.com/kinesis/latest/APIReference/API_PutRecord.html
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

SQL_VERSION = "2016-03-23"

#: Kinesis PutRecord: "Length Constraints: Minimum length of 1. Maximum length of 256." (Unicode characters).
PARTITION_KEY_MAX = 256


class _Undefined:
    """IoT SQL's ``Undefined``: not a value; left out of a JSON result, an empty string when serialized by itself."""

    def __repr__(self) -> str:
        return "Undefined"


UNDEFINED = _Undefined()


@dataclass(frozen=True)
class TopicSegment:
    """``topic()`` (the whole topic, ``segment`` None) or ``topic(n)``, the nth ``/``-separated segment, 1-based."""

    segment: int | None

    def evaluate(self, topic: str) -> str | _Undefined:
        if self.segment is None:
            return topic
        segments = topic.split("/")
        # The docs define topic(n) for the segments a topic has; past the last one is taken to be Undefined.
        return segments[self.segment - 1] if self.segment <= len(segments) else UNDEFINED


@dataclass(frozen=True)
class StringLiteral:
    value: str

    def evaluate(self, topic: str) -> str:
        return self.value


Expression = TopicSegment | StringLiteral

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
    | (?P<string>'[^']*')
    | (?P<quoted>"[^"]*")
    | (?P<number>\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<punct>[*,().])
    | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)
# Words that start a part of IoT SQL this reader does not take, named as such when met where an item is expected.
_UNSUPPORTED_WORDS = {
    "case": "a CASE expression",
    "null": "the NULL literal",
    "true": "a Boolean literal",
    "false": "a Boolean literal",
    "not": "the NOT operator",
    "distinct": "SELECT DISTINCT",
}


def _tokens(sql: str) -> list[tuple[str, str]]:
    tokens = []
    for match in _TOKEN.finditer(sql):
        kind = match.lastgroup
        assert kind is not None
        text = match.group()
        if kind == "space":
            continue
        if kind == "other" and text in "'\"":
            raise ValueError(f"unterminated string in the rule's SQL at character {match.start()}: {sql!r}")
        tokens.append((kind, text))
    return tokens


def _is_word(token: tuple[str, str] | None, word: str) -> bool:
    return token is not None and token[0] == "name" and token[1].lower() == word


def validate_topic_filter(topic_filter: str) -> None:
    """ValueError unless ``topic_filter`` is an MQTT topic filter: ``+`` and ``#`` only as whole levels, ``#`` last."""
    if not topic_filter or "\0" in topic_filter:
        raise ValueError(f"not an MQTT topic filter: {topic_filter!r}")
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        if ("+" in level and level != "+") or ("#" in level and level != "#"):
            raise ValueError(f"not an MQTT topic filter: {topic_filter!r} ('+' and '#' must be a whole level)")
        if level == "#" and index != len(levels) - 1:
            raise ValueError(f"not an MQTT topic filter: {topic_filter!r} ('#' must be the last level)")


def filter_matches(topic_filter: str, topic: str) -> bool:
    """Whether the MQTT topic name ``topic`` matches ``topic_filter`` (MQTT 3.1.1 section 4.7 / MQTT 5 section 4.7).

    ``+`` matches exactly one level (an empty one too), ``#`` the parent level and any number of levels below it;
    levels are compared exactly (case-sensitive); a topic starting with ``$`` is not matched by a filter that starts
    with a wildcard.
    """
    if not topic or "+" in topic or "#" in topic or "\0" in topic:
        raise ValueError(f"not an MQTT topic name: {topic!r}")
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    wanted, levels = topic_filter.split("/"), topic.split("/")
    for index, level in enumerate(wanted):
        if level == "#":
            return True
        if index >= len(levels) or (level != "+" and level != levels[index]):
            return False
    return len(levels) == len(wanted)


@dataclass(frozen=True)
class TopicRule:
    """A topic rule's SQL and its Kinesis action's partition key template, read by ``TopicRule.parse``."""

    sql: str
    topic_filter: str
    select_all: bool
    #: The named items, in the order the SELECT gives them: (name, expression).
    items: tuple[tuple[str, Expression], ...]
    #: The Kinesis action's partition key template, as given, and read: (text, field name or None) parts.
    partition_key_template: str
    _template: tuple[tuple[str, str | None], ...]

    @classmethod
    def parse(cls, sql: str, partition_key_template: str, *, sql_version: str = SQL_VERSION) -> TopicRule:
        if sql_version != SQL_VERSION:
            raise NotImplementedError(f"AWS IoT SQL version {sql_version!r} (only {SQL_VERSION} is read)")
        tokens = _tokens(sql)
        position = 0

        def peek(offset: int = 0) -> tuple[str, str] | None:
            return tokens[position + offset] if position + offset < len(tokens) else None

        if _is_word(peek(), "set"):
            raise NotImplementedError("the SET clause")
        if not _is_word(peek(), "select"):
            raise ValueError(f"the rule's SQL must start with SELECT: {sql!r}")
        position += 1
        if _is_word(peek(), "value"):
            raise NotImplementedError("SELECT VALUE")
        select_all, items = False, []
        while True:
            token = peek()
            if token is None:
                raise ValueError(f"the rule's SQL has no FROM clause: {sql!r}")
            if _is_word(token, "from") or token == ("punct", ","):
                raise ValueError(f"an empty SELECT item: {sql!r}")
            if token == ("punct", "*"):
                if select_all:
                    raise ValueError(f"'*' twice in the SELECT clause: {sql!r}")
                select_all = True
                position += 1
            else:
                expression, used = _expression(tokens, position)
                position += used
                if not _is_word(peek(), "as"):
                    following = peek()
                    if following is not None and following[0] == "other":
                        raise NotImplementedError(f"the operator {following[1]!r}")
                    raise NotImplementedError(f"a SELECT item without AS (IoT names it itself): {sql!r}")
                position += 1
                alias = peek()
                if alias is None or alias[0] != "name":
                    raise ValueError(f"AS must be followed by a name: {sql!r}")
                if any(alias[1] == name for name, _ in items):
                    raise NotImplementedError(f"two SELECT items named {alias[1]!r}")
                items.append((alias[1], expression))
                position += 1
            token = peek()
            if token == ("punct", ","):
                position += 1
                continue
            if _is_word(token, "from"):
                position += 1
                break
            if token is None:
                raise ValueError(f"the rule's SQL has no FROM clause: {sql!r}")
            if token[0] == "other":
                raise NotImplementedError(f"the operator {token[1]!r}")
            raise ValueError(f"expected ',' or FROM after a SELECT item, got {token[1]!r}: {sql!r}")
        topic = peek()
        if topic is None or topic[0] != "string":
            raise ValueError(f"FROM must be followed by a topic filter in single quotes: {sql!r}")
        topic_filter = topic[1][1:-1]
        validate_topic_filter(topic_filter)
        position += 1
        rest = peek()
        if rest is not None:
            if _is_word(rest, "where"):
                raise NotImplementedError("the WHERE clause")
            raise NotImplementedError(f"{rest[1]!r} after the FROM clause")
        if not select_all and not items:
            raise ValueError(f"an empty SELECT clause: {sql!r}")
        return cls(
            sql=sql,
            topic_filter=topic_filter,
            select_all=select_all,
            items=tuple(items),
            partition_key_template=partition_key_template,
            _template=_parse_template(partition_key_template),
        )

    def matches(self, topic: str) -> bool:
        """Whether a message published on ``topic`` activates the rule (the FROM clause)."""
        return filter_matches(self.topic_filter, topic)

    def apply(self, topic: str, payload: bytes) -> dict[str, Any] | None:
        """The SELECT clause's result for a message on ``topic``: the document the rule's actions receive.

        ``*`` is the payload's JSON object; each named item is then set on it, so a name the payload also has takes
        the item's value (``topic(3) AS device_id`` wins over a ``device_id`` the device sent). The AWS IoT docs do
        not state this collision rule: the SELECT page (iot-sql-select.html) only shows ``SELECT *, 15 as speed``
        adding a key the payload lacks. It is what this reader does and what the device path relies on; the console's
        "Test SQL statement" or a deployed rule is what shows it holds on AWS.

        An empty payload is an empty object ("If you have an empty or a JSON payload, the resulting payload can have
        data added using the rule", binary-payloads.html). A payload that is not a JSON object (not JSON, not UTF-8,
        a JSON array, string or number) gives None: the docs allow ``*`` alone for binary payloads, and say data can
        be added only to an empty or a JSON payload (binary-payloads.html; its earlier text: "You cannot use the
        following SELECT with binary payloads ... SELECT *, timestamp() AS timestamp"). What AWS does then is not
        documented beyond that; None stands for a SQL evaluation failure: no action runs, so neither the Kinesis
        action nor the error action (which is for failed actions, "To debug SQL issues ... set up AWS IoT logging",
        rule-error-handling.html) sees the message; only the AWS IoT logs, when logging is on, record it. JSON arrays
        and scalars are not covered by the docs either and are read the same way.
        """
        if not self.matches(topic):
            raise ValueError(f"a message on {topic!r} does not activate the rule (FROM {self.topic_filter!r})")
        document = _json_object(payload)
        if document is None:
            if self.select_all and not self.items:
                raise NotImplementedError("SELECT * alone on a payload that is not a JSON object (passed through as bytes)")
            return None
        result: dict[str, Any] = dict(document) if self.select_all else {}
        for name, expression in self.items:
            value = expression.evaluate(topic)
            if value is not UNDEFINED:  # Undefined is left out of a JSON result (iot-sql-data-types.html)
                result[name] = value
        return result

    def partition_key(self, payload: bytes | Mapping[str, Any]) -> str:
        """The partition key template evaluated for one message: ``${name}`` is the payload's top-level field.

        A substitution template "is evaluated separately from the SELECT ... statement, you cannot reference an alias
        created using the AS clause. You can reference only information present in the original payload"
        (iot-substitution-templates.html): ``payload`` is the message as published (its bytes, or its JSON object),
        not ``apply``'s result. Values become text by IoT's conversion to String (iot-sql-data-types.html): a string as
        it is, numbers in their notation, ``true``/``false``, arrays and objects as JSON; Null converts to Undefined,
        and Undefined (a missing field) "is converted to an empty string when serialized by itself". An empty key is
        one Kinesis refuses (``kinesis_refusal``).
        """
        document = payload if isinstance(payload, Mapping) else (_json_object(payload) or {})
        parts = []
        for text, field in self._template:
            parts.append(text)
            if field is not None:
                parts.append(_as_string(document.get(field, UNDEFINED)))
        return "".join(parts)


def _expression(tokens: list[tuple[str, str]], position: int) -> tuple[Expression, int]:
    """The expression at ``position`` and how many tokens it takes; NotImplementedError for what is not read."""
    kind, text = tokens[position]
    following = tokens[position + 1] if position + 1 < len(tokens) else None
    if kind == "string":
        value = text[1:-1]
        if "\\" in value:
            raise NotImplementedError(f"an escape sequence in the string literal {text}")
        return StringLiteral(value), 1
    if kind == "quoted":
        raise NotImplementedError(f"the double-quoted text {text}")
    if kind == "number":
        raise NotImplementedError(f"the number literal {text}")
    if (kind, text) == ("punct", "("):
        if following is not None and _is_word(following, "select"):
            raise NotImplementedError("a nested SELECT")
        raise NotImplementedError("a parenthesised expression")
    if kind == "name":
        if following == ("punct", "("):
            if text.lower() != "topic":
                raise NotImplementedError(f"the function {text}()")
            rest = tokens[position + 2 : position + 5]
            if rest[:1] == [("punct", ")")]:
                return TopicSegment(None), 3
            if len(rest) == 3 and rest[0][0] == "number" and rest[0][1].isdigit() and rest[1] == ("punct", ")"):
                segment = int(rest[0][1])
                if segment < 1:
                    raise NotImplementedError(f"topic({segment}) (segments are numbered from 1)")
                return TopicSegment(segment), 4
            raise NotImplementedError(f"topic() with the argument {rest[0][1] if rest else 'missing'!r}")
        if text.lower() in _UNSUPPORTED_WORDS:
            raise NotImplementedError(_UNSUPPORTED_WORDS[text.lower()])
        raise NotImplementedError(f"the payload attribute reference {text!r}")
    raise NotImplementedError(f"{text!r} in the SELECT clause")


_TEMPLATE_PART = re.compile(r"\$\{([^}]*)\}")
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _parse_template(template: str) -> tuple[tuple[str, str | None], ...]:
    """``a${field}b`` as (text, field) parts: ("a", "field"), ("b", None)."""
    parts: list[tuple[str, str | None]] = []
    position = 0
    for match in _TEMPLATE_PART.finditer(template):
        expression = match.group(1).strip()
        if not _FIELD.fullmatch(expression):
            raise NotImplementedError(f"the substitution template expression ${{{match.group(1)}}} (only a field name is read)")
        parts.append((template[position : match.start()], expression))
        position = match.end()
    if "${" in template[position:]:
        raise ValueError(f"an unterminated ${{ in the template {template!r}")
    parts.append((template[position:], None))
    return tuple(parts)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json_object(payload: bytes) -> dict[str, Any] | None:
    """The payload's JSON object (numbers as Decimal, as IoT keeps 34 digits); {} when empty; None otherwise."""
    if payload == b"":
        return {}
    try:
        document = json.loads(payload.decode("utf-8"), parse_float=Decimal, parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return document if isinstance(document, dict) else None


def _as_string(value: Any) -> str:
    """IoT's conversion of a value to String, for a template; Null and Undefined are Undefined, serialized as ""."""
    if value is None or value is UNDEFINED:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float, Decimal)):
        return str(value)
    return to_json(value).decode()


def to_json(document: Any) -> bytes:
    """A SELECT result as the JSON an action receives; numbers keep the text they were read with (Decimal)."""
    return _dump(document).encode()


def _dump(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{json.dumps(str(key))}:{_dump(item)}" for key, item in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_dump(item) for item in value) + "]"
    if isinstance(value, Decimal):
        return str(value)
    return json.dumps(value)


def kinesis_refusal(partition_key: str) -> str | None:
    """Why Kinesis PutRecord refuses a record with this partition key (1 to 256 characters), or None when it takes it.

    The text is a stand-in in the form of an AWS validation error; the exact wording the rules engine passes on is not
    documented. Records are never too large here: an MQTT payload is at most 128 KB on AWS IoT Core, a Kinesis record
    up to 1 MiB.
    """
    if len(partition_key) < 1:
        return (
            "1 validation error detected: Value '' at 'partitionKey' failed to satisfy constraint: "
            "Member must have length greater than or equal to 1 (Service: AmazonKinesis; Status Code: 400; "
            "Error Code: ValidationException)"
        )
    if len(partition_key) > PARTITION_KEY_MAX:
        return (
            f"1 validation error detected: Value at 'partitionKey' failed to satisfy constraint: "
            f"Member must have length less than or equal to {PARTITION_KEY_MAX} (Service: AmazonKinesis; "
            f"Status Code: 400; Error Code: ValidationException)"
        )
    return None


def error_action_message(
    rule_name: str,
    topic: str,
    client_id: str,
    payload: bytes,
    error: str,
    *,
    failed_resource: str,
    failed_action: str = "KinesisAction",
    trace_id: str | None = None,
) -> dict[str, Any]:
    """The message the rules engine sends to the rule's error action when an action fails (one per rule and message).

    The documented shape (rule-error-handling.html, "Error action message format"): ``ruleName``, ``topic`` (where the
    message was received), ``cloudwatchTraceId`` (refers to the error logs in CloudWatch), ``clientId`` (of the
    publisher), ``base64OriginalPayload`` (the message as published, not the SELECT result) and ``failures``, each
    with ``failedAction`` (the docs' example is "S3Action"; "KinesisAction" by the same naming), ``failedResource``
    (the stream's name) and ``errorMessage``.
    """
    return {
        "ruleName": rule_name,
        "topic": topic,
        "cloudwatchTraceId": trace_id or str(uuid.uuid4()),
        "clientId": client_id,
        "base64OriginalPayload": base64.b64encode(payload).decode(),
        "failures": [{"failedAction": failed_action, "failedResource": failed_resource, "errorMessage": error}],
    }
