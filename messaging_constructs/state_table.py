"""StateTable: a DynamoDB table for the state a consumer keeps (aggregates, latest status...)."""

from __future__ import annotations

from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from constructs import Construct

from ._tables import grant_key_for_items, secure_table
from ._validation import check_threshold, require
from .encryption import key_or_new
from .monitoring import dynamodb as dynamodb_monitoring
from .monitoring._alarms import alarm_topic_for
from .profile import Profile

#: Item actions a grant may name; table-level and wildcard actions are never granted.
ITEM_ACTIONS = frozenset(
    {
        "dynamodb:GetItem",
        "dynamodb:BatchGetItem",
        "dynamodb:Query",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "dynamodb:BatchWriteItem",
        "dynamodb:ConditionCheckItem",
    }
)


class StateTable(Construct):
    """An on-demand DynamoDB table keyed by one string attribute (and an optional string sort key).

    Encrypted with a CMK, point-in-time recovery on; in the production profile
    also deletion protection, retained on delete and a daily backup plan
    (35 days) whose vault uses the same key. Alarms on throttles and system errors.

    :param partition_key: the partition key's name (a string attribute). Required.
    :param sort_key: a string sort key's name. Default: none.
    :param time_to_live_attribute: the numeric attribute (epoch seconds) after which DynamoDB deletes an item. Default: none (no TTL).
    :param encryption_key: Default: a new key with rotation.
    :param throttles_alarm_threshold: throttled requests (reads + writes) in 5 minutes that raise the alarm. Default: 1 (any).
    :param system_errors_alarm_threshold: system errors in 5 minutes that raise the alarm. Default: 1 (any).
    :param alarm_topic: Default: no action (synth warns that nobody is notified).
    :param profile: Default: from context.

    Attributes: ``table``, ``key``, ``backup_plan`` (or None), ``alarms``.
    """

    monitoring_label = "table"

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        partition_key: str,
        sort_key: str | None = None,
        time_to_live_attribute: str | None = None,
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
            partition_key=dynamodb.Attribute(name=partition_key, type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=sort_key, type=dynamodb.AttributeType.STRING) if sort_key else None,
            time_to_live_attribute=time_to_live_attribute,
            key=self.key,
            profile=self.profile,
        )
        self.alarms: list[cloudwatch.Alarm] = dynamodb_monitoring.alarms(
            self, self.table, alarm_topic, throttles_threshold=throttles_alarm_threshold, system_errors_threshold=system_errors_alarm_threshold
        )

    def grant_items(self, grantee: iam.IGrantable, *actions: str) -> iam.Grant:
        """The item ``actions`` named (e.g. ``dynamodb:UpdateItem``) on this table, with the key actions items need."""
        require(bool(actions), "name at least one item action")
        unknown = sorted(set(actions) - ITEM_ACTIONS)
        require(not unknown, f"only item actions may be granted ({', '.join(sorted(ITEM_ACTIONS))}), got {', '.join(unknown)}")
        # The table's ARN alone: Table.grant would add "<table>/index/*" once the table has an index (grant_index_query names one).
        grant = iam.Grant.add_to_principal(grantee=grantee, actions=list(actions), resource_arns=[self.table.table_arn])
        return grant.combine(grant_key_for_items(self.key, grantee))

    def grant_index_query(self, grantee: iam.IGrantable, index_name: str) -> iam.Grant:
        """``dynamodb:Query`` on the index ``index_name`` of this table (its ARN alone), with the key's ``kms:Decrypt``."""
        index = f"{self.table.table_arn}/index/{index_name}"
        return iam.Grant.add_to_principal(grantee=grantee, actions=["dynamodb:Query"], resource_arns=[index]).combine(self.key.grant(grantee, "kms:Decrypt"))

    def dashboard_widgets(self, title: str) -> list[cloudwatch.IWidget]:
        return dynamodb_monitoring.widgets(title, self.table)
