"""SQS SendMessageBatch and SNS PublishBatch: batch Ids, FIFO message groups, sizes that count the attributes."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar

from .core import INVALID_ENTRY, Answer, BatchPublisher, Entry, Prepared, Rejected, Retry, check_limit, failure, mapping, no_result, utf8_size

MIB = 1024 * 1024

# SendMessageBatch: "up to 10 messages"; "The maximum allowed individual message size and the maximum total payload
# size (the sum of the individual lengths of all of the batched messages) are both 1 MiB 1,048,576 bytes."
# https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessageBatch.html
# A queue's MaximumMessageSize is 1,024 to 1,048,576 bytes, default 1,048,576:
# https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_CreateQueue.html
SQS_MAX_ENTRIES = 10
SQS_MAX_REQUEST_BYTES = MIB
SQS_MAX_MESSAGE_BYTES = MIB

# PublishBatch: "up to 10 messages"; "By default, the maximum allowed individual message size and the maximum total
# payload size ... are both 256 KiB (262,144 bytes). To publish larger batches, set the topic's MaximumMessageSize
# attribute, which supports values up to 1 MiB (1,048,576 bytes). The combined size of all messages in the batch,
# including each message's body and attributes, must not exceed the topic's MaximumMessageSize."
# https://docs.aws.amazon.com/sns/latest/api/API_PublishBatch.html
SNS_MAX_ENTRIES = 10
SNS_DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024
SNS_MAX_MESSAGE_BYTES = MIB

# Batch entry Ids of both APIs: "up to 80 characters ... alphanumeric characters, hyphens(-), and underscores (_)",
# unique within a request (SendMessageBatchRequestEntry, PublishBatchRequestEntry).
_BATCH_ID = re.compile(r"^[A-Za-z0-9_-]{1,80}$")


def _attributes_size(attributes: Any) -> int:
    """Name, data type and value of every message attribute: all count toward the message size.

    https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-message-metadata.html
    (MessageSystemAttributes do not count: SendMessageBatchRequestEntry.)
    """
    if attributes is None:
        return 0
    if not isinstance(attributes, Mapping):
        raise Rejected(INVALID_ENTRY, f"MessageAttributes must be a dict, got {type(attributes).__name__}")
    size = 0
    for name, value in attributes.items():
        if not isinstance(value, Mapping) or not isinstance(value.get("DataType"), str):
            raise Rejected(INVALID_ENTRY, f"message attribute {name!r} must be a dict with a DataType")
        size += utf8_size(name) + utf8_size(value["DataType"]) + utf8_size(value.get("StringValue")) + utf8_size(value.get("BinaryValue"))
    return size


class _MessageBatchPublisher(BatchPublisher):
    """What SendMessageBatch and PublishBatch share: Ids, FIFO groups, Successful/Failed by Id, SenderFault."""

    max_entries: ClassVar[int] = 10
    method: ClassVar[str]
    target_param: ClassVar[str]
    entries_param: ClassVar[str]
    body_field: ClassVar[str]
    counted_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, client: Any, target: str, *, fifo: bool | None, max_message_bytes: int, max_request_bytes: int, retry: Retry | None) -> None:
        fifo = target.endswith(".fifo") if fifo is None else fifo
        super().__init__(client, target, max_entry_bytes=max_message_bytes, max_request_bytes=max_request_bytes, ordered=fifo, retry=retry)

    @property
    def fifo(self) -> bool:
        return self.ordered

    def _prepare(self, index: int, entry: Entry) -> Prepared:
        entry = mapping(entry, self.api)
        group = entry.get("MessageGroupId") if self.fifo else None
        if self.fifo and (not isinstance(group, str) or not group):
            raise Rejected(INVALID_ENTRY, "every entry for a FIFO target needs a MessageGroupId")
        body = entry.get(self.body_field)
        if not isinstance(body, str) or not body:
            raise Rejected(INVALID_ENTRY, f"{self.body_field} must be a non-empty string", group=group)
        entry_id = entry.get("Id")
        wire = entry
        if entry_id is None:
            entry_id = str(index)  # unique among generated Ids; a caller's equal Id only moves one of them to another call
            wire = {**entry, "Id": entry_id}
        elif not isinstance(entry_id, str) or not _BATCH_ID.match(entry_id):
            raise Rejected(INVALID_ENTRY, f"Id must be 1 to 80 letters, digits, hyphens or underscores, got {entry_id!r}", group=group)
        try:
            size = utf8_size(body) + _attributes_size(entry.get("MessageAttributes")) + sum(utf8_size(entry.get(f)) for f in self.counted_fields)
        except Rejected as rejected:
            raise Rejected(rejected.code, rejected.message, group=group) from None
        return Prepared(wire, entry_id, size, group=group)

    def _send(self, wire: list[Entry]) -> list[Answer]:
        response = getattr(self.client, self.method)(**{self.target_param: self.target, self.entries_param: wire})
        successful = {r.get("Id"): r for r in response.get("Successful") or [] if isinstance(r, Mapping)}
        failed = {r.get("Id"): r for r in response.get("Failed") or [] if isinstance(r, Mapping)}
        answers = []
        for entry in wire:
            if entry["Id"] in successful:
                answers.append(Answer(result=successful[entry["Id"]]))
            elif entry["Id"] in failed:
                result = failed[entry["Id"]]
                # SenderFault: the request is wrong and sending it again will not help.
                answers.append(failure(result.get("Code"), result.get("Message"), retryable=not result.get("SenderFault")))
            else:
                answers.append(no_result())
        return answers


class SqsPublisher(_MessageBatchPublisher):
    """Sends messages to one queue with SendMessageBatch: up to 10 per call and 1 MiB in all.

    Entries are ``SendMessageBatchRequestEntry`` dicts; ``Id`` is made from the
    input position when missing. A message's size is its body plus each
    attribute's name, data type and value (system attributes do not count).
    On a FIFO queue entries need a ``MessageGroupId`` and keep their order per
    group (see the package docstring); give them a ``MessageDeduplicationId``
    (or enable content-based deduplication) so that a retry after an unknown
    outcome is not delivered twice.

    :param client: a boto3 SQS client. Required.
    :param queue_url: the queue. Required.
    :param fifo: keep order per message group. Default: the URL ends in ``.fifo``.
    :param max_message_bytes: the queue's MaximumMessageSize. Default: 1,048,576 (1 MiB, the queue default).
    :param retry: rounds and backoff. Default: ``Retry()``.
    """

    api = "SQS SendMessageBatch"
    max_entries = SQS_MAX_ENTRIES
    method = "send_message_batch"
    target_param = "QueueUrl"
    entries_param = "Entries"
    body_field = "MessageBody"
    # KmsThrottled (the model's name, also sent as QueryErrorCode) may carry a query-protocol code too: both are listed.
    retryable_call_codes = frozenset({"KmsThrottled", "KMS.ThrottlingException"})

    def __init__(
        self, client: Any, queue_url: str, *, fifo: bool | None = None, max_message_bytes: int = SQS_MAX_MESSAGE_BYTES, retry: Retry | None = None
    ) -> None:
        check_limit("max_message_bytes", max_message_bytes, 1024, SQS_MAX_MESSAGE_BYTES)
        super().__init__(client, queue_url, fifo=fifo, max_message_bytes=max_message_bytes, max_request_bytes=SQS_MAX_REQUEST_BYTES, retry=retry)

    def _prepare(self, index: int, entry: Entry) -> Prepared:
        prepared = super()._prepare(index, entry)
        if self.fifo and entry.get("DelaySeconds") is not None:
            # SendMessageBatchRequestEntry.DelaySeconds: "When you set FifoQueue, you can't set DelaySeconds per message."
            raise Rejected(INVALID_ENTRY, "a FIFO queue takes no DelaySeconds per message", group=prepared.group)
        return prepared


class SnsPublisher(_MessageBatchPublisher):
    """Publishes messages to one topic with PublishBatch: up to 10 per call, within the topic's MaximumMessageSize in all.

    Entries are ``PublishBatchRequestEntry`` dicts; ``Id`` is made from the input
    position when missing. A message's size is its ``Message``, its ``Subject``
    and each attribute's name, data type and value. On a FIFO topic entries need
    a ``MessageGroupId`` and keep their order per group (see the package
    docstring); give them a ``MessageDeduplicationId`` (or enable content-based
    deduplication) so that a retry after an unknown outcome is not delivered twice.

    :param client: a boto3 SNS client. Required.
    :param topic_arn: the topic. Required.
    :param fifo: keep order per message group. Default: the ARN ends in ``.fifo``.
    :param max_message_bytes: the topic's MaximumMessageSize, which also bounds a whole call.
        Default: 262,144 (256 KiB, the topic default).
    :param retry: rounds and backoff. Default: ``Retry()``.
    """

    api = "SNS PublishBatch"
    max_entries = SNS_MAX_ENTRIES
    method = "publish_batch"
    target_param = "TopicArn"
    entries_param = "PublishBatchRequestEntries"
    body_field = "Message"
    counted_fields = ("Subject",)  # AWS names body and attributes; the subject (100 characters at most) is counted to be safe
    retryable_call_codes = frozenset({"KMSThrottling"})

    def __init__(
        self, client: Any, topic_arn: str, *, fifo: bool | None = None, max_message_bytes: int = SNS_DEFAULT_MAX_MESSAGE_BYTES, retry: Retry | None = None
    ) -> None:
        check_limit("max_message_bytes", max_message_bytes, 1024, SNS_MAX_MESSAGE_BYTES)
        super().__init__(client, topic_arn, fifo=fifo, max_message_bytes=max_message_bytes, max_request_bytes=max_message_bytes, retry=retry)
