"""KafkaCluster: an Amazon MSK cluster (provisioned or serverless) reached with IAM auth over TLS only."""

from __future__ import annotations

import base64
import enum
import json
import re
from collections.abc import Mapping

from aws_cdk import Aws, Duration, Fn, RemovalPolicy, Stack, Token
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_msk as msk
from aws_cdk import aws_sns as sns
from constructs import Construct

from ._naming import replaceable_name, subnet_identity
from ._validation import check_duration_range, check_range, require
from .encryption import KeyUser, allow_service, key_or_new
from .monitoring import msk as msk_monitoring
from .monitoring._alarms import alarm_topic_for
from .network import PrivateNetwork, aws_api_service
from .profile import Profile

#: Clients authenticate with IAM (SASL/OAUTHBEARER or SASL/IAM) over TLS on this port.
IAM_TLS_PORT = 9098
#: The Apache Kafka version of provisioned clusters (ZooKeeper metadata mode; MSK names
#: the KRaft builds ``3.9.x.kraft``, which can be passed instead but not switched to later).
DEFAULT_KAFKA_VERSION = "3.9.x"
DEFAULT_RETENTION = Duration.days(1)
#: What an event source mapping's network interfaces reach through interface endpoints:
#: Lambda (to invoke), STS (to assume the function's role) and SQS (the on-failure queue).
EVENT_SOURCE_ENDPOINTS = (
    ec2.InterfaceVpcEndpointAwsService.LAMBDA_,
    ec2.InterfaceVpcEndpointAwsService.STS,
    ec2.InterfaceVpcEndpointAwsService.SQS,
)
_CLUSTER_NAME = re.compile(r"[0-9A-Za-z][0-9A-Za-z-]{0,63}")
_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")
_CLUSTER_NAME_PATTERN = "letters, digits and hyphens, starting with a letter or digit, at most 64 characters"


class KafkaClusterType(enum.Enum):
    """MSK Provisioned (brokers you size and pay for by the hour) or MSK Serverless (billed per cluster-hour and partition-hour)."""

    PROVISIONED = "provisioned"
    SERVERLESS = "serverless"


