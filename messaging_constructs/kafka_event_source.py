"""KafkaEventSource: a Lambda function consuming one topic of a :class:`KafkaCluster`."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_msk as msk
from aws_cdk import aws_sns as sns
from constructs import Construct

from . import _acknowledgements as ack
from ._iam import allow_event_source_network_interfaces
from ._validation import check_duration_range, check_range, require
from .function import HandlerFunction
from .kafka_cluster import KafkaCluster
from .profile import Profile
from .queue import SecureQueue, keyless_view

#: What the mapping's network interfaces reach through interface endpoints:
#: Lambda (to invoke), STS (to assume the function's role) and SQS (the on-failure queue).
EVENT_SOURCE_ENDPOINTS = (
    ec2.InterfaceVpcEndpointAwsService.LAMBDA_,
    ec2.InterfaceVpcEndpointAwsService.STS,
    ec2.InterfaceVpcEndpointAwsService.SQS,
)


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

    - consumer group ``consumer_group`` (committed offsets survive a
      redeploy), starting at ``starting_position``;
    - batches of ``batch_size`` records, waiting at most ``max_batching_window``;
    - partial batch responses (``ReportBatchItemFailures``): the handler
      names the records that failed and only those are retried;
    - at most ``retry_attempts`` retries and records no older than
      ``max_record_age``; then the batch's metadata (topic, partition,
      offsets) goes to the on-failure queue, a :class:`SecureQueue` with no
      DLQ of its own that alarms on any message;
    - provisioned event pollers (Lambda applies the retry, age and
      partial-batch controls to Kafka sources in provisioned mode only);
    - the function's role gets exactly what the mapping needs: the
      ``kafka-cluster`` read actions on the topic and group, the MSK
      describe and bootstrap actions on the cluster, the VPC describe and
      network-interface actions (which have no resource-level permissions),
      and send on the on-failure queue with its key;
    - the cluster's network gets the Lambda, STS and SQS interface
      endpoints the mapping reaches from the cluster's subnets;
    - an alarm when the group lags ``max_offset_lag`` records or more.

    :param cluster: Required.
    :param consumer: the function to invoke. Required.
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
    :param on_failure_queue: Default: a new :class:`SecureQueue` encrypted with ``encryption_key``.
    :param encryption_key: encrypts the new on-failure queue. Default: the consumer's key.
    :param alarm_topic: Default: no action.
    :param profile: Default: from context.

    Attributes: ``mapping``, ``on_failure_queue``, ``alarms``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        cluster: KafkaCluster,
        consumer: HandlerFunction,
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
        on_failure_queue: SecureQueue | None = None,
        encryption_key: kms.IKey | None = None,
        alarm_topic: sns.ITopic | None = None,
        profile: Profile | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        profile = profile or Profile.of(self)
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

        self.on_failure_queue = on_failure_queue or SecureQueue(
            self,
            "OnFailureQueue",
            dead_letter_queue=False,
            encryption_key=encryption_key or consumer.key,
            alarm_topic=alarm_topic,
            profile=profile,
        )
        if on_failure_queue is None:
            ack.dead_letter_destination(self.on_failure_queue.queue, "on-failure destination of a Kafka event source mapping")
        role = consumer.role
        cluster.grant_consume(role, topic, consumer_group)
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["kafka:DescribeClusterV2", "kafka:GetBootstrapBrokers", "kafka-cluster:DescribeClusterDynamicConfiguration"],
                resources=[cluster.cluster_arn],
            )
        )
        # Lambda creates the mapping's network interfaces in the cluster's subnets with the function's role.
        allow_event_source_network_interfaces(role)
        if self.on_failure_queue.key is not None:
            self.on_failure_queue.key.grant(role, "kms:GenerateDataKey", "kms:Decrypt")
        for service in EVENT_SOURCE_ENDPOINTS:
            cluster.network.ensure_interface_endpoint(service)

        self.mapping = consumer.function.add_event_source_mapping(
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
            on_failure=event_sources.SqsDlq(keyless_view(self, "OnFailureQueueView", self.on_failure_queue.queue)),
        )
        # Lambda checks the role and the topic when the mapping is created.
        self.mapping.node.add_dependency(role.policy)
        if topic_resource is not None:
            self.mapping.node.add_dependency(topic_resource)
        self.alarms: list[cloudwatch.Alarm] = [
            cluster.add_lag_alarm(f"{construct_id}LagAlarm", consumer_group, topic, max_offset_lag=max_offset_lag),
            *self.on_failure_queue.alarms,
        ]
        self._cluster, self._topic, self._group = cluster, topic, consumer_group

    def dashboard_widgets(self, title: str) -> list[cloudwatch.IWidget]:
        """The group's offset and time lag on the topic, and the on-failure queue."""
        from .monitoring import msk as msk_monitoring

        return msk_monitoring.lag_widgets(title, self._cluster.cluster_name, self._group, self._topic) + self.on_failure_queue.dashboard_widgets(
            f"{title} on-failure"
        )
