"""EventStream: a Kinesis data stream encrypted with a CMK, sized by the profile, watched; and its Lambda consumers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from . import acknowledgements as ack
from ._grants import QueueDestination
from ._interfaces import construct_of, function_of
from ._validation import check_duration_range, check_range, check_threshold, require
from .encryption import key_or_new
from .monitoring import kinesis as kinesis_monitoring
from .monitoring import lambda_function as lambda_monitoring
from .monitoring._alarms import alarm_topic_for
from .profile import Profile
from .queue import SecureQueue, dead_letter_queue_for

if TYPE_CHECKING:
    from ._interfaces import FunctionLike

#: What a producer needs: put records (one or a batch). Kinesis encrypts each record with a data key from the CMK.
WRITE_ACTIONS = ("kinesis:PutRecord", "kinesis:PutRecords")
#: What a reader needs to find the shards and read them (Firehose's documented minimum, plus the summary CDK's consumers call).
READ_ACTIONS = ("kinesis:DescribeStream", "kinesis:DescribeStreamSummary", "kinesis:GetShardIterator", "kinesis:GetRecords", "kinesis:ListShards")

DEFAULT_ITERATOR_AGE_THRESHOLD = Duration.minutes(1)
DEFAULT_MAX_BATCHING_WINDOW = Duration.seconds(1)
DEFAULT_MAX_RECORD_AGE = Duration.hours(1)


class EventStream(Construct):
    """A Kinesis data stream for events, encrypted with a customer-managed key.

    - capacity: on-demand in the sandbox (no shard to size; about $29 a month
      per stream idle), ``shard_count`` provisioned shards in production
      (1 MB/s or 1,000 records/s of writes each, 2 MB/s of reads shared by
      the readers);
    - retention: 24 hours in the sandbox, 7 days in production;
    - alarms on writes refused for throughput, on records a PutRecords call
      left unstored, and on the slowest reader's iterator age;
    - :meth:`add_consumer`: a Lambda function reading the stream, its failures
      to an on-failure queue.

    Grants name their actions (no ``kinesis:*``) and the key's: writers get
    ``kms:GenerateDataKey``, readers ``kms:Decrypt``.

    :param stream_name: Default: generated.
    :param shard_count: provisioned shards in production (1 to 10,000). Default: 2.
    :param on_demand: Default: the profile's (sandbox yes, production no).
    :param retention: 24 hours to 365 days. Default: the profile's (24 hours, 7 days).
    :param iterator_age_threshold: the slowest reader's lag that alarms (for 3 minutes). Default: 1 minute.
    :param throttled_records_alarm_threshold: ``WriteProvisionedThroughputExceeded`` in 5 minutes. Default: 1 (any).
    :param failed_records_alarm_threshold: ``PutRecords.FailedRecords`` in 5 minutes. Default: 1 (any).
    :param encryption_key: Default: a new key with rotation.
    :param alarm_topic: Default: no action (synth warns that nobody is notified).
    :param profile: Default: from context.

    Attributes: ``stream`` (the ``kinesis.Stream``), ``stream_name``, ``stream_arn``, ``key``, ``alarms``.
    """

    monitoring_label = "stream"

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        stream_name: str | None = None,
        shard_count: int = 2,
        on_demand: bool | None = None,
        retention: Duration | None = None,
        iterator_age_threshold: Duration = DEFAULT_ITERATOR_AGE_THRESHOLD,
        throttled_records_alarm_threshold: int = 1,
        failed_records_alarm_threshold: int = 1,
        encryption_key: kms.IKey | None = None,
        alarm_topic: sns.ITopic | None = None,
        profile: Profile | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        alarm_topic = alarm_topic_for(self, alarm_topic)
        self.profile = profile or Profile.of(self)
        check_range("shard_count", shard_count, 1, 10000)
        check_threshold("throttled_records_alarm_threshold", throttled_records_alarm_threshold, 1)
        check_threshold("failed_records_alarm_threshold", failed_records_alarm_threshold, 1)
        retention = retention or self.profile.pick(sandbox=Duration.hours(24), production=Duration.days(7))
        check_duration_range("retention", retention, Duration.hours(24), Duration.days(365))
        if on_demand is None:
            on_demand = self.profile.pick(sandbox=True, production=False)
        self.key: kms.IKey = key_or_new(self, encryption_key, self.profile)
        self._alarm_topic = alarm_topic
        self.stream = kinesis.Stream(
            self,
            "Resource",
            stream_name=stream_name,
            stream_mode=kinesis.StreamMode.ON_DEMAND if on_demand else kinesis.StreamMode.PROVISIONED,
            shard_count=None if on_demand else shard_count,
            retention_period=retention,
            encryption=kinesis.StreamEncryption.KMS,
            encryption_key=self.key,
            removal_policy=self.profile.removal_policy,
        )
        ack.aws_solutions_kds3(self.stream)
        self.stream_name = self.stream.stream_name
        self.stream_arn = self.stream.stream_arn
        self.alarms: list[cloudwatch.Alarm] = kinesis_monitoring.alarms(
            self,
            self.stream_name,
            alarm_topic,
            throttled_records=throttled_records_alarm_threshold,
            failed_records=failed_records_alarm_threshold,
            iterator_age=iterator_age_threshold,
        )

    def grant_write(self, grantee: iam.IGrantable) -> iam.Grant:
        """``kinesis:PutRecord`` and ``PutRecords`` on this stream, and ``kms:GenerateDataKey`` on its key."""
        self.key.grant(grantee, "kms:GenerateDataKey")
        return iam.Grant.add_to_principal(grantee=grantee, actions=list(WRITE_ACTIONS), resource_arns=[self.stream_arn])

    def grant_read(self, grantee: iam.IGrantable) -> iam.Grant:
        """The read actions (``READ_ACTIONS``) on this stream, and ``kms:Decrypt`` on its key."""
        self.key.grant(grantee, "kms:Decrypt")
        return iam.Grant.add_to_principal(grantee=grantee, actions=list(READ_ACTIONS), resource_arns=[self.stream_arn])

    def add_consumer(
        self,
        consumer: FunctionLike,
        *,
        batch_size: int = 500,
        max_batching_window: Duration = DEFAULT_MAX_BATCHING_WINDOW,
        tumbling_window: Duration | None = None,
        parallelization_factor: int = 1,
        retry_attempts: int = 5,
        max_record_age: Duration = DEFAULT_MAX_RECORD_AGE,
        starting_position: lambda_.StartingPosition = lambda_.StartingPosition.TRIM_HORIZON,
        iterator_age_threshold: Duration = DEFAULT_ITERATOR_AGE_THRESHOLD,
        dead_letter_queue: SecureQueue | sqs.IQueue | None = None,
    ) -> StreamConsumer:
        """Read this stream with ``consumer`` (a :class:`HandlerFunction` or any ``lambda_.IFunction``).

        The mapping reports partial batch failures (the function answers
        ``batchItemFailures``), bisects a failing batch, retries
        ``retry_attempts`` times, gives up on records older than
        ``max_record_age``, and then sends a description of the failed batch
        (shard, sequence numbers; the records stay in the stream for its
        retention) to the on-failure queue, which alarms. With
        ``tumbling_window`` (1 second to 15 minutes) Lambda keeps the
        function's ``state`` across the window's invocations. Alarms on the
        consumer's iterator age and on failure records that could not reach
        the queue.

        :param batch_size: 1 to 10,000. Default: 500.
        :param max_batching_window: 0 to 5 minutes. Default: 1 second.
        :param tumbling_window: Default: none.
        :param parallelization_factor: batches per shard at once, 1 to 10 (a partition key's records stay in order). Default: 1.
        :param retry_attempts: 0 to 10,000. Default: 5.
        :param max_record_age: 1 minute to 7 days. Default: 1 hour.
        :param starting_position: Default: ``TRIM_HORIZON``.
        :param iterator_age_threshold: the consumer's lag that alarms (for 3 minutes). Default: 1 minute.
        :param dead_letter_queue: the on-failure destination. Default: a new terminal :class:`SecureQueue` with this stream's key.
        """
        check_range("batch_size", batch_size, 1, 10000)
        check_duration_range("max_batching_window", max_batching_window, Duration.seconds(0), Duration.minutes(5))
        if tumbling_window is not None:
            check_duration_range("tumbling_window", tumbling_window, Duration.seconds(1), Duration.minutes(15))
        check_range("parallelization_factor", parallelization_factor, 1, 10)
        check_range("retry_attempts", retry_attempts, 0, 10000)
        check_duration_range("max_record_age", max_record_age, Duration.minutes(1), Duration.days(7))
        function = function_of(consumer)
        name = construct_of(consumer).node.id  # a HandlerFunction's own function is always "Resource": the wrapper's id
        require(name != "Resource", f"name the consumer's construct: {function.node.path} cannot tell two consumers apart")
        require(self.node.try_find_child(f"{name}Failures") is None, f"{function.node.path} already consumes this stream")
        queue, queue_alarms = dead_letter_queue_for(
            self,
            f"{name}Failures",
            dead_letter_queue,
            role="on-failure destination of a Kinesis event source mapping",
            encryption_key=self.key,
            alarm_topic=self._alarm_topic,
            profile=self.profile,
        )
        source = event_sources.KinesisEventSource(
            self.stream,
            starting_position=starting_position,
            batch_size=batch_size,
            max_batching_window=max_batching_window,
            tumbling_window=tumbling_window,
            parallelization_factor=parallelization_factor,
            bisect_batch_on_error=True,
            report_batch_item_failures=True,
            retry_attempts=retry_attempts,
            max_record_age=max_record_age,
            on_failure=QueueDestination(queue),
        )
        function.add_event_source(source)
        scope = Construct(self, f"{name}Consumer")
        alarms = [
            *queue_alarms,
            lambda_monitoring.iterator_age_alarm(scope, function, iterator_age_threshold, self._alarm_topic),
            lambda_monitoring.destination_delivery_failures_alarm(scope, function, self._alarm_topic),
        ]
        return StreamConsumer(function=function, event_source=source, dead_letter_queue=queue, alarms=alarms)

    def metric(self, metric_name: str, **options) -> cloudwatch.Metric:
        return kinesis_monitoring.metric(self.stream_name, metric_name, **options)

    def dashboard_widgets(self, title: str) -> list[cloudwatch.IWidget]:
        return kinesis_monitoring.widgets(title, self.stream_name)


class StreamConsumer:
    """What :meth:`EventStream.add_consumer` made: the mapping, its on-failure queue, its alarms."""

    def __init__(
        self, *, function: lambda_.IFunction, event_source: event_sources.KinesisEventSource, dead_letter_queue: sqs.IQueue, alarms: list[cloudwatch.Alarm]
    ) -> None:
        self.function = function
        self.event_source = event_source
        self.dead_letter_queue = dead_letter_queue
        self.alarms = alarms
