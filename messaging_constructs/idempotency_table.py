"""IdempotencyTable: the DynamoDB table Powertools idempotency writes to."""

from __future__ import annotations

from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from constructs import Construct

from ._tables import grant_key_for_items, secure_table
from ._validation import check_threshold
from .encryption import key_or_new
from .monitoring import dynamodb as dynamodb_monitoring
from .monitoring._alarms import alarm_topic_for
from .profile import Profile


class IdempotencyTable(Construct):
    """A DynamoDB table shaped for Powertools idempotency (key ``id``, TTL ``expiration``).

    On-demand, encrypted with a CMK, point-in-time recovery on. In the
    production profile it also has deletion protection, is retained on delete
    and is in a daily backup plan (35-day retention) whose vault uses the same key.

    :param encryption_key: Default: a new key with rotation.
    :param throttles_alarm_threshold: throttled requests (reads + writes) in 5 minutes that raise the alarm. Default: 1 (any).
    :param system_errors_alarm_threshold: system errors in 5 minutes that raise the alarm. Default: 1 (any).
    :param alarm_topic: where the throttle and system-error alarms notify. Default: no action (synth warns that nobody is notified).
    :param profile: Default: from context.

    Attributes: ``table``, ``key``, ``backup_plan`` (or None), ``alarms``.
    """

    monitoring_label = "table"

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
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
        self.key: kms.IKey = key_or_new(self, encryption_key, self.profile)
        self.table, self.backup_plan = secure_table(
            self,
            "Resource",
            partition_key=dynamodb.Attribute(name="id", type=dynamodb.AttributeType.STRING),
            time_to_live_attribute="expiration",
            key=self.key,
            profile=self.profile,
        )
        self.alarms: list[cloudwatch.Alarm] = dynamodb_monitoring.alarms(
            self, self.table, alarm_topic, throttles_threshold=throttles_alarm_threshold, system_errors_threshold=system_errors_alarm_threshold
        )

    def grant_idempotency(self, grantee: iam.IGrantable) -> iam.Grant:
        """What Powertools idempotency needs: dynamodb:GetItem, PutItem, UpdateItem, DeleteItem; kms:Decrypt, Encrypt, GenerateDataKey."""
        grant = self.table.grant(grantee, "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem")
        return grant.combine(grant_key_for_items(self.key, grantee))

    def metric_throttled_requests(self) -> cloudwatch.IMetric:
        """Throttled item requests. Default: sum over 5 minutes."""
        return dynamodb_monitoring.throttled_requests(self.table)

    def dashboard_widgets(self, title: str) -> list[cloudwatch.IWidget]:
        return dynamodb_monitoring.widgets(title, self.table)
