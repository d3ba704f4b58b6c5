"""Aggregate clickstream events per user into DynamoDB, once per record.

Consumes the clickstream topic through an Amazon MSK event source mapping.
Each record is keyed by ``user_id`` and carries one click event as JSON::

    {"schema_version": 1, "event_id": "<uuid>", "user_id": "u-42", "session_id": "s-1",
     "page": "/cart", "action": "view|click|add_to_cart|purchase", "occurred_at": "<ISO-8601>"}

Per user the table keeps ``clicks_total`` (every event), a count per action
(``action_view``, ``action_click``, ``action_add_to_cart``,
``action_purchase``), and ``last_page`` and ``last_seen`` of the user's latest
event in log order.

A record that cannot be read (no key, not base64, not UTF-8, not JSON,
against the schema, an unsupported ``schema_version``, a key that is not the
event's ``user_id``, or any other error while reading it) is logged with its
topic, partition, offset and the reason and reported as a failed item; the
good records of the batch still count. A tombstone (a record whose value is
null, which Lambda passes without a ``value``) carries no click: it is
skipped, logged as a warning and counted (TombstonesSkipped), never failed. A
record without its topic, partition and offset cannot be named in the
response, so it fails the invocation with a ValueError. A failed group write
(throttling, an outage) fails that group's records only. The mapping retries failed items and, once its retries are
spent, sends the batch's metadata to its on-failure destination.

Exactly one effect per record, whatever the redeliveries: every record of a
user comes from one partition (the producer keys by ``user_id``), in offset
order, so each user's item keeps, per topic and partition, the offset of the
last record applied (``offset_<topic>_p<partition>``) and every write is
conditional on that offset being absent or lower than the records it adds.
A batch's records are grouped per user and partition into one UpdateItem.
When the condition fails because part of the group was applied already,
DynamoDB returns the stored item, the records at or below its offset are
counted as duplicates, and the rest are written in one more conditional
UpdateItem. A group is applied whole or not at all, so a failed group never
leaves a later record applied ahead of an earlier one.

Recreating the topic restarts its offsets at 0: clear the ``offset_*``
attributes (or the table) with it, or the new records read as duplicates.

Partial batch response, as Powertools' Kafka batch processor builds it::

    {"batchItemFailures": [{"itemIdentifier": {"partition": "<topic>-<partition>", "offset": <offset>}}]}

Environment:
    AGGREGATES_TABLE   aggregates table, partition key ``user_id`` (S) (required)
"""

import binascii
import functools
import os
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import timezone
from typing import Annotated, Any, Literal
from uuid import UUID

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.kafka_event import KafkaEvent, KafkaEventRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import AwareDatetime, BaseModel, ConfigDict, StrictInt, StringConstraints, ValidationError, field_validator

SCHEMA_VERSION = 1
# Conditional writes of one group, when each attempt finds more of it applied already
# (only another writer on the same partition can cause a second miss).
MAX_GROUP_ATTEMPTS = 3