class KafkaCluster(Construct):
    """An MSK cluster in a :class:`PrivateNetwork`'s isolated subnets, with IAM auth and TLS only.

    What every cluster gets:

    - IAM access control only (no unauthenticated or SCRAM access), on port
      9098 with TLS; nothing public;
    - a security group that admits Kafka traffic only from peers named with
      :meth:`allow_client` and, once :meth:`allow_event_source_mappings` is
      called (a :class:`KafkaEventSource` calls it), from itself (the event
      source mappings' network interfaces use it), reaching out then only to
      itself and the network's interface endpoints (HTTPS);
    - ``grant_produce``, ``grant_consume`` and ``grant_bootstrap_brokers``
      with ``kafka-cluster`` actions on the exact cluster, topic and group ARNs.

    Provisioned clusters (the default in both profiles) also get:

    - brokers in every subnet of the network (``brokers_per_az`` each), of
      the profile's ``kafka_instance_type`` with its ``kafka_volume_size`` of
      EBS (sandbox ``kafka.t3.small`` with 10 GiB, production
      ``kafka.m7g.large`` with 100 GiB);
    - encryption at rest with the CMK, TLS between clients and brokers and
      between brokers;
    - broker logs to a log group encrypted with the CMK;
    - the profile's ``kafka_enhanced_monitoring`` (sandbox ``DEFAULT``, production ``PER_BROKER``);
    - a configuration that turns off topic auto-creation (topics come from
      :meth:`add_topic`) and sets replication to the broker count, up to 3;
    - alarms on each broker's CPU (user + system at or above 60% for 15
      minutes) and data-log disk use (at or above 80%).

    Teardown: the cluster, its topics and its configuration are deleted with
    the stack in both profiles; its key and broker log group follow the
    profile (production retains them). A retained cluster would need its
    subnets, security group and configuration retained too, or ``cdk destroy``
    ends in DELETE_FAILED, and would go on costing what it costs running.
    Kafka here is a transport with a retention of a day, not a store of
    record: before destroying a production stack (whose termination
    protection must first be turned off), stop the producers and let every
    consumer group's lag reach zero (docs/exercise-03.md, "Teardown").

    MSK Serverless always uses IAM auth and TLS and encrypts at rest with a
    key AWS owns; it has no brokers to watch, no broker logs, and no topic API
    that CloudFormation can call, so :meth:`add_topic` refuses it.

    :param network: the VPC and subnets. Required.
    :param cluster_type: Default: ``PROVISIONED`` in both profiles; at idle
        two ``kafka.t3.small`` brokers cost less than a serverless cluster's
        cluster-hours (docs/exercise-03.md has the figures).
    :param cluster_name: a fixed name. CloudFormation cannot replace a cluster
        whose name stays the same, so a change to a create-only property (its
        subnets, security group, key) then fails. Default: a name from the
        construct path and a hash of the create-only properties, which changes
        when they do, so that the replacement goes through.
    :param kafka_version: provisioned only. Default: ``3.9.x``.
    :param instance_type: provisioned only. Default: the profile's ``kafka_instance_type``.
    :param brokers_per_az: provisioned only (1 to 5). Default: 1.
    :param volume_size: GiB per broker, provisioned only (1 to 16,384). Default: the profile's ``kafka_volume_size``.
    :param enhanced_monitoring: provisioned only. Default: the profile's ``kafka_enhanced_monitoring``.
    :param encryption_key: encrypts data at rest and the broker logs. Default: a new key with rotation.
    :param cpu_alarm_percent: a broker's CPU in use (user + system) that raises its alarm, for 15 minutes. Default: 60.
    :param disk_alarm_percent: a broker's data-log disk use that raises its alarm. Default: 80.
    :param alarm_topic: where alarms notify (the lag alarms of :meth:`add_lag_alarm` too).
        Default: no action (synth warns that nobody is notified).
    :param profile: Default: from context.

    Attributes: ``cluster_arn``, ``cluster_name``, ``cluster_type``,
    ``security_group``, ``connections``, ``log_group`` (None for serverless),
    ``broker_count`` (0 for serverless), ``network``, ``key``, ``alarms``.
    """

    monitoring_label = "cluster"

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        network: PrivateNetwork,
        cluster_type: KafkaClusterType | None = None,
        cluster_name: str | None = None,
        kafka_version: str = DEFAULT_KAFKA_VERSION,
        instance_type: str | None = None,
        brokers_per_az: int = 1,
        volume_size: int | None = None,
        enhanced_monitoring: str | None = None,
        encryption_key: kms.IKey | None = None,
        cpu_alarm_percent: float = 60,
        disk_alarm_percent: float = 80,
        alarm_topic: sns.ITopic | None = None,
        profile: Profile | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        alarm_topic = alarm_topic_for(self, alarm_topic)
        self.profile = profile or Profile.of(self)
        self.network = network
        self.cluster_type = cluster_type or KafkaClusterType.PROVISIONED
        check_range("brokers_per_az", brokers_per_az, 1, 5)
        check_range("volume_size", volume_size, 1, 16384, "GiB")
        check_range("cpu_alarm_percent", cpu_alarm_percent, 1, 100, "%")
        check_range("disk_alarm_percent", disk_alarm_percent, 1, 100, "%")
        self._alarm_topic = alarm_topic
        self.key: kms.IKey = key_or_new(self, encryption_key, self.profile)

        self.security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=network.vpc,
            allow_all_outbound=False,
            description="MSK cluster: Kafka over TLS with IAM auth from itself and named clients only",
        )
        self.connections = ec2.Connections(security_groups=[self.security_group], default_port=ec2.Port.tcp(IAM_TLS_PORT))

        subnets = network.vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED).subnets
        subnet_ids = [subnet.subnet_id for subnet in subnets]
        # What forces a new cluster (AWS::MSK::Cluster and AWS::MSK::ServerlessCluster "Update requires: Replacement"):
        # subnets, security groups (replaced themselves when their description or VPC changes), encryption at rest and
        # in the cluster, client authentication (serverless).
        self.cluster_name = cluster_name or replaceable_name(
            self,
            max_length=64,
            create_only={
                "type": self.cluster_type.value,
                "subnets": subnet_identity(subnets),
                "security_group": [self.security_group.security_group_id, self.security_group.node.default_child.group_description],
                "encryption_at_rest": None if self.cluster_type is KafkaClusterType.SERVERLESS else self.key.key_arn,
                "in_cluster_tls": True,
                "client_authentication": "IAM",
            },
        )
        _check_cluster_name(self.cluster_name)
        self.log_group: logs.LogGroup | None = None
        self.broker_count = 0
        self.alarms: list[cloudwatch.Alarm] = []
        if self.cluster_type is KafkaClusterType.SERVERLESS:
            for label, value in (("instance_type", instance_type), ("volume_size", volume_size), ("enhanced_monitoring", enhanced_monitoring)):
                require(value is None, f"{label} applies to provisioned clusters only; MSK Serverless sizes itself")
            self.resource: msk.CfnCluster | msk.CfnServerlessCluster = msk.CfnServerlessCluster(
                self,
                "Resource",
                cluster_name=self.cluster_name,
                client_authentication=msk.CfnServerlessCluster.ClientAuthenticationProperty(
                    sasl=msk.CfnServerlessCluster.SaslProperty(iam=msk.CfnServerlessCluster.IamProperty(enabled=True))
                ),
                vpc_configs=[msk.CfnServerlessCluster.VpcConfigProperty(subnet_ids=subnet_ids, security_groups=[self.security_group.security_group_id])],
            )
        else:
            self.resource = self._provisioned(
                subnet_ids,
                kafka_version=kafka_version,
                instance_type=instance_type or self.profile.kafka_instance_type,
                brokers_per_az=brokers_per_az,
                volume_size=volume_size or self.profile.kafka_volume_size,
                enhanced_monitoring=enhanced_monitoring or self.profile.kafka_enhanced_monitoring,
            )
            self.alarms += msk_monitoring.broker_alarms(
                self,
                self.cluster_name,
                self.broker_ids,
                cpu_percent=cpu_alarm_percent,
                disk_percent=disk_alarm_percent,
                alarm_topic=alarm_topic,
            )
        # Deleted with the stack in both profiles: see the class docstring ("Teardown").
        self.resource.apply_removal_policy(RemovalPolicy.DESTROY)
        self.cluster_arn: str = self.resource.attr_arn

    def _provisioned(
        self,
        subnet_ids: list[str],
        *,
        kafka_version: str,
        instance_type: str,
        brokers_per_az: int,
        volume_size: int,
        enhanced_monitoring: str,
    ) -> msk.CfnCluster:
        require(len(subnet_ids) >= 2, f"a provisioned MSK cluster needs subnets in at least 2 availability zones, the network has {len(subnet_ids)}")
        require(
            enhanced_monitoring in ("DEFAULT", "PER_BROKER", "PER_TOPIC_PER_BROKER", "PER_TOPIC_PER_PARTITION"),
            f"enhanced_monitoring must be DEFAULT, PER_BROKER, PER_TOPIC_PER_BROKER or PER_TOPIC_PER_PARTITION, got {enhanced_monitoring!r}",
        )
        require(instance_type.startswith("kafka."), f"instance_type must be an MSK broker type such as kafka.m7g.large, got {instance_type!r}")
        self.broker_count = brokers_per_az * len(subnet_ids)
        replication = min(3, self.broker_count)
        allow_service(self.key, KeyUser.LOGS)
        self.log_group = logs.LogGroup(
            self,
            "BrokerLogs",
            encryption_key=self.key,
            retention=self.profile.log_retention,
            removal_policy=self.profile.removal_policy,
        )
        configuration = msk.CfnConfiguration(
            self,
            "Configuration",
            # Name and KafkaVersionsList are create-only, and the name must change with the versions.
            name=replaceable_name(self, max_length=64, create_only={"kafka_versions": [kafka_version]}, suffix="-config"),
            kafka_versions_list=[kafka_version],
            server_properties="\n".join(
                [
                    "auto.create.topics.enable=false",
                    f"default.replication.factor={replication}",
                    # One broker may be down (patching, failure) without stopping acks=all producers.
                    f"min.insync.replicas={max(1, replication - 1)}",
                    "unclean.leader.election.enable=false",
                ]
            )
            + "\n",
        )
        return msk.CfnCluster(
            self,
            "Resource",
            cluster_name=self.cluster_name,
            kafka_version=kafka_version,
            number_of_broker_nodes=self.broker_count,
            broker_node_group_info=msk.CfnCluster.BrokerNodeGroupInfoProperty(
                client_subnets=subnet_ids,
                instance_type=instance_type,
                security_groups=[self.security_group.security_group_id],
                storage_info=msk.CfnCluster.StorageInfoProperty(ebs_storage_info=msk.CfnCluster.EBSStorageInfoProperty(volume_size=volume_size)),
                connectivity_info=msk.CfnCluster.ConnectivityInfoProperty(public_access=msk.CfnCluster.PublicAccessProperty(type="DISABLED")),
            ),
            client_authentication=msk.CfnCluster.ClientAuthenticationProperty(
                sasl=msk.CfnCluster.SaslProperty(iam=msk.CfnCluster.IamProperty(enabled=True)),
                unauthenticated=msk.CfnCluster.UnauthenticatedProperty(enabled=False),
            ),
            encryption_info=msk.CfnCluster.EncryptionInfoProperty(
                encryption_at_rest=msk.CfnCluster.EncryptionAtRestProperty(data_volume_kms_key_id=self.key.key_arn),
                encryption_in_transit=msk.CfnCluster.EncryptionInTransitProperty(client_broker="TLS", in_cluster=True),
            ),
            logging_info=msk.CfnCluster.LoggingInfoProperty(
                broker_logs=msk.CfnCluster.BrokerLogsProperty(
                    cloud_watch_logs=msk.CfnCluster.CloudWatchLogsProperty(enabled=True, log_group=self.log_group.log_group_name)
                )
            ),
            enhanced_monitoring=enhanced_monitoring,
            configuration_info=msk.CfnCluster.ConfigurationInfoProperty(arn=configuration.attr_arn, revision=configuration.attr_latest_revision_revision),
        )

    # --- topics --------------------------------------------------------------

    @property
    def broker_ids(self) -> list[int]:
        """The broker IDs MSK assigns (1 to the broker count); empty for serverless."""
        return list(range(1, self.broker_count + 1))

    def add_topic(
        self,
        construct_id: str,
        topic_name: str,
        *,
        partitions: int,
        retention: Duration | None = None,
        replication_factor: int | None = None,
        configs: Mapping[str, str] | None = None,
    ) -> msk.CfnTopic:
        """A topic created by CloudFormation through the MSK topic API (provisioned clusters).

        :param partitions: 1 to 1,000. Required.
        :param retention: how long records are kept (1 hour to 365 days). Default: 1 day.
        :param replication_factor: Default: the broker count, up to 3.
        :param configs: further topic settings (``cleanup.policy``...). Default: none.
        """
        require(
            self.cluster_type is KafkaClusterType.PROVISIONED,
            "MSK Serverless has no topic API for CloudFormation; create its topics with a Kafka admin client",
        )
        require(bool(_TOPIC_NAME.fullmatch(topic_name)), f"topic_name must be 1 to 249 of letters, digits, '.', '_' and '-', got {topic_name!r}")
        check_range("partitions", partitions, 1, 1000)
        check_duration_range("retention", retention, Duration.hours(1), Duration.days(365))
        retention = retention or DEFAULT_RETENTION
        replication_factor = replication_factor or min(3, self.broker_count)
        check_range("replication_factor", replication_factor, 1, self.broker_count)
        settings = {"retention.ms": str(int(retention.to_milliseconds())), **(configs or {})}
        topic = msk.CfnTopic(
            self,
            construct_id,
            cluster_arn=self.cluster_arn,
            topic_name=topic_name,
            partition_count=partitions,
            replication_factor=replication_factor,
            configs=base64.b64encode(json.dumps(settings, sort_keys=True).encode()).decode(),
        )
        topic.apply_removal_policy(RemovalPolicy.DESTROY)
        return topic

    # --- ARNs and grants -------------------------------------------------------

    @property
    def _uuid(self) -> str:
        # cluster ARN: arn:<partition>:kafka:<region>:<account>:cluster/<name>/<uuid>
        return Fn.select(2, Fn.split("/", self.cluster_arn))

    def _resource_arn(self, kind: str, name: str) -> str:
        return f"arn:{Aws.PARTITION}:kafka:{Stack.of(self).region}:{Stack.of(self).account}:{kind}/{self.cluster_name}/{self._uuid}/{name}"

    def topic_arn(self, topic: str) -> str:
        """The IAM resource ARN of ``topic`` (a name, or a prefix ending in ``*``)."""
        return self._resource_arn("topic", topic)

    def group_arn(self, group: str) -> str:
        """The IAM resource ARN of consumer group ``group``."""
        return self._resource_arn("group", group)

    def _grant(self, grantee: iam.IGrantable, actions: list[str], resources: list[str]) -> iam.Grant:
        return iam.Grant.add_to_principal(grantee=grantee, actions=actions, resource_arns=resources)

    def grant_connect(self, grantee: iam.IGrantable) -> iam.Grant:
        """Connect to the cluster and describe it (every client needs this)."""
        return self._grant(grantee, ["kafka-cluster:Connect", "kafka-cluster:DescribeCluster"], [self.cluster_arn])

    def grant_produce(self, grantee: iam.IGrantable, topic: str) -> iam.Grant:
        """Write to ``topic``, idempotently (the producers' ``enable.idempotence``): ``kafka-cluster:Connect``,
        ``DescribeCluster`` and ``WriteDataIdempotently`` on the cluster; ``DescribeTopic`` and ``WriteData`` on the topic."""
        return (
            self.grant_connect(grantee)
            .combine(self._grant(grantee, ["kafka-cluster:WriteDataIdempotently"], [self.cluster_arn]))
            .combine(self._grant(grantee, ["kafka-cluster:DescribeTopic", "kafka-cluster:WriteData"], [self.topic_arn(topic)]))
        )

    def grant_consume(self, grantee: iam.IGrantable, topic: str, group: str) -> iam.Grant:
        """Read ``topic`` as consumer group ``group``, committing offsets: ``kafka-cluster:Connect`` and ``DescribeCluster``
        on the cluster; ``DescribeTopic`` and ``ReadData`` on the topic; ``AlterGroup`` and ``DescribeGroup`` on the group."""
        return (
            self.grant_connect(grantee)
            .combine(self._grant(grantee, ["kafka-cluster:DescribeTopic", "kafka-cluster:ReadData"], [self.topic_arn(topic)]))
            .combine(self._grant(grantee, ["kafka-cluster:AlterGroup", "kafka-cluster:DescribeGroup"], [self.group_arn(group)]))
        )

    def grant_bootstrap_brokers(self, grantee: iam.IGrantable) -> iam.Grant:
        """Look up the bootstrap broker string (``kafka:GetBootstrapBrokers``) and describe the cluster.

        The lookup goes through the network's MSK API interface endpoint (the dual-stack
        ``aws.api.<region>.kafka-api``; the older ``com.amazonaws.<region>.kafka`` takes no new
        connections), which this adds when missing. The client must use dual-stack endpoints
        (``AWS_USE_DUALSTACK_ENDPOINT=true``) for that endpoint's private DNS name to answer.
        """
        self.network.ensure_interface_endpoint(aws_api_service("kafka-api"), label="KafkaApi")
        return self._grant(grantee, ["kafka:DescribeClusterV2", "kafka:GetBootstrapBrokers"], [self.cluster_arn])

    def allow_client(self, peer: ec2.IConnectable, description: str = "Kafka client") -> None:
        """Let ``peer`` (a function's security group...) reach the brokers on 9098, and only there."""
        self.connections.allow_default_port_from(peer, f"{description}: Kafka over TLS with IAM auth")

    def allow_event_source_mappings(self) -> None:
        """Let Lambda's event source mappings reach the brokers. Idempotent; :class:`KafkaEventSource` calls it.

        The mappings' network interfaces share the cluster's security group: they
        reach the brokers through it on 9098, and Lambda, STS and the on-failure
        queue's SQS through the network's interface endpoints, which this adds
        when missing (see :meth:`PrivateNetwork.allow_event_source_mappings`).
        """
        self.network.allow_event_source_mappings(
            self.security_group, ec2.Port.tcp(IAM_TLS_PORT), "Kafka (IAM, TLS) within the cluster group", services=EVENT_SOURCE_ENDPOINTS
        )

    # --- metrics and alarms ----------------------------------------------------

    def metric(self, metric_name: str, **options) -> cloudwatch.Metric:
        """A cluster-level ``AWS/Kafka`` metric (``GlobalPartitionCount``...; provisioned only). Default: average over 5 minutes."""
        return msk_monitoring.cluster_metric(self.cluster_name, metric_name, **options)

    def metric_broker(self, broker_id: int, metric_name: str, **options) -> cloudwatch.Metric:
        """A per-broker metric (``BytesInPerSec``, ``KafkaDataLogsDiskUsed``...). Default: average over 5 minutes."""
        return msk_monitoring.broker_metric(self.cluster_name, broker_id, metric_name, **options)

    def metric_broker_cpu(self, broker_id: int, **options) -> cloudwatch.MathExpression:
        """CpuUser + CpuSystem of one broker. Default: over 5 minutes."""
        return msk_monitoring.broker_cpu(self.cluster_name, broker_id, **options)

    def metric_max_offset_lag(self, consumer_group: str, topic: str, **options) -> cloudwatch.Metric:
        """MaxOffsetLag of a consumer group on a topic. Default: maximum over 1 minute."""
        return msk_monitoring.consumer_group_metric(self.cluster_name, consumer_group, topic, "MaxOffsetLag", **options)

    def metric_estimated_max_time_lag(self, consumer_group: str, topic: str, **options) -> cloudwatch.Metric:
        """EstimatedMaxTimeLag (seconds) of a consumer group on a topic. Default: maximum over 1 minute."""
        return msk_monitoring.consumer_group_metric(self.cluster_name, consumer_group, topic, "EstimatedMaxTimeLag", **options)

    def add_lag_alarm(self, construct_id: str, consumer_group: str, topic: str, *, max_offset_lag: int = 10_000) -> cloudwatch.Alarm:
        """Alarm when ``consumer_group`` is ``max_offset_lag`` records or more behind on a partition for 5 minutes."""
        check_range("max_offset_lag", max_offset_lag, 1, 1e12)
        alarm = msk_monitoring.lag_alarm(
            self, construct_id, self.cluster_name, consumer_group, topic, max_offset_lag=max_offset_lag, alarm_topic=self._alarm_topic
        )
        self.alarms.append(alarm)
        return alarm

    def dashboard_widgets(self, title: str) -> list[cloudwatch.IWidget]:
        """A dashboard section (see :meth:`MonitoringDashboard.monitor`): broker CPU, disk and throughput (provisioned);
        bytes in and out per topic (serverless, which has no broker metrics)."""
        if self.broker_count:
            return msk_monitoring.broker_widgets(title, self.cluster_name, self.broker_ids)
        return msk_monitoring.serverless_widgets(title, self.cluster_name)


def _check_cluster_name(name: str) -> None:
    if Token.is_unresolved(name):
        return
    require(bool(_CLUSTER_NAME.fullmatch(name)), f"cluster_name must be {_CLUSTER_NAME_PATTERN}, got {name!r}")
