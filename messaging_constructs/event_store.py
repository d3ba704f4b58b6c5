"""EventStore: a DynamoDB table of events keyed on aggregate id and version, with a stream for projections."""

from __future__ import annotations

from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from constructs import Construct

from ._tables import grant_key_for_items, secure_table
from ._validation import check_range, check_threshold
from .encryption import key_or_new
from .monitoring import dynamodb as dynamodb_monitoring
from .monitoring._alarms import alarm_topic_for
from .profile import Profile

#: Partition and sort key names of the store.
AGGREGATE_ID = "aggregate_id"
VERSION = "version"


class EventStore(Construct):
    """An append-only event store for event-sourced aggregates.

    Partition key ``aggregate_id`` (string), sort key ``version`` (number):
    a writer appends version N with the condition that it does not exist, so
    two writers cannot both win the same version (optimistic concurrency).
    Snapshots can live in the same table under their own partition key
    (e.g. ``<id>#snapshot``). On demand, encrypted with a CMK, point-in-time
    recovery on; a stream with new images for projections. Production adds
    deletion protection, retention and a daily backup plan.

    :param stream_view: what the stream carries. Default: new images (what
        projections need; the store never updates items).
    :param conflict_alarm_threshold: lost version races in 5 minutes that raise
        the alarms added with :meth:`add_conflict_alarm`. Default: 10.
    :param encryption_key: Default: a new key with rotation.
    :param throttles_alarm_threshold: throttled requests (reads + writes) in 5 minutes that raise the alarm. Default: 1 (any).
    :param system_errors_alarm_threshold: system errors in 5 minutes that raise the alarm. Default: 1 (any).
    :param alarm_topic: Default: no action (synth warns that nobody is notified).
    :param profile: Default: from context.

    Attributes: ``table``, ``key``, ``backup_plan`` (or None), ``alarms``.
    """

    monitoring_label = "event store"

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        stream_view: dynamodb.StreamViewType = dynamodb.StreamViewType.NEW_IMAGE,
        conflict_alarm_threshold: int = 10,
        encryption_key: kms.IKey | None = None,
        throttles_alarm_threshold: int = 1,
        system_errors_alarm_threshold: int = 1,
        alarm_topic: sns.ITopic | None = None,
        profile: Profile | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        alarm_topic = alarm_topic_for(self, alarm_topic)
        self.profile = profile or Profile.of(self)
        check_threshold("throttles_alarm_threshold", throttles_alarm_threshold, 1)
        check_threshold("system_errors_alarm_threshold", system_errors_alarm_threshold, 1)
        check_range("conflict_alarm_threshold", conflict_alarm_threshold, 1, 1_000_000)
        self.key: kms.IKey = key_or_new(self, encryption_key, self.profile)
        self.table, self.backup_plan = secure_table(
            self,
            "Resource",
            partition_key=dynamodb.Attribute(name=AGGREGATE_ID, type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=VERSION, type=dynamodb.AttributeType.NUMBER),
            stream=stream_view,
            key=self.key,
            profile=self.profile,
        )
        self._alarm_topic, self._conflict_alarm_threshold = alarm_topic, conflict_alarm_threshold
        self.alarms: list[cloudwatch.Alarm] = dynamodb_monitoring.alarms(
            self, self.table, alarm_topic, throttles_threshold=throttles_alarm_threshold, system_errors_threshold=system_errors_alarm_threshold
        )

    def add_conflict_alarm(self, construct_id: str, metric: cloudwatch.IMetric) -> cloudwatch.Alarm:
        """Alarm on a writer's count of lost version races (sum over 5 minutes >= ``conflict_alarm_threshold``).

        DynamoDB's ConditionalCheckFailedRequests does not count conditions
        that fail inside TransactWriteItems, so the alarm watches the metric
        the appender emits, e.g. ``HandlerFunction.metric("ConcurrencyConflicts")``.
        """
        alarm = dynamodb_monitoring.conflict_alarm(self, construct_id, metric, self._conflict_alarm_threshold, self._alarm_topic)
        self.alarms.append(alarm)
        return alarm

    def grant_append(self, grantee: iam.IGrantable) -> iam.Grant:
        """Append events and snapshots: dynamodb:PutItem and ConditionCheckItem (conditional puts, alone or
        in TransactWriteItems), and the key's kms:Decrypt, Encrypt, GenerateDataKey. No update, no delete."""
        grant = self.table.grant(grantee, "dynamodb:PutItem", "dynamodb:ConditionCheckItem")
        return grant.combine(grant_key_for_items(self.key, grantee))

    def grant_read(self, grantee: iam.IGrantable) -> iam.Grant:
        """Load aggregates: dynamodb:GetItem and Query, and the key's kms:Decrypt."""
        grant = self.table.grant(grantee, "dynamodb:GetItem", "dynamodb:Query")
        return grant.combine(self.key.grant(grantee, "kms:Decrypt"))

    def grant_scan(self, grantee: iam.IGrantable) -> iam.Grant:
        """Read the whole store (rebuild tools): dynamodb:Scan, and the key's kms:Decrypt."""
        grant = self.table.grant(grantee, "dynamodb:Scan")
        return grant.combine(self.key.grant(grantee, "kms:Decrypt"))

    def metric_conditional_check_failed_requests(self, **options) -> cloudwatch.Metric:
        """Failed conditions of single-item writes (transactions are not counted). Default: sum over 5 minutes."""
        return dynamodb_monitoring.conditional_check_failures(self.table, **options)

    def dashboard_widgets(self, title: str) -> list[cloudwatch.IWidget]:
        return dynamodb_monitoring.widgets(title, self.table) + [
            cloudwatch.GraphWidget(title=f"{title}: conflicts", left=[self.metric_conditional_check_failed_requests()], width=24)
        ]
