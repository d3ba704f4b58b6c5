"""QueueEventSource: a Lambda function consuming one SQS queue."""

from __future__ import annotations

from aws_cdk import Duration, Names
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from . import acknowledgements as ack
from ._interfaces import fifo_of, function_of, queue_of, timeout_of, visibility_timeout_of
from ._validation import check_duration_range, check_range, check_visibility_timeout, require
from .function import HandlerFunction
from .queue import SecureQueue


class QueueEventSource(Construct):
    """A Lambda event source mapping on one SQS queue, with partial batch responses.

    One of the three consumers of this library, which all take the same shape,
    ``(scope, id, *, consumer=<function>, <source>=..., batch_size=..., ...)``:
    :class:`QueueEventSource` (``queue=``), :class:`KafkaEventSource`
    (``cluster=``, ``topic=``) and :class:`MqEventSource` (``broker=``, ``queue=``).

    - batches of ``batch_size`` messages, waiting at most ``max_batching_window``;
    - partial batch responses (``ReportBatchItemFailures``): the handler names
      the messages that failed and only those return to the queue; after the
      queue's ``max_receive_count`` they go to its dead-letter queue (SQS
      sources take no on-failure destination);
    - the function may consume the queue (``sqs:ReceiveMessage``,
      ``ChangeMessageVisibility``, ``GetQueueUrl``, ``DeleteMessage``,
      ``GetQueueAttributes`` and the key's ``kms:Decrypt``), as aws-cdk-lib's
      ``SqsEventSource`` grants it;
    - checks: the batch size (1 to 10 for FIFO queues, 1 to 10,000 for standard
      ones, above 10 only with a batching window), the window (up to 5 minutes),
      the maximum concurrency (2 to 1,000), and that the queue's visibility
      timeout is at least 6 times the function's timeout (when both are known:
      a ``SecureQueue`` and a ``HandlerFunction`` or a new ``lambda_.Function``).

    The mapping is made on the function (``add_event_source``, as aws-cdk-lib's
    ``SqsEventSource`` does), so its construct path and logical id follow the
    function and the queue, not this construct's id.

    :param consumer: the function to invoke: a ``HandlerFunction`` or any
        ``lambda_.IFunction``. An imported function's role is not known here:
        grant it the consume actions where it is defined. Required.
    :param queue: a ``SecureQueue`` or any ``sqs.IQueue`` (imported too). Required.
    :param batch_size: 1 to 10 for FIFO queues, 1 to 10,000 for standard ones. Default: 10.
    :param max_batching_window: up to 5 minutes. Default: none.
    :param max_concurrency: concurrent batches the source may invoke (2 to
        1,000). Default: no limit but the function's reserved concurrency.
    :param enabled: Default: True.

    Attributes: ``event_source`` (the ``SqsEventSource``), ``mapping`` (the ``lambda_.EventSourceMapping``).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        consumer: HandlerFunction | lambda_.IFunction,
        queue: SecureQueue | sqs.IQueue,
        batch_size: int = 10,
        max_batching_window: Duration | None = None,
        max_concurrency: int | None = None,
        enabled: bool = True,
    ) -> None:
        super().__init__(scope, construct_id)
        function, source_queue = function_of(consumer), queue_of(queue)
        check_range("batch_size", batch_size, 1, 10 if fifo_of(queue) else 10000)
        require(
            batch_size <= 10 or (max_batching_window is not None and max_batching_window.to_seconds() > 0),
            f"batch_size above 10 needs a max_batching_window, got batch_size {batch_size} and no window",
        )
        check_duration_range("max_batching_window", max_batching_window, Duration.seconds(0), Duration.minutes(5))
        check_range("max_concurrency", max_concurrency, 2, 1000)
        visibility, timeout = visibility_timeout_of(queue), timeout_of(consumer)
        if visibility is not None and timeout is not None:
            check_visibility_timeout(visibility, timeout)
        self.event_source = event_sources.SqsEventSource(
            source_queue,
            batch_size=batch_size,
            max_batching_window=max_batching_window,
            max_concurrency=max_concurrency,
            report_batch_item_failures=True,
            # Left out when true (Lambda's default), as aws-cdk-lib leaves it out.
            enabled=None if enabled else False,
        )
        function.add_event_source(self.event_source)
        # aws-cdk-lib's SqsEventSource names the mapping after the queue, under the function.
        self.mapping: lambda_.EventSourceMapping = function.node.find_child(f"SqsEventSource:{Names.node_unique_id(source_queue.node)}")
        ack.serverless_lambda_event_source_mapping_destination_sqs(function)
