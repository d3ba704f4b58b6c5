"""Customer-managed KMS keys with only the service access that callers ask for."""

from __future__ import annotations

import enum
from collections.abc import Sequence

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

from .profile import Profile


class KeyUser(enum.Enum):
    """AWS services that may be let use a key through its key policy."""

    #: SNS sending to an encrypted SQS subscription or DLQ: kms:GenerateDataKey and kms:Decrypt.
    SNS = "sns"
    #: EventBridge encrypting a bus, its archive and rules, and delivering to
    #: encrypted queues and DLQs.
    EVENTBRIDGE = "events"
    #: EventBridge Scheduler encrypting schedules and sending to encrypted queues.
    SCHEDULER = "scheduler"
    #: EventBridge Pipes encrypting pipe data.
    PIPES = "pipes"
    #: CloudWatch alarms publishing to an encrypted SNS topic.
    CLOUDWATCH = "cloudwatch"
    #: CloudWatch Logs encrypting log groups in this account and region.
    LOGS = "logs"


#: What a service needs to send to an SQS queue encrypted with the key (SNS to a subscription or its DLQ), as the SQS
#: key-management page documents it for AWS services:
#: https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-key-management.html#compatibility-with-aws-services
SEND_KEY_ACTIONS = ("kms:GenerateDataKey", "kms:Decrypt")
#: What CloudWatch needs to publish alarm notifications to an encrypted topic, as CloudWatch documents it
#: (https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/AlarmThatSendsEmail.html).
_CLOUDWATCH_ACTIONS = ["kms:Decrypt", "kms:GenerateDataKey*"]
# What EventBridge documents for buses, archives (which re-encrypt), pipes and
# schedules; kms:DescribeKey, which it calls to check the key is symmetric,
# gets its own statement without conditions, as AWS documents it.
_EVENTBRIDGE_ACTIONS = ["kms:GenerateDataKey", "kms:Decrypt", "kms:ReEncryptFrom", "kms:ReEncryptTo"]
_LOGS_ACTIONS = [
    "kms:Encrypt",
    "kms:Decrypt",
    "kms:ReEncryptFrom",
    "kms:ReEncryptTo",
    "kms:GenerateDataKey",
    "kms:GenerateDataKeyWithoutPlaintext",
    "kms:DescribeKey",
]


class EncryptionKey(Construct):
    """A customer-managed KMS key with rotation on.

    Use one per stack (shared) or one per resource: every construct in this
    library takes ``encryption_key`` and creates its own key when none is given.

    :param users: services let use the key through the key policy, each
        limited to this account (and, for CloudWatch Logs, to log groups of
        this account and region). Default: none.
    :param alias: an alias for the key. Default: no alias.
    :param description: the key's description. Default: "Messaging blueprints data key".
    :param profile: decides the removal policy and pending window (sandbox:
        destroyed after 7 days; production: retained). Default: from context.

    Attributes: ``key`` (the ``kms.Key``).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        users: Sequence[KeyUser] = (),
        alias: str | None = None,
        description: str | None = None,
        profile: Profile | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        profile = profile or Profile.of(self)
        self.key = kms.Key(
            self,
            "Resource",
            enable_key_rotation=True,
            description=description or "Messaging blueprints data key",
            alias=alias,
            pending_window=profile.key_pending_window,
            removal_policy=profile.removal_policy,
        )
        for user in dict.fromkeys(users):
            allow_service(self.key, user)


def key_or_new(scope: Construct, encryption_key: EncryptionKey | kms.IKey | None, profile: Profile) -> kms.IKey:
    """``encryption_key`` (an :class:`EncryptionKey` or any ``kms.IKey``), or a new rotating key named ``Key`` under ``scope``, removed per the profile."""
    from ._interfaces import key_of

    encryption_key = key_of(encryption_key)
    if encryption_key is not None:
        return encryption_key
    return kms.Key(
        scope,
        "Key",
        enable_key_rotation=True,
        removal_policy=profile.removal_policy,
        pending_window=profile.key_pending_window,
    )


def allow_service(key: kms.IKey, user: KeyUser, *, source_arn: str | None = None) -> None:
    """Let ``user`` use ``key`` for this account only; no-op on imported keys.

    :param source_arn: further limit the service to one resource (``aws:SourceArn``).
    """
    stack = Stack.of(key)
    if user is KeyUser.LOGS:
        statement = iam.PolicyStatement(
            sid="AllowCloudWatchLogs",
            principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
            actions=_LOGS_ACTIONS,
            resources=["*"],
            conditions={
                "ArnLike": {
                    "kms:EncryptionContext:aws:logs:arn": stack.format_arn(
                        service="logs",
                        resource="log-group",
                        resource_name="*",
                        arn_format=ArnFormat.COLON_RESOURCE_NAME,
                    )
                }
            },
        )
    else:
        conditions: dict = {"StringEquals": {"aws:SourceAccount": stack.account}}
        if source_arn:
            conditions["ArnEquals"] = {"aws:SourceArn": source_arn}
        if user is KeyUser.CLOUDWATCH:
            # Kept as AWS documents it for alarm topics, without conditions, so
            # that no notification is lost to a condition key CloudWatch might
            # not send to KMS; the alarm topic's own policy limits who publishes.
            conditions = {}
        statement = iam.PolicyStatement(
            principals=[iam.ServicePrincipal(f"{user.value}.amazonaws.com")],
            actions=_EVENTBRIDGE_ACTIONS
            if user in (KeyUser.EVENTBRIDGE, KeyUser.SCHEDULER, KeyUser.PIPES)
            else _CLOUDWATCH_ACTIONS
            if user is KeyUser.CLOUDWATCH
            else list(SEND_KEY_ACTIONS),
            resources=["*"],
            conditions=conditions or None,
        )
    key.add_to_resource_policy(statement, allow_no_op=True)
    if user in (KeyUser.EVENTBRIDGE, KeyUser.SCHEDULER, KeyUser.PIPES):
        key.add_to_resource_policy(
            iam.PolicyStatement(principals=[iam.ServicePrincipal(f"{user.value}.amazonaws.com")], actions=["kms:DescribeKey"], resources=["*"]),
            allow_no_op=True,
        )
