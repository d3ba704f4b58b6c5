"""Firehose's transformation of one event family's stream into its lake tables, each row's personal fields sealed
under the user's own data key (crypto-shredding).

Invoked by Amazon Data Firehose with a buffer of the stream's records
(``records[]``: ``recordId``, ``approximateArrivalTimestamp`` in milliseconds,
``data`` in base64, ``kinesisRecordMetadata``). Each is read as an event of
this function's family (``EVENT_FAMILY``):

- an event becomes a row of its type's table (``otfMetadata`` routes it),
  its personal fields sealed with AES-GCM under the user's data key
  (``messaging_runtime.crypto_shredding.UserKeys``: made with KMS
  ``GenerateDataKey`` on the user's first event, unwrapped with ``Decrypt``
  after, cached ``KEY_CACHE_SECONDS``);
- a record that is not one becomes a quarantine row with the reason, its
  payload sealed under the key of the user it names (``RecordsQuarantined``);
- a second copy of an event id within the buffer is ``Dropped`` (``DuplicatesDropped``).

A KMS or DynamoDB error fails the invocation: Firehose retries the buffer,
then writes it to the error prefix of its bucket (``processing-failed/``).
``KmsCalls`` and ``KeysCreated`` count what the buffer cost KMS.

Environment: EVENT_FAMILY (``playback`` or ``interaction``), LAKE_DATABASE,
USER_KEYS_TABLE, USER_KEYS_KMS_KEY (the key's ARN), all required;
KEY_CACHE_SECONDS (default 300).
"""

import os
from datetime import UTC, datetime
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config

from messaging_runtime import lake, listening
from messaging_runtime.contracts.listening import FAMILIES
from messaging_runtime.crypto_shredding import KeyCache, UserKeys

FAMILY = os.environ["EVENT_FAMILY"]
if FAMILY not in FAMILIES:
    raise RuntimeError(f"EVENT_FAMILY must be one of {', '.join(FAMILIES)}, got {FAMILY!r}")
DATABASE = os.environ["LAKE_DATABASE"]
QUARANTINE = listening.quarantine_table(FAMILY)

logger = Logger()
tracer = Tracer()
metrics = Metrics()
retries = Config(retries={"mode": "standard", "max_attempts": 5})
keys = UserKeys(
    dynamodb=boto3.client("dynamodb", config=retries),
    kms=boto3.client("kms", config=retries),
    table_name=os.environ["USER_KEYS_TABLE"],
    kms_key_id=os.environ["USER_KEYS_KMS_KEY"],
    cache=KeyCache(ttl_seconds=float(os.environ.get("KEY_CACHE_SECONDS", "300"))),
)


def _row(event: Any, arrived: datetime) -> tuple[dict[str, Any], str]:
    key_id, aead = keys.for_user(event.user_id)
    return listening.event_row(event, arrived, key_id, aead), listening.TABLES[event.event_type]


def _quarantine(where: str, data: bytes, reason: str, arrived: datetime) -> tuple[dict[str, Any], str]:
    user = listening.valid_user_named_in(data)
    return listening.quarantine_row(where, data, reason, arrived, keys.for_user(user) if user else None), QUARANTINE


def transform(records: list[dict[str, Any]], now: datetime) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The answer for each record, and the counts."""
    buffer = lake.transform_buffer(
        records,
        now,
        database=DATABASE,
        read=lambda data: listening.read_event(data, FAMILY),
        row=_row,
        quarantine=_quarantine,
        logger=logger,
    )
    return buffer.answers, buffer.counts


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    records = lake.buffer_records(event)
    calls_before, created_before = sum(keys.kms_calls.values()), keys.keys_created
    answers, counts = transform(records, datetime.now(UTC))
    counts["KmsCalls"] = sum(keys.kms_calls.values()) - calls_before
    counts["KeysCreated"] = keys.keys_created - created_before
    for name, value in counts.items():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    logger.info("Buffer transformed", extra={"records": len(records), **counts})
    return {"records": answers}
