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

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from botocore.exceptions import ClientError
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, ValidationError, field_validator

EventType = Literal["AccountOpened", "MoneyDeposited", "MoneyWithdrawn", "AccountClosed"]


def _whole_number(value: Any) -> Any:
    """DynamoDB numbers arrive as Decimal; a version must be a whole one."""
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        return int(value)
    return value


def _number(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    return value


class AccountEvent(BaseModel):
    """An event item of the event store, as read from the stream or a scan; other attributes are ignored."""

    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")

    aggregate_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    version: Annotated[int, BeforeValidator(_whole_number), Field(ge=1)]
    kind: Literal["event"]
    type: EventType
    data: dict[str, Any]
    balance: Annotated[Decimal, BeforeValidator(_number), Field(allow_inf_nan=False)]
    status: Literal["open", "closed"]
    owner: Annotated[str, StringConstraints(min_length=1)] | None = None
    occurred_at: str
    command_id: str

    @field_validator("occurred_at")
    @classmethod
    def _timestamp(cls, value: str) -> str:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError("must be an ISO-8601 timestamp") from None
        if moment.tzinfo is None:
            raise ValueError("must carry a time zone")
        return value

    @property
    def account_owner(self) -> str | None:
        """The owner after this event: on the item, or in the data of an AccountOpened."""
        if self.owner is not None:
            return self.owner
        owner = self.data.get("owner")
        return owner if isinstance(owner, str) and owner else None


def parse_item(item: dict[str, Any]) -> AccountEvent:
    """The event an item (plain Python values, as TypeDeserializer gives them) holds; ValidationError if it is not one."""
    return AccountEvent.model_validate(item)


def describe(exc: ValidationError) -> str:
    """Why an item is not an event, one clause per field."""
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or 'item'}: {error['msg']}" for error in exc.errors(include_url=False, include_input=False)
    )


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
    owner = event.account_owner
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
