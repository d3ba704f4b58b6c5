"""Input no handler may fail a whole batch on, and the checks every SQS batch handler's tests run with it.

- ``DEEPLY_NESTED``: a ~2 kB body of 1,000 nested arrays, on which ``json.loads``
  raises RecursionError (pydantic's JSON parser reports its recursion limit);
- bodies that are JSON but not an object;
- ``nested(depth)``: a Python value that deep, for direct invocations, whose
  payload the runtime has decoded already (as deep as its decoder allows);
- records of an SQS event that Lambda never sends (not an object, no
  ``messageId``): they cannot be named in ``batchItemFailures``, so the handler
  must refuse the batch with a ValueError that says what it expected.
"""

import json
from collections import Counter
from typing import Any

DEEPLY_NESTED = "[" * 1000 + "]" * 1000

# (body, what the rejection reason says), with the ids to show for them.
NOT_AN_OBJECT = [
    (DEEPLY_NESTED, "recursion limit exceeded"),
    ('{"event_id": ' + DEEPLY_NESTED + "}", "recursion limit exceeded"),
    ("[1, 2]", ""),
    ("42", ""),
    ("null", ""),
    ('"an order"', ""),
]
NOT_AN_OBJECT_IDS = ["nested arrays", "nested in a field", "list", "number", "null", "string"]

# (how the record is broken, what the ValueError must say).
UNNAMEABLE_SQS_RECORDS = [
    ("text", r"^not an SQS event: Records\[1\] is str, expected a record object$"),
    ("null", r"^not an SQS event: Records\[1\] is NoneType, expected a record object$"),
    ("no messageId", r"^not an SQS event: Records\[1\] has no messageId, "),
    ("empty messageId", r"^not an SQS event: Records\[1\] has no messageId, "),
    ("records not a list", r'^not an SQS event: expected "Records", a list of records$'),
]
UNNAMEABLE_SQS_RECORD_IDS = [shape for shape, _ in UNNAMEABLE_SQS_RECORDS]


def nested(depth: int) -> list[Any]:
    """``depth`` lists one inside the other, built without recursion."""
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


def unnameable_sqs_event(good: dict[str, Any], shape: str) -> dict[str, Any]:
    """An SQS event of ``good`` and one record broken as ``shape`` says."""
    broken: Any = {"text": "a message", "null": None}.get(shape, dict(good))
    if shape == "no messageId":
        del broken["messageId"]
    elif shape == "empty messageId":
        broken["messageId"] = ""
    if shape == "records not a list":
        return {"Records": {"0": good}}
    return {"Records": [good, broken]}


def metric_totals(output: str) -> Counter:
    """{metric name: sum of values} over the EMF lines Powertools printed."""
    totals: Counter = Counter()
    for line in output.splitlines():
        if not line.startswith("{") or '"_aws"' not in line:
            continue
        blob = json.loads(line)
        for directive in blob["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                value = blob[metric["Name"]]
                totals[metric["Name"]] += sum(value) if isinstance(value, list) else value
    return totals
