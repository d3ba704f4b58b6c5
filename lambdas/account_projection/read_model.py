"""The accounts read model: one item per account with the state after the newest event applied to it.

Both entry points of this folder use it: the stream consumer (``handler.py``)
applies events as they are appended, the rebuild (``rebuild.py``) applies
every event in the store. Every event item carries the state it leads to, so
applying an event is one conditional UpdateItem that copies that state and
succeeds only when the read model holds an older version of the account, or
none. Duplicates and events older than the read model change nothing, which
makes the result independent of the order and the number of deliveries: the
newest version wins.

The read model item:
    account_id       the account (partition key)
    balance          balance after the newest applied event
    status           "open" or "closed"
    owner            the account's owner, when the event names it
    last_version     version of the newest applied event
    last_event_type  its type
    updated_at       its ``occurred_at``: when the account last changed, not when
                     the projection ran, so a rebuild gives the same item
"""

from typing import Any

from botocore.exceptions import ClientError

from messaging_runtime.contracts.accounts import ACCOUNT_EVENTS, AccountEvent
from messaging_runtime.rejection import parse_object


def parse_item(item: dict[str, Any]) -> AccountEvent:
    """The event an item (plain Python values, as TypeDeserializer gives them) holds, in the consumer's view of its
    contract; ``Rejected`` with the reason (each field at fault) when it is not one."""
    return parse_object(ACCOUNT_EVENTS, item, what="the item")


def owner_of(event: AccountEvent) -> str | None:
    """The owner after this event: on the item, or in the data of an AccountOpened."""
    return event.owner if event.owner is not None else getattr(event.data, "owner", None)


def apply(dynamodb: Any, table_name: str, event: AccountEvent) -> bool:
    """Make the read model show ``event`` unless it shows this version or a newer one already.

    Returns True when the item changed, False when the event was stale or a duplicate.
    """
    assignments = ["#balance = :balance", "#status = :status", "#last_version = :version", "#last_event_type = :type", "#updated_at = :at"]
    names = {
        "#account_id": "account_id",
        "#balance": "balance",
        "#status": "status",
        "#last_version": "last_version",
        "#last_event_type": "last_event_type",
        "#updated_at": "updated_at",
    }
    values = {
        ":balance": {"N": str(event.balance)},
        ":status": {"S": event.status},
        ":version": {"N": str(event.version)},
        ":type": {"S": event.type},
        ":at": {"S": event.occurred_at},
    }
    owner = owner_of(event)
    if owner is not None:
        assignments.append("#owner = :owner")
        names["#owner"] = "owner"
        values[":owner"] = {"S": owner}
    try:
        dynamodb.update_item(
            TableName=table_name,
            Key={"account_id": {"S": event.aggregate_id}},
            UpdateExpression="SET " + ", ".join(assignments),
            ConditionExpression="attribute_not_exists(#account_id) OR #last_version < :version",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            return False
        raise
    return True