def _required(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise RuntimeError(f"environment variable {name} is required")
    return value


TABLE_NAME = _required("AGGREGATES_TABLE")

logger = Logger()
tracer = Tracer()
metrics = Metrics()
processor = BatchProcessor(event_type=EventType.Kafka, raise_on_entire_batch_failure=False)
# Throttling and 5xx are retried by botocore; what is still failing fails the group's records.
dynamodb = boto3.client("dynamodb", config=Config(retries={"mode": "standard", "max_attempts": 5}))


class ClickEvent(BaseModel):
    """One clickstream event, as the producer writes it; unknown fields are ignored."""

    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")

    schema_version: StrictInt
    event_id: UUID
    user_id: Annotated[str, StringConstraints(pattern=r"^u-\S+$", max_length=128)]
    session_id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    page: Annotated[str, StringConstraints(pattern=r"^/\S*$", max_length=2048)]
    action: Literal["view", "click", "add_to_cart", "purchase"]
    occurred_at: AwareDatetime

    @field_validator("schema_version")
    @classmethod
    def _supported_version(cls, value: int) -> int:
        if value != SCHEMA_VERSION:
            raise ValueError(f"unsupported schema_version {value}, this consumer reads {SCHEMA_VERSION}")
        return value


class Tombstone(Exception):
    """The record's value is null: a deletion marker, with no click in it."""


class RejectedRecord(ValueError):
    """The record can never be aggregated as it is; it is failed until the mapping gives up on it."""


class GroupWriteFailed(RuntimeError):
    """The write of the record's group failed; a redelivery can still apply it."""


@dataclass(frozen=True)
class Click:
    topic: str
    partition: int
    offset: int
    event: ClickEvent


RecordId = tuple[str, int, int]  # topic, partition, offset


def _record_id(record: KafkaEventRecord) -> RecordId:
    return (record.topic, record.partition, record.offset)


def _base64(field: str, text: str | None) -> bytes:
    if text is None:
        raise RejectedRecord(f"record has no {field}")
    try:
        # Strict: a character outside the alphabet or bad padding is an error, not skipped.
        return binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise RejectedRecord(f"{field} is not base64: {exc}") from exc


def _validation_reason(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False, include_input=False)
    # A newer schema may differ in every field: its version says all there is to say.
    version = [error for error in errors if error["loc"] == ("schema_version",) and error["type"] == "value_error"]
    if version:
        return str(version[0]["ctx"]["error"])
    if errors[0]["type"] == "json_invalid":
        return f"value is not JSON: {errors[0]['msg']}"
    return "; ".join(f"{'.'.join(str(part) for part in error['loc']) or 'value'}: {error['msg']}" for error in errors)


def read_click(record: KafkaEventRecord) -> ClickEvent:
    """The record's event; ``Tombstone`` for a null value, ``RejectedRecord`` saying why it cannot be aggregated."""
    if record.get("value") is None:
        raise Tombstone()
    key_bytes = _base64("key", record.key)
    value = _base64("value", record.value)
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RejectedRecord(f"value is not UTF-8 text: {exc}") from exc
    try:
        event = ClickEvent.model_validate_json(text)
    except ValidationError as exc:
        raise RejectedRecord(_validation_reason(exc)) from exc
    except Exception as exc:  # whatever else reading one record raises is that record's failure, not the batch's
        raise RejectedRecord(f"value cannot be read: {type(exc).__name__}: {exc}") from exc
    try:
        key = key_bytes.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RejectedRecord(f"key is not UTF-8 text: {exc}") from exc
    if key != event.user_id:
        raise RejectedRecord(f"key {key!r} is not the event's user_id {event.user_id!r}")
    return event


def _reject(record: KafkaEventRecord, exc: RejectedRecord) -> None:
    logger.error(
        "Rejected record",
        extra={"topic": record.topic, "partition": record.partition, "offset": record.offset, "reason": str(exc)},
    )
    metrics.add_metric(name="RejectedRecords", unit=MetricUnit.Count, value=1)


def offset_attribute(topic: str, partition: int) -> str:
    """The item attribute holding the last offset applied from this topic and partition."""
    return f"offset_{topic}_p{partition}"


def _update(user_id: str, clicks: list[Click]) -> None:
    """Add ``clicks`` (one partition, ascending offsets) to the user's item, unless an offset at or above the first is applied already."""
    last = clicks[-1]
    names = {
        "#offset": offset_attribute(last.topic, last.partition),
        "#total": "clicks_total",
        "#page": "last_page",
        "#seen": "last_seen",
    }
    values: dict[str, Any] = {
        ":first": {"N": str(clicks[0].offset)},
        ":last": {"N": str(last.offset)},
        ":total": {"N": str(len(clicks))},
        ":page": {"S": last.event.page},
        ":seen": {"S": last.event.occurred_at.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")},
    }
    adds = ["#total :total"]
    for index, (action, count) in enumerate(sorted(Counter(click.event.action for click in clicks).items())):
        names[f"#a{index}"] = f"action_{action}"
        values[f":a{index}"] = {"N": str(count)}
        adds.append(f"#a{index} :a{index}")
    dynamodb.update_item(
        TableName=TABLE_NAME,
        Key={"user_id": {"S": user_id}},
        UpdateExpression=f"SET #page = :page, #seen = :seen, #offset = :last ADD {', '.join(adds)}",
        ConditionExpression="attribute_not_exists(#offset) OR #offset < :first",
        ExpressionAttributeNames=names,
        ExpressionAttributeValues=values,
        ReturnValuesOnConditionCheckFailure="ALL_OLD",
    )


@tracer.capture_method
def apply_group(user_id: str, clicks: list[Click]) -> tuple[int, int]:
    """Apply one user's clicks from one partition (ascending, distinct offsets); returns (applied, duplicates)."""
    attribute = offset_attribute(clicks[0].topic, clicks[0].partition)
    pending, duplicates = clicks, 0
    for _ in range(MAX_GROUP_ATTEMPTS):
        try:
            _update(user_id, pending)
            return len(pending), duplicates
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            stored = exc.response.get("Item", {}).get(attribute, {}).get("N")
            if stored is None:
                raise RuntimeError(f"condition on {attribute} of {user_id!r} failed but the item has no {attribute}") from exc
            applied_up_to = int(stored)
            duplicates += sum(1 for click in pending if click.offset <= applied_up_to)
            pending = [click for click in pending if click.offset > applied_up_to]
            if not pending:
                return 0, duplicates
    raise GroupWriteFailed(f"{attribute} of {user_id!r} kept moving under {MAX_GROUP_ATTEMPTS} conditional writes; another writer is on this partition")


def aggregate(event: KafkaEvent) -> dict[RecordId, Exception | None]:
    """Read every record, write each (user, partition) group; the outcome of every record (None when it counts)."""
    outcomes: dict[RecordId, Exception | None] = {}
    groups: dict[tuple[str, str, int], dict[int, Click]] = defaultdict(dict)
    in_batch_duplicates = 0
    for record in event.records:
        record_id = topic, partition, offset = _record_id(record)
        try:
            click_event = read_click(record)
        except Tombstone:
            # Skipped, not failed: a tombstone deletes a key on a compacted topic and carries no click, so there is
            # nothing to count and nothing a retry could change; failing it would only hold up the partition and
            # end in the on-failure destination. The producer never writes one, so it is logged and counted.
            logger.warning("Tombstone skipped: it carries no click", extra={"topic": topic, "partition": partition, "offset": offset})
            metrics.add_metric(name="TombstonesSkipped", unit=MetricUnit.Count, value=1)
            outcomes[record_id] = None
            continue
        except RejectedRecord as exc:
            _reject(record, exc)
            outcomes[record_id] = exc
            continue
        group = groups[(click_event.user_id, topic, partition)]
        if offset in group:  # the same record twice in one batch
            in_batch_duplicates += 1
        else:
            group[offset] = Click(topic, partition, offset, click_event)
        outcomes[record_id] = None

    applied, duplicates = 0, in_batch_duplicates
    for (user_id, topic, partition), by_offset in groups.items():
        clicks = [by_offset[offset] for offset in sorted(by_offset)]
        try:
            group_applied, group_duplicates = apply_group(user_id, clicks)
        except (ClientError, BotoCoreError, GroupWriteFailed) as exc:
            offsets = [click.offset for click in clicks]
            logger.error(
                "Group write failed; its records are reported as failed",
                extra={"user_id": user_id, "topic": topic, "partition": partition, "offsets": offsets, "reason": str(exc)},
            )
            failure = GroupWriteFailed(f"write of {len(offsets)} records of {user_id!r} failed: {exc}")
            for offset in offsets:
                outcomes[(topic, partition, offset)] = failure
            continue
        applied += group_applied
        duplicates += group_duplicates
    if duplicates:
        logger.info("Records applied before skipped", extra={"duplicates": duplicates})
    metrics.add_metric(name="RecordsAggregated", unit=MetricUnit.Count, value=applied)
    metrics.add_metric(name="DuplicateRecordsSkipped", unit=MetricUnit.Count, value=duplicates)
    return outcomes


def report_outcome(record: KafkaEventRecord, outcomes: dict[RecordId, Exception | None]) -> None:
    """The batch processor's record handler: the record's outcome, decided for the whole batch by ``aggregate``."""
    outcome = outcomes[_record_id(record)]
    if outcome is not None:
        raise outcome


# What names a record in the partial batch response: without it a record can be neither reported nor retried alone.
_RECORD_ID_FIELDS = (("topic", str, "a string"), ("partition", int, "an integer"), ("offset", int, "an integer"))


def _check_kafka_event(event: Any) -> None:
    records = event.get("records") if isinstance(event, dict) else None
    if not isinstance(records, dict) or not records or not all(isinstance(batch, list) for batch in records.values()):
        raise ValueError("not a Kafka event: expected 'records' to map '<topic>-<partition>' to lists of records")
    for partition_key, batch in records.items():
        for index, record in enumerate(batch):
            where = f"records[{partition_key!r}][{index}]"
            if not isinstance(record, dict):
                raise ValueError(f"not a Kafka event: {where} is {type(record).__name__}, expected a record object")
            for name, kind, described in _RECORD_ID_FIELDS:
                if not isinstance(record.get(name), kind) or isinstance(record.get(name), bool):
                    raise ValueError(f"not a Kafka event: {where} has no {name} ({described}), which every record needs to be reported as failed")


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    _check_kafka_event(event)
    outcomes = aggregate(KafkaEvent(event))
    response = process_partial_response(
        event=event,
        record_handler=functools.partial(report_outcome, outcomes=outcomes),
        processor=processor,
        context=context,
    )
    # Partial failures are not invocation errors, so they get a metric of their own.
    metrics.add_metric(name="FailedRecords", unit=MetricUnit.Count, value=len(response["batchItemFailures"]))
    return response
