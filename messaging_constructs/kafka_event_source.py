"""KafkaEventSource: a Lambda function consuming one topic of a :class:`KafkaCluster`."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_msk as msk
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from ._grants import QueueDestination
from ._iam import grant_event_source_network_interfaces, policy_of
from ._interfaces import function_key_of, function_of, role_of
from ._validation import check_duration_range, check_range, require
from .function import HandlerFunction
from .kafka_cluster import EVENT_SOURCE_ENDPOINTS, KafkaCluster
from .monitoring._alarms import alarm_topic_for
from .profile import Profile
from .queue import SecureQueue, dead_letter_queue_for

__all__ = ["EVENT_SOURCE_ENDPOINTS", "KafkaEventSource", "ProvisionedPollers"]


@dataclass(frozen=True)
class ProvisionedPollers:
    """Event pollers kept for the mapping (each handles up to 5 MB/s or 5 concurrent invocations).

    :param minimum: always running, billed per hour (1 to 200).
    :param maximum: the most it scales to (1 to 2,000).
    """

    minimum: int = 1
    maximum: int = 2


class KafkaEventSource(Construct):
    """A Lambda event source mapping on a topic of an MSK cluster, with bounded retries and an on-failure queue.

    One of the three consumers of this library, which all take the same shape,
    ``(scope, id, *, consumer=<function>, <source>=..., batch_size=..., ...)``:
    :class:`QueueEventSource`, :class:`KafkaEventSource`, :class:`MqEventSource`.

    - consumer group ``consumer_group`` (committed offsets survive a
      redeploy), starting at ``starting_position``;
    - batches of ``batch_size`` records, waiting at most ``max_batching_window``;
    - partial batch responses (``ReportBatchItemFailures``): the handler
      names the records that failed and only those are retried;
    - at most ``retry_attempts`` retries and records no older than
      ``max_record_age``; then the batch's metadata (topic, partition,
      offsets) goes to the on-failure destination, ``dead_letter_queue`` (by
      default a terminal :class:`SecureQueue` that alarms on any message);
    - provisioned event pollers (Lambda applies the retry, age and
      partial-batch controls to Kafka sources in provisioned mode only);
    - the function's role gets exactly what the mapping needs: the
      ``kafka-cluster`` read actions on the topic and group, the MSK
      describe and bootstrap actions on the cluster, the VPC describe and
      network-interface actions (which have no resource-level permissions),
      and send on the on-failure queue with its key (``sqs:SendMessage``;
      ``kms:GenerateDataKey``, ``kms:Decrypt``);
    - the cluster lets event source mappings in
      (:meth:`KafkaCluster.allow_event_source_mappings`: its security group,
      and the Lambda, STS and SQS interface endpoints);
    - an alarm when the group lags ``max_offset_lag`` records or more.

    :param consumer: the function to invoke: a ``HandlerFunction``, or a
        ``lambda_.IFunction`` whose role is known (a new function, or one imported
        with ``Function.from_function_attributes(role=...)``). Required.
    :param cluster: Required.
    :param topic: Required.
    :param consumer_group: Required (1 to 200 of ``[a-zA-Z0-9-/*:_+=.@]``).
    :param topic_resource: the topic's ``CfnTopic`` when the stack creates it; the mapping waits for it. Default: none.
    :param starting_position: ``TRIM_HORIZON`` or ``LATEST``. Default: ``TRIM_HORIZON`` (nothing produced before the mapping is lost).
    :param batch_size: 1 to 10,000. Default: 100.
    :param max_batching_window: up to 5 minutes. Default: 1 second.
    :param retry_attempts: 0 to 10,000. Default: 3.
    :param max_record_age: 1 minute to 7 days. Default: 6 hours.
    :param bisect_batch_on_error: split a failing batch in two. Default: False (partial batch responses already isolate bad records).
    :param provisioned_pollers: Default: 1 to 2 pollers.
    :param max_offset_lag: lag alarm threshold in records. Default: 10,000.
    :param dead_letter_queue: the on-failure destination, used as it is (a
        ``SecureQueue`` or any ``sqs.IQueue``). Default: a new terminal
        ``SecureQueue`` (construct id ``OnFailureQueue``) encrypted with ``encryption_key``.
    :param encryption_key: encrypts the new on-failure queue. Default: the
        consumer's key (a ``HandlerFunction``), else a new key with rotation.
    :param alarm_topic: the on-failure queue's alarms (the lag alarm notifies the
        cluster's). Default: no action (synth warns that nobody is notified).
    :param profile: Default: from context.

    Attributes: ``mapping``, ``dead_letter_queue`` (an ``sqs.IQueue``), ``alarms``.
    """

    monitoring_label = "consumer group"

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        consumer: HandlerFunction | lambda_.IFunction,
        cluster: KafkaCluster,
        topic: str,
        consumer_group: str,
        topic_resource: msk.CfnTopic | None = None,
        starting_position: lambda_.StartingPosition = lambda_.StartingPosition.TRIM_HORIZON,
        batch_size: int = 100,
        max_batching_window: Duration | None = None,
        retry_attempts: int = 3,
        max_record_age: Duration | None = None,
        bisect_batch_on_error: bool = False,
        provisioned_pollers: ProvisionedPollers | None = None,
        max_offset_lag: int = 10_000,
        dead_letter_queue: SecureQueue | sqs.IQueue | None = None,
        encryption_key: kms.IKey | None = None,
        alarm_topic: sns.ITopic | None = None,
        profile: Profile | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        alarm_topic = alarm_topic_for(self, alarm_topic)
        profile = profile or Profile.of(self)
        function, role = function_of(consumer), role_of(consumer, "KafkaEventSource")
        max_batching_window = max_batching_window or Duration.seconds(1)
        max_record_age = max_record_age or Duration.hours(6)
        provisioned_pollers = provisioned_pollers or ProvisionedPollers()
        require(
            starting_position in (lambda_.StartingPosition.TRIM_HORIZON, lambda_.StartingPosition.LATEST),
            "starting_position must be TRIM_HORIZON or LATEST",
        )
        check_range("batch_size", batch_size, 1, 10000)
        check_duration_range("max_batching_window", max_batching_window, Duration.seconds(0), Duration.minutes(5))
        check_range("retry_attempts", retry_attempts, 0, 10000)
        check_duration_range("max_record_age", max_record_age, Duration.minutes(1), Duration.days(7))
        check_range("provisioned_pollers.minimum", provisioned_pollers.minimum, 1, 200)
        check_range("provisioned_pollers.maximum", provisioned_pollers.maximum, provisioned_pollers.minimum, 2000)
        # Lambda accepts ':' in a group id, but MSK publishes no lag metrics for a group whose
        # name holds ':' or non-ASCII characters, which would leave the lag alarm silent
        # (https://docs.aws.amazon.com/msk/latest/developerguide/consumer-lag.html).
        require(
            1 <= len(consumer_group) <= 200 and all((c.isascii() and c.isalnum()) or c in "-/*_+=.@" for c in consumer_group),
            f"consumer_group must be 1 to 200 of ASCII letters, digits and -/*_+=.@ (MSK publishes no lag metrics for other names), got {consumer_group!r}",
        )

        self.dead_letter_queue, dead_letter_alarms = dead_letter_queue_for(
            self,
            "OnFailureQueue",
            dead_letter_queue,
            role="on-failure destination of a Kafka event source mapping",
            encryption_key=encryption_key or function_key_of(consumer),
            alarm_topic=alarm_topic,
            profile=profile,
        )
        cluster.grant_consume(role, topic, consumer_group)
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["kafka:DescribeClusterV2", "kafka:GetBootstrapBrokers", "kafka-cluster:DescribeClusterDynamicConfiguration"],
                resources=[cluster.cluster_arn],
            )
        )
        # Lambda creates the mapping's network interfaces in the cluster's subnets with the function's role.
        grant_event_source_network_interfaces(role)
        cluster.allow_event_source_mappings()

        self.mapping = function.add_event_source_mapping(
            "KafkaSource",
            event_source_arn=cluster.cluster_arn,
            kafka_topic=topic,
            kafka_consumer_group_id=consumer_group,
            starting_position=starting_position,
            batch_size=batch_size,
            max_batching_window=max_batching_window,
            retry_attempts=retry_attempts,
            max_record_age=max_record_age,
            bisect_batch_on_error=bisect_batch_on_error,
            report_batch_item_failures=True,
            provisioned_poller_config=lambda_.ProvisionedPollerConfig(minimum_pollers=provisioned_pollers.minimum, maximum_pollers=provisioned_pollers.maximum),
            on_failure=QueueDestination(self.dead_letter_queue),
        )
        # Lambda checks the role and the topic when the mapping is created.
        self.mapping.node.add_dependency(policy_of(role))
        if topic_resource is not None:
            self.mapping.node.add_dependency(topic_resource)
        self.alarms: list[cloudwatch.Alarm] = [
            cluster.add_lag_alarm(f"{construct_id}LagAlarm", consumer_group, topic, max_offset_lag=max_offset_lag),
            *dead_letter_alarms,
        ]
        self._cluster, self._topic, self._group = cluster, topic, consumer_group

    def dashboard_widgets(self, title: str) -> list[cloudwatch.IWidget]:
        """A dashboard section (see :meth:`MonitoringDashboard.monitor`): the group's offset and time lag on the topic, and the on-failure queue."""
        from .monitoring import msk as msk_monitoring
        from .monitoring import sqs as sqs_monitoring

        return msk_monitoring.lag_widgets(title, self._cluster.cluster_name, self._group, self._topic) + sqs_monitoring.widgets(
            f"{title} on-failure", self.dead_letter_queue, None
        )
