"""Batch publishers that respect each API's limits and retry only what failed.

One publisher per batch API, each made once at module level around a boto3
client, as Powertools' examples make their clients::

    # botocore retries a throttled call on its own first; the publisher then retries what is left.
    sns = boto3.client("sns", config=Config(retries={"mode": "standard", "max_attempts": 3}))
    topic = SnsPublisher(sns, os.environ["TOPIC_ARN"], retry=Retry(max_attempts=3))

    def lambda_handler(event, context):
        result = topic.publish(entries, time_budget_seconds=context.get_remaining_time_in_millis() / 1000 - 2)
        result.raise_for_failures()  # or report result.failed as batch item failures

``SqsPublisher`` (SendMessageBatch), ``SnsPublisher`` (PublishBatch),
``EventBridgePublisher`` (PutEvents), ``KinesisPublisher`` (PutRecords),
``FirehosePublisher`` (PutRecordBatch) and ``DynamoDbPublisher``
(BatchWriteItem) take entries in the API's own request shape and return a
``PublishResult``. The rules, the same for all of them:

Calls. Entries are taken in input order into calls that hold as many as fit
under both the API's entry count and its request size, sizes counted the way
AWS documents for that API (each module cites its sources); where no order is
kept, an entry too big for what is left of a call waits for the next one while
later, smaller entries fill this one. An entry over a per-entry limit, or of a
shape the API would refuse for the whole call, is reported (``EntryTooLarge``,
``InvalidEntry``) and never sent; the others go on.

Retries. A round sends every pending entry. The entries a round leaves failed
with a retryable error, and only those, are regrouped into full calls for the
next round, after a pause with exponential backoff and full jitter
(``Retry``), up to ``Retry.max_attempts`` calls per entry. Codes the API's
reference documents as not retryable (an SQS or SNS entry with SenderFault,
EventBridge's AccessDeniedException, MalformedDetail...) are reported at once.
A whole call that fails with throttling, a 5xx or a broken connection (after
botocore's own retries) fails its entries retryably. A call that fails with any
other error (access denied, validation, a missing queue) fails its entries with
that error and stops the publish: what was not sent yet is reported
(``NotSent``: "publishing stopped after ...") rather than sent to a target that
refuses it. ``time_budget_seconds`` keeps the pauses within the invocation.

Order. SQS FIFO queues and SNS FIFO topics keep the order of each message
group: a call carries at most one entry of a group, so a group's entries go
out one call after another, in input order; when an entry of a group fails,
the group's later entries wait for its retry, and if it fails for good they
are reported as not sent (``GroupStopped``: "an earlier message of its group
was not sent") while other groups go on. A group's messages thus arrive in
input order, with no gap before a later one. ``KinesisPublisher(ordered=True)``
does the same per partition key and ``DynamoDbPublisher`` per item key;
EventBridge and Firehose keep no order.

Result. ``PublishResult`` names every entry by its input index (and batch Id
for SQS and SNS): ``sent`` with the service's result (MessageId, EventId,
SequenceNumber...), ``failed`` with the code, message and attempts, and counts
of calls and rounds. Every entry is in exactly one of the two lists; an entry
in ``sent`` was accepted once. ``raise_for_failures()`` raises ``PublishError``
listing the failures.
"""

from .core import (
    ENTRY_TOO_LARGE,
    GROUP_STOPPED,
    INVALID_ENTRY,
    NO_RESULT,
    NOT_SENT,
    BatchPublisher,
    FailedEntry,
    PublishError,
    PublishResult,
    Retry,
    SentEntry,
)
from .event_bus import EventBridgePublisher, entry_size
from .messages import SnsPublisher, SqsPublisher
from .streams import FirehosePublisher, KinesisPublisher
from .table import DynamoDbPublisher, item_size

__all__ = [
    "ENTRY_TOO_LARGE",
    "GROUP_STOPPED",
    "INVALID_ENTRY",
    "NOT_SENT",
    "NO_RESULT",
    "BatchPublisher",
    "DynamoDbPublisher",
    "EventBridgePublisher",
    "FailedEntry",
    "FirehosePublisher",
    "KinesisPublisher",
    "PublishError",
    "PublishResult",
    "Retry",
    "SentEntry",
    "SnsPublisher",
    "SqsPublisher",
    "entry_size",
    "item_size",
]
