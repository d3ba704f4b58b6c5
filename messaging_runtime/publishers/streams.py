"""Kinesis Data Streams PutRecords and Amazon Data Firehose PutRecordBatch: records matched by position."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .core import INVALID_ENTRY, Answer, BatchPublisher, Entry, Prepared, Rejected, Retry, check_limit, failure, mapping, positional, utf8_size

MIB = 1024 * 1024

# PutRecords: "Each PutRecords request can support up to 500 records. Each record in the request can be as large as
# 10 MiB, up to a limit of 10 MiB for the entire request, including partition keys." (1 MiB and 5 MiB before the
# 2025 large-record launch). "The record size limit applies to the total size of the partition key and data blob."
# https://docs.aws.amazon.com/kinesis/latest/APIReference/API_PutRecords.html
# A stream's own maximum record size is 1 MiB unless raised (1,024 to 10,240 KiB):
# https://docs.aws.amazon.com/streams/latest/dev/large-records.html
# https://docs.aws.amazon.com/kinesis/latest/APIReference/API_UpdateMaxRecordSize.html
KINESIS_MAX_ENTRIES = 500
KINESIS_MAX_RECORD_BYTES = 10 * MIB
KINESIS_DEFAULT_MAX_RECORD_BYTES = MIB
KINESIS_MAX_REQUEST_BYTES = 10 * MIB
KINESIS_DEFAULT_MAX_REQUEST_BYTES = 5 * MIB  # the long-standing limit, within the new one; raise it for streams of large records
# PutRecordsResultEntry.ErrorCode "can be either ProvisionedThroughputExceededException or InternalFailure": both are
# retried, as is any other code; the reference names none that is not retryable.
# https://docs.aws.amazon.com/kinesis/latest/APIReference/API_PutRecordsResultEntry.html

# PutRecordBatch: "Each PutRecordBatch request supports up to 500 records. Each record in the request can be as large
# as 1,000 KB (before base64 encoding), up to a limit of 4 MB for the entire request. These limits cannot be changed."
# Record.Data: "The maximum size of the data blob, before base64-encoding, is 1,000 KiB."
# https://docs.aws.amazon.com/firehose/latest/APIReference/API_PutRecordBatch.html
# https://docs.aws.amazon.com/firehose/latest/APIReference/API_Record.html
# ErrorCode "is one of the following values: ServiceUnavailableException or InternalFailure": both retried.
FIREHOSE_MAX_ENTRIES = 500
FIREHOSE_MAX_RECORD_BYTES = 1000 * 1024
FIREHOSE_MAX_REQUEST_BYTES = 4 * MIB


def _data(entry: Mapping[str, Any]) -> bytes | bytearray | str:
    data = entry.get("Data")
    if not isinstance(data, (bytes, bytearray, str)):
        raise Rejected(INVALID_ENTRY, f"Data must be bytes (or a str, sent as UTF-8), got {type(data).__name__}")
    return data


def _positional_answer(success_field: str) -> Any:
    def answer(result: Mapping[str, Any]) -> Answer:
        code = result.get("ErrorCode")
        if result.get(success_field) and not code:
            return Answer(result=result)
        return failure(code, result.get("ErrorMessage"), retryable=True)

    return answer


class KinesisPublisher(BatchPublisher):
    """Puts records on one stream with PutRecords: up to 500 per call, within the record and request size limits.

    Entries are ``PutRecordsRequestEntry`` dicts; a record's size is its data
    plus its partition key. Failed records (throttled, internal failure) are
    retried in the next round; results are matched by position.

    Order: Kinesis orders a shard by arrival, and PutRecords "doesn't guarantee
    the ordering of records" once one of them fails. By default a retried record
    lands after records of its partition key that were sent later: no order is
    kept across a failure. With ``ordered=True`` a call carries at most one record
    per partition key, calls go one after the other, and once a record of a key
    fails the later records of that key wait for its retry (or, if it fails for
    good, are reported as not sent): per partition key, the stream then holds the
    records in input order with no gap, at the cost of a call per record of the
    busiest key.

    :param client: a boto3 Kinesis client. Required.
    :param stream_name: the stream's name. Default: none (give it or ``stream_arn``).
    :param stream_arn: the stream's ARN. Default: none.
    :param ordered: keep input order per partition key, as above. Default: False.
    :param max_record_bytes: the stream's maximum record size. Default: 1,048,576 (1 MiB, the stream default).
    :param max_request_bytes: the limit on a call. Default: 5,242,880 (5 MiB; PutRecords now allows 10 MiB).
    :param retry: rounds and backoff. Default: ``Retry()``.
    """

    api = "Kinesis PutRecords"
    max_entries = KINESIS_MAX_ENTRIES
    retryable_call_codes = frozenset({"KMSThrottlingException", "InternalFailureException"})
    group_stopped_message = "an earlier record of its partition key was not sent"

    def __init__(
        self,
        client: Any,
        *,
        stream_name: str | None = None,
        stream_arn: str | None = None,
        ordered: bool = False,
        max_record_bytes: int = KINESIS_DEFAULT_MAX_RECORD_BYTES,
        max_request_bytes: int = KINESIS_DEFAULT_MAX_REQUEST_BYTES,
        retry: Retry | None = None,
    ) -> None:
        if not stream_name and not stream_arn:
            raise ValueError("give stream_name or stream_arn")
        check_limit("max_record_bytes", max_record_bytes, 1, KINESIS_MAX_RECORD_BYTES)
        check_limit("max_request_bytes", max_request_bytes, 1, KINESIS_MAX_REQUEST_BYTES)
        super().__init__(
            client, stream_arn or stream_name or "", max_entry_bytes=max_record_bytes, max_request_bytes=max_request_bytes, ordered=ordered, retry=retry
        )
        self._stream = {name: value for name, value in (("StreamName", stream_name), ("StreamARN", stream_arn)) if value}

    def _prepare(self, index: int, entry: Entry) -> Prepared:
        entry = mapping(entry, self.api)
        data = _data(entry)
        key = entry.get("PartitionKey")
        if key is not None and (not isinstance(key, str) or not 1 <= len(key) <= 256):
            raise Rejected(INVALID_ENTRY, "PartitionKey must be a string of 1 to 256 characters")
        if self.ordered and key is None:
            raise Rejected(INVALID_ENTRY, "ordered publishing needs a PartitionKey on every record")
        return Prepared(entry, size=utf8_size(data) + utf8_size(key), group=key)

    def _send(self, wire: list[Entry]) -> list[Answer]:
        response = self.client.put_records(Records=wire, **self._stream)
        return positional(response.get("Records"), len(wire), _positional_answer("SequenceNumber"))


class FirehosePublisher(BatchPublisher):
    """Puts records into one Firehose stream with PutRecordBatch: up to 500 per call, 1,000 KiB each, 4 MiB in all.

    Entries are ``Record`` dicts (``{"Data": ...}``). Failed records are
    retried in the next round; results are matched by position. Firehose
    keeps no order, and duplicates are possible after an unknown outcome (its
    reference says so): handle them at the destination.

    :param client: a boto3 Firehose client. Required.
    :param delivery_stream_name: the Firehose stream. Required.
    :param retry: rounds and backoff. Default: ``Retry()``.
    """

    api = "Firehose PutRecordBatch"
    max_entries = FIREHOSE_MAX_ENTRIES
    retryable_call_codes = frozenset({"ServiceUnavailableException"})

    def __init__(self, client: Any, delivery_stream_name: str, *, retry: Retry | None = None) -> None:
        super().__init__(
            client, delivery_stream_name, max_entry_bytes=FIREHOSE_MAX_RECORD_BYTES, max_request_bytes=FIREHOSE_MAX_REQUEST_BYTES, ordered=False, retry=retry
        )

    def _prepare(self, index: int, entry: Entry) -> Prepared:
        entry = mapping(entry, self.api)
        return Prepared(entry, size=utf8_size(_data(entry)))

    def _send(self, wire: list[Entry]) -> list[Answer]:
        response = self.client.put_record_batch(DeliveryStreamName=self.target, Records=wire)
        return positional(response.get("RequestResponses"), len(wire), _positional_answer("RecordId"))
