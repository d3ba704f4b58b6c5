"""Erase a listener: delete their data key, so that every row sealed under it is unreadable, and record the erasure.

Reads the erasure requests queue (``ErasureRequest``: request id, user id,
time). The queue holds each request 15 minutes first, so that the user's
events still in flight reach the lake, sealed under the key about to go. One
DynamoDB transaction deletes the user's two key items and writes the
erasure's record (request id, key id, times; not the user id) to the
erasures table, kept ``ERASURE_RECORD_DAYS``: the list to replay if the key
table is ever restored from a backup taken before the erasure. A request
recorded before is skipped (``ErasuresRepeated``); a user with no key is
recorded as such (``UsersWithoutKey``). A failure (throttling, the user's key
changing meanwhile) fails the message: SQS delivers it again, then
dead-letters it, where it alarms.

Environment: USER_KEYS_TABLE and ERASURES_TABLE (required); ERASURE_RECORD_DAYS (default 400).
"""

import os
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config

from messaging_runtime import readers
from messaging_runtime.batch import SQS, BatchConsumer
from messaging_runtime.contracts.analytics import ERASURE_REQUEST, ErasureRequestV1
from messaging_runtime.crypto_shredding import KeyCache, UserKeys

logger = Logger()
tracer = Tracer()
metrics = Metrics()
retries = Config(retries={"mode": "standard", "max_attempts": 5})
consumer = BatchConsumer(SQS, read=readers.sqs_json(ERASURE_REQUEST), logger=logger, metrics=metrics)
# The erasure deletes keys and never unwraps one: no KMS client, no cache.
keys = UserKeys(
    dynamodb=boto3.client("dynamodb", config=retries), kms=None, table_name=os.environ["USER_KEYS_TABLE"], kms_key_id="", cache=KeyCache(ttl_seconds=0)
)
ERASURES_TABLE = os.environ["ERASURES_TABLE"]
KEEP_SECONDS = int(os.environ.get("ERASURE_RECORD_DAYS", "400")) * 86_400


def erase(request: ErasureRequestV1, record: SQSRecord) -> None:
    outcome, key_id = keys.erase(
        request.user_id,
        request_id=request.request_id,
        requested_at=request.requested_at.isoformat(),
        erasures_table=ERASURES_TABLE,
        keep_seconds=KEEP_SECONDS,
    )
    consumer.count({"erased": "UsersErased", "no key": "UsersWithoutKey", "repeated": "ErasuresRepeated"}[outcome])
    logger.info("Erasure request handled", extra={"request_id": request.request_id, "outcome": outcome, "key_id": key_id})


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return consumer.process(event, context, effect=erase)
