"""The SNS topic that every alarm of a stack notifies."""

from __future__ import annotations

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from constructs import Construct

from ..encryption import KeyUser, allow_service


class AlarmTopic(Construct):
    """An encrypted, TLS-only SNS topic for alarm notifications.

    The topic policy lets CloudWatch publish, only for alarms of this account
    and region (a topic policy that enforces TLS replaces the default policy,
    so without this statement alarm notifications would be refused), and the
    key policy lets CloudWatch use the key. Subscribe people or paging tools
    to ``topic`` after deploy.

    :param encryption_key: the topic's key; must be a key of this stack for the
        CloudWatch statement to be added. Required.

    Attributes: ``topic``.
    """

    def __init__(self, scope: Construct, construct_id: str, *, encryption_key: kms.IKey) -> None:
        super().__init__(scope, construct_id)
        allow_service(encryption_key, KeyUser.CLOUDWATCH)
        self.topic = sns.Topic(self, "Resource", master_key=encryption_key, enforce_ssl=True, display_name="Alarms")
        stack = Stack.of(self)
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchAlarmsOfThisAccount",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions={
                    "StringEquals": {"aws:SourceAccount": stack.account},
                    "ArnLike": {
                        "aws:SourceArn": stack.format_arn(service="cloudwatch", resource="alarm", resource_name="*", arn_format=ArnFormat.COLON_RESOURCE_NAME)
                    },
                },
            )
        )
