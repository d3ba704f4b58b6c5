"""The aggregates table: one item per user, each record applied once whatever the redeliveries.

The item keeps ``clicks_total``, a count per action (``action_view``...), the latest event's
``last_page`` and ``last_seen``, and per topic and partition the offset of the last record applied
(``offset_<topic>_p<partition>``). A user's records come from one partition in offset order (the
producer keys them by ``user_id``), so ``apply_group`` adds a user's records of one partition in one
UpdateItem, conditional on that offset being absent or below the group's first. That conditional
write per user and partition is kept on purpose: it is what makes a redelivery harmless. When part
of the group was applied already, the failed condition returns the stored offset: the records up to
it are duplicates and the rest go in one more conditional write. A group is applied whole or not at
all, so a failed group never leaves a later record applied ahead of an earlier one.

Recreating the topic restarts its offsets at 0: clear the ``offset_*`` attributes (or the table)
with it, or the new records read as duplicates.
"""

from collections import Counter
from typing import Any

from botocore.exceptions import ClientError

from messaging_runtime.contracts.clicks import ACTIONS, ClickV1

# Conditional writes of one group when each finds more of it applied (only another writer on the partition can).
MAX_GROUP_ATTEMPTS = 3
#: The placeholders of each action's count in an UpdateItem.
PLACEHOLDERS = {action: (f"#a{slot}", f":a{slot}") for slot, action in enumerate(ACTIONS)}


class GroupWriteFailed(RuntimeError):
    """The write of a user's group failed; a redelivery can still apply it."""


def _update(dynamodb: Any, table: str, user_id: str, attribute: str, clicks: list[tuple[int, ClickV1]]) -> None:
    """Add ``clicks`` (ascending offsets) to the user's item unless an offset at or above the first is applied already."""
    (first, _), (last_offset, last) = clicks[0], clicks[-1]
    names = {"#offset": attribute, "#total": "clicks_total", "#page": "last_page", "#seen": "last_seen"}
    values: dict[str, Any] = {":first": {"N": str(first)}, ":last": {"N": str(last_offset)}, ":total": {"N": str(len(clicks))}}
    values |= {":page": {"S": last.page}, ":seen": {"S": last.occurred_at.isoformat().replace("+00:00", "Z")}}  # a contract time is UTC
    adds = ""
    for action, count in Counter([click.action for _, click in clicks]).items():
        name, value = PLACEHOLDERS[action]
        names[name], values[value] = f"action_{action}", {"N": str(count)}
        adds += f", {name} {value}"
    dynamodb.update_item(
        TableName=table,
        Key={"user_id": {"S": user_id}},
        UpdateExpression=f"SET #page = :page, #seen = :seen, #offset = :last ADD #total :total{adds}",
        ConditionExpression="attribute_not_exists(#offset) OR #offset < :first",
        ExpressionAttributeNames=names,
        ExpressionAttributeValues=values,
        ReturnValuesOnConditionCheckFailure="ALL_OLD",
    )


def apply_group(dynamodb: Any, table: str, user_id: str, topic: str, partition: int, clicks: list[tuple[int, ClickV1]]) -> tuple[int, int]:
    """Apply one user's clicks (offset, click) from one partition, ascending and distinct; returns (applied, duplicates).

    Raises ``GroupWriteFailed`` when the offset kept moving, botocore's errors when a write failed.
    """
    attribute, pending, duplicates = f"offset_{topic}_p{partition}", clicks, 0
    for _ in range(MAX_GROUP_ATTEMPTS):
        try:
            _update(dynamodb, table, user_id, attribute, pending)
            return len(pending), duplicates
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            if (stored := error.response.get("Item", {}).get(attribute, {}).get("N")) is None:
                raise RuntimeError(f"condition on {attribute} of {user_id!r} failed but the item has no {attribute}") from error
            duplicates += sum(1 for offset, _ in pending if offset <= int(stored))
            if not (pending := [(offset, click) for offset, click in pending if offset > int(stored)]):
                return 0, duplicates
    raise GroupWriteFailed(f"{attribute} of {user_id!r} kept moving under {MAX_GROUP_ATTEMPTS} conditional writes; another writer is on this partition")
