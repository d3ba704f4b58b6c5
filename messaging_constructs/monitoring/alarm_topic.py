"""The SNS topic that every alarm of a stack notifies."""

from __future__ import annotations

from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from constructs import Construct

from ..encryption import KeyUser, allow_service


class AlarmTopic(Construct):
    """An encrypted, TLS-only SNS topic for alarm notifications.

    The key policy lets CloudWatch use the key (alarms cannot publish to an
    encrypted topic otherwise). Subscribe people or paging tools to ``topic``
    after deploy.

    :param encryption_key: the topic's key; must be a key of this stack for the
        CloudWatch statement to be added. Required.

    Attributes: ``topic``.
    """

    def __init__(self, scope: Construct, construct_id: str, *, encryption_key: kms.IKey) -> None:
        super().__init__(scope, construct_id)
        allow_service(encryption_key, KeyUser.CLOUDWATCH)
        self.topic = sns.Topic(self, "Resource", master_key=encryption_key, enforce_ssl=True, display_name="Alarms")
