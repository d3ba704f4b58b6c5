"""LakeDelivery: Amazon Data Firehose from an EventStream into IcebergLake tables, through a transformation function."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesisfirehose as firehose
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from constructs import Construct

from . import acknowledgements as ack
from ._iam import ManagedPolicyRole
from ._interfaces import function_of
from ._validation import check_duration_range, check_range, require
from .event_stream import EventStream
from .iceberg_lake import IcebergLake
from .monitoring._alarms import alarm_topic_for, make_alarm

if TYPE_CHECKING:
    from ._interfaces import FunctionLike

NAMESPACE = "AWS/Firehose"
ERRORS_PREFIX = "delivery-errors/"
PERIOD = Duration.minutes(5)

DEFAULT_BUFFER_INTERVAL = Duration.seconds(60)
DEFAULT_TRANSFORM_BUFFER_INTERVAL = Duration.seconds(10)
DEFAULT_RETRY_DURATION = Duration.hours(1)
DEFAULT_FRESHNESS_TARGET = Duration.minutes(5)
DEFAULT_ERRORS_EXPIRY = Duration.days(30)


class LakeDelivery(Construct):
    """Every record of ``stream`` into the ``lake``'s Iceberg tables within a freshness target.

    An Amazon Data Firehose stream with the Kinesis stream as its source and
    the Apache Iceberg destination (the lake's Glue catalog): it reads the
    stream, hands buffers of records to ``transform`` (a Firehose data
    transformation function, which answers each record with a row and the
    table it goes to, ``otfMetadata``), and commits the rows to the tables as
    Parquet. Nothing is dropped on a failure:

    - a transformation that fails is retried 3 times, then its records are
      written as they came to ``delivery-errors/processing-failed/`` in the
      lake bucket (with the error), like rows a table refused
      (``delivery-errors/<table>/``) once Firehose's retries (``retry_duration``)
      ran out; that prefix expires after ``errors_expiry``;
    - alarms on rows not delivered (``DeliveryToIceberg.FailedRowCount``), on
      freshness (the age of the oldest record not yet in a table,
      ``DeliveryToIceberg.DataFreshness``, plus how far Firehose is behind the
      stream, ``KinesisMillisBehindLatest``) at or above ``freshness_target``,
      and on reads the stream throttled.

    Freshness, from a record's arrival in the stream to its row being
    queryable, is at most about ``buffer_interval`` (Firehose's buffer) plus
    the transformation's buffer (``transform_buffer_interval``) plus the
    commit; the defaults (60 s and 10 s) meet a 5-minute target with room for
    retries. Encryption: the stream and the bucket are encrypted with their
    CMKs (Firehose takes no key of its own with a Kinesis source); the role
    may read exactly that stream, invoke exactly that function and write
    exactly those tables.

    :param stream: the source. Required.
    :param lake: where the rows go. Required.
    :param tables: the tables the transformation may route to (the first is the default). Required.
    :param transform: the transformation function. Required.
    :param buffer_interval: 0 to 900 s. Default: 60 s.
    :param buffer_size_mb: 1 to 128. Default: 64.
    :param transform_buffer_interval: 0 to 900 s. Default: 10 s.
    :param transform_buffer_size_mb: 0.2 to 3. Default: 1.
    :param retry_duration: how long Firehose retries a table that refuses rows, 0 to 2 hours. Default: 1 hour.
    :param freshness_target: the freshness that alarms (for 2 periods of 5 minutes). Default: 5 minutes.
    :param errors_expiry: Default: 30 days.
    :param alarm_topic: Default: no action.

    Attributes: ``delivery_stream`` (``firehose.CfnDeliveryStream``), ``delivery_stream_name``, ``role``,
    ``log_group``, ``alarms``.
    """

    monitoring_label = "lake delivery"

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        stream: EventStream,
        lake: IcebergLake,
        tables: Sequence[str],
        transform: FunctionLike,
        buffer_interval: Duration = DEFAULT_BUFFER_INTERVAL,
        buffer_size_mb: int = 64,
        transform_buffer_interval: Duration = DEFAULT_TRANSFORM_BUFFER_INTERVAL,
        transform_buffer_size_mb: float = 1,
        retry_duration: Duration = DEFAULT_RETRY_DURATION,
        freshness_target: Duration = DEFAULT_FRESHNESS_TARGET,
        errors_expiry: Duration = DEFAULT_ERRORS_EXPIRY,
        alarm_topic: sns.ITopic | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        alarm_topic = alarm_topic_for(self, alarm_topic)
        require(bool(tables) and set(tables) <= set(lake.tables), f"tables must be tables of the lake ({', '.join(lake.tables)}), got {list(tables)}")
        check_duration_range("buffer_interval", buffer_interval, Duration.seconds(0), Duration.seconds(900))
        check_range("buffer_size_mb", buffer_size_mb, 1, 128, "MB")
        check_duration_range("transform_buffer_interval", transform_buffer_interval, Duration.seconds(0), Duration.seconds(900))
        check_range("transform_buffer_size_mb", transform_buffer_size_mb, 0.2, 3, "MB")
        check_duration_range("retry_duration", retry_duration, Duration.seconds(0), Duration.hours(2))
        check_duration_range("freshness_target", freshness_target, Duration.minutes(1), Duration.days(1))
        stack = Stack.of(self)
        function = function_of(transform)
        profile = lake.profile

        self.role = ManagedPolicyRole(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("firehose.amazonaws.com", conditions={"StringEquals": {"sts:ExternalId": stack.account}}),
            description=f"Firehose {self.node.path}: stream to lake",
        )
        stream.grant_read(self.role)
        lake.grant_write_rows(self.role, tables=tables)
        self.role.add_to_principal_policy(
            iam.PolicyStatement(actions=["s3:PutObject", "s3:AbortMultipartUpload"], resources=[lake.bucket.arn_for_objects(f"{ERRORS_PREFIX}*")])
        )
        self.role.add_to_principal_policy(
            iam.PolicyStatement(actions=["lambda:InvokeFunction", "lambda:GetFunctionConfiguration"], resources=[function.function_arn])
        )
        lake.add_expiry(ERRORS_PREFIX, errors_expiry)
        self.log_group = logs.LogGroup(self, "Logs", encryption_key=lake.key, retention=profile.log_retention, removal_policy=profile.removal_policy)
        log_stream = logs.LogStream(self, "DeliveryLogs", log_group=self.log_group, removal_policy=profile.removal_policy)
        self.role.add_to_principal_policy(iam.PolicyStatement(actions=["logs:PutLogEvents"], resources=[f"{self.log_group.log_group_arn}"]))

        def parameter(name: str, value: str) -> firehose.CfnDeliveryStream.ProcessorParameterProperty:
            return firehose.CfnDeliveryStream.ProcessorParameterProperty(parameter_name=name, parameter_value=value)

        self.delivery_stream = firehose.CfnDeliveryStream(
            self,
            "Resource",
            delivery_stream_type="KinesisStreamAsSource",
            kinesis_stream_source_configuration=firehose.CfnDeliveryStream.KinesisStreamSourceConfigurationProperty(
                kinesis_stream_arn=stream.stream_arn, role_arn=self.role.role_arn
            ),
            iceberg_destination_configuration=firehose.CfnDeliveryStream.IcebergDestinationConfigurationProperty(
                catalog_configuration=firehose.CfnDeliveryStream.CatalogConfigurationProperty(catalog_arn=lake.catalog_arn),
                role_arn=self.role.role_arn,
                append_only=True,
                buffering_hints=firehose.CfnDeliveryStream.BufferingHintsProperty(
                    interval_in_seconds=int(buffer_interval.to_seconds()), size_in_m_bs=buffer_size_mb
                ),
                destination_table_configuration_list=[
                    firehose.CfnDeliveryStream.DestinationTableConfigurationProperty(
                        destination_database_name=lake.database_name, destination_table_name=table, s3_error_output_prefix=f"{ERRORS_PREFIX}{table}/"
                    )
                    for table in tables
                ],
                processing_configuration=firehose.CfnDeliveryStream.ProcessingConfigurationProperty(
                    enabled=True,
                    processors=[
                        firehose.CfnDeliveryStream.ProcessorProperty(
                            type="Lambda",
                            parameters=[
                                parameter("LambdaArn", function.function_arn),
                                parameter("NumberOfRetries", "3"),
                                parameter("BufferIntervalInSeconds", str(int(transform_buffer_interval.to_seconds()))),
                                parameter("BufferSizeInMBs", f"{transform_buffer_size_mb:g}"),
                            ],
                        )
                    ],
                ),
                retry_options=firehose.CfnDeliveryStream.RetryOptionsProperty(duration_in_seconds=int(retry_duration.to_seconds())),
                s3_backup_mode="FailedDataOnly",
                s3_configuration=firehose.CfnDeliveryStream.S3DestinationConfigurationProperty(
                    bucket_arn=lake.bucket.bucket_arn,
                    role_arn=self.role.role_arn,
                    error_output_prefix=ERRORS_PREFIX,
                    prefix=f"{ERRORS_PREFIX}backup/",
                    encryption_configuration=firehose.CfnDeliveryStream.EncryptionConfigurationProperty(
                        kms_encryption_config=firehose.CfnDeliveryStream.KMSEncryptionConfigProperty(awskms_key_arn=lake.key.key_arn)
                    ),
                    buffering_hints=firehose.CfnDeliveryStream.BufferingHintsProperty(interval_in_seconds=300, size_in_m_bs=5),
                    compression_format="GZIP",
                ),
                cloud_watch_logging_options=firehose.CfnDeliveryStream.CloudWatchLoggingOptionsProperty(
                    enabled=True, log_group_name=self.log_group.log_group_name, log_stream_name=log_stream.log_stream_name
                ),
            ),
        )
        ack.aws_solutions_kdf1(self.delivery_stream)
        ack.aws_solutions_iam5_object_keys(self.role.policy, [lake.bucket.arn_for_objects(f"{ERRORS_PREFIX}*")])
        # Firehose checks its role (the stream, the tables) when it is created: the policy and the tables first.
        self.delivery_stream.node.add_dependency(self.role.policy, *(lake.tables[t] for t in tables))
        self.delivery_stream_name = self.delivery_stream.ref
        self.freshness_target = freshness_target
        self.alarms: list[cloudwatch.Alarm] = [
            make_alarm(
                self,
                "FailedRowsAlarm",
                metric=self.metric("DeliveryToIceberg.FailedRowCount"),
                threshold=1,
                alarm_topic=alarm_topic,
                description=f"Firehose {self.node.path}: rows a table refused after the retries, now under {ERRORS_PREFIX} in the lake bucket.",
            ),
            make_alarm(
                self,
                "FreshnessAlarm",
                metric=self.metric_freshness(),
                threshold=freshness_target.to_seconds(),
                evaluation_periods=2,
                alarm_topic=alarm_topic,
                description=(
                    f"Firehose {self.node.path}: records reach the tables {freshness_target.to_seconds():g} s or more after they reached the stream "
                    "(the oldest undelivered record's age plus how far Firehose is behind the stream)."
                ),
            ),
            make_alarm(
                self,
                "ThrottledReadsAlarm",
                metric=self.metric("ThrottledGetRecords"),
                threshold=1,
                evaluation_periods=3,
                alarm_topic=alarm_topic,
                description=f"Firehose {self.node.path}: the stream throttled its reads for 15 minutes; other readers share the shards' 2 MB/s.",
            ),
        ]

    def metric(self, metric_name: str, **options) -> cloudwatch.Metric:
        """A metric of this delivery stream (``AWS/Firehose``, dimension ``DeliveryStreamName``). Default: sum over 5 minutes."""
        return cloudwatch.Metric(
            namespace=NAMESPACE,
            metric_name=metric_name,
            dimensions_map={"DeliveryStreamName": self.delivery_stream_name},
            **{"statistic": "Sum", "period": PERIOD, **options},
        )

    def metric_freshness(self) -> cloudwatch.MathExpression:
        """Seconds from a record's arrival in the stream to its row in a table, at worst: the oldest undelivered record's
        age, plus how far Firehose's reads are behind the stream."""
        return cloudwatch.MathExpression(
            expression="FILL(freshness, 0) + FILL(behind, 0) / 1000",
            using_metrics={
                "freshness": self.metric("DeliveryToIceberg.DataFreshness", statistic="Maximum"),
                "behind": self.metric("KinesisMillisBehindLatest", statistic="Maximum"),
            },
            label="stream to table (s)",
            period=PERIOD,
        )

    def dashboard_widgets(self, title: str) -> list[cloudwatch.IWidget]:
        return [
            cloudwatch.GraphWidget(
                title=f"{title}: rows delivered and failed",
                left=[self.metric("DeliveryToIceberg.SuccessfulRowCount"), self.metric("DeliveryToIceberg.FailedRowCount")],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title=f"{title}: freshness (s)",
                left=[self.metric_freshness()],
                left_annotations=[cloudwatch.HorizontalAnnotation(value=self.freshness_target.to_seconds(), label="target")],
                width=12,
            ),
        ]
