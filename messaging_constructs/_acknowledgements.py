"""Compliance acknowledgements: every accepted cdk-nag finding, in one place.

Each acknowledgement names one exact finding id (rule and, for multi-finding
rules, the action or resource), the construct it applies to, and the reason.
They fall in four kinds only:

- ``RULE_DEFECT``: the rule misjudges a correct configuration;
- ``AWS_REQUIRED``: a wildcard that AWS itself requires;
- ``SANDBOX_COST``: a cost or teardown choice of the sandbox profile only;
- ``NOT_OFFERED``: the control the rule asks for does not exist for the service.

Each acknowledgement is also recorded as construct metadata so that the
compliance report can list it with its reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_cdk import Acknowledgment, Stack, Validations
from constructs import IConstruct

if TYPE_CHECKING:
    from aws_cdk import aws_sns as sns

ACKNOWLEDGEMENT_METADATA = "messaging-blueprints:acknowledgement"
#: Context key; ``false`` records acknowledgements without applying them, to
#: show what each one hides (used by the tests).
ACKNOWLEDGE_CONTEXT_KEY = "messaging-blueprints:acknowledge"

RULE_DEFECT = "rule defect"
AWS_REQUIRED = "wildcard AWS requires"
SANDBOX_COST = "sandbox cost choice"
NOT_OFFERED = "not offered by AWS"


def acknowledge(scope: IConstruct, finding_id: str, kind: str, reason: str) -> None:
    """Acknowledge one finding on ``scope`` (and its children) with a reason."""
    if scope.node.try_get_context(ACKNOWLEDGE_CONTEXT_KEY) is not False:
        Validations.of(scope).acknowledge(Acknowledgment(id=finding_id, reason=f"{kind}: {reason}"))
    scope.node.add_metadata(ACKNOWLEDGEMENT_METADATA, {"id": finding_id, "kind": kind, "reason": reason})


# --- SQS -----------------------------------------------------------------


def terminal_queue(queue: IConstruct) -> None:
    """A dead-letter destination has no dead-letter queue of its own."""
    acknowledge(
        queue,
        "Serverless-SQSRedrivePolicy",
        RULE_DEFECT,
        "this queue is itself a dead-letter destination; giving it a redrive policy would only move failures one queue further. It alarms on any message.",
    )


def dead_letter_destination(queue: IConstruct, role: str) -> None:
    """A DLQ that no queue's redrive policy names is not seen as a DLQ by the rule.

    :param role: what the queue is, e.g. "dead-letter queue of an SNS subscription".
    """
    acknowledge(
        queue,
        "AwsSolutions-SQS3",
        RULE_DEFECT,
        f"this queue is the {role}; the rule recognises only DLQs named by a queue's redrive policy or a function's dead-letter config.",
    )


# --- Lambda ----------------------------------------------------------------


def xray_wildcard(policy: IConstruct) -> None:
    acknowledge(
        policy,
        "AwsSolutions-IAM5[Resource::*]",
        AWS_REQUIRED,
        "xray:PutTraceSegments and xray:PutTelemetryRecords (and, in a VPC or for a Kafka event source mapping, the ec2 network-interface "
        "and VPC describe actions) support no resource-level permissions.",
    )


def sqs_event_source_destination(function: IConstruct) -> None:
    acknowledge(
        function,
        "Serverless-LambdaEventSourceMappingDestination",
        RULE_DEFECT,
        "SQS event source mappings accept no on-failure destination; failed messages reach the source queue's dead-letter queue through its redrive policy.",
    )


def mq_event_source_destination(mapping: IConstruct) -> None:
    acknowledge(
        mapping,
        "Serverless-LambdaEventSourceMappingDestination",
        RULE_DEFECT,
        "Amazon MQ event source mappings accept no on-failure destination; the broker redelivers a failed batch and then "
        "dead-letters it to a queue on the broker, which alarms.",
    )


def function_outside_vpc(function: IConstruct) -> None:
    for pack in ("HIPAA.Security", "NIST.800.53.R5", "PCI.DSS.321"):
        acknowledge(
            function,
            f"{pack}-LambdaInsideVPC",
            SANDBOX_COST,
            "sandbox functions run outside a VPC so that an idle sandbox pays for no interface endpoints; the production profile runs them in private subnets.",
        )


def function_without_reserved_concurrency(function: IConstruct) -> None:
    for pack in ("HIPAA.Security", "NIST.800.53.R5"):
        acknowledge(
            function,
            f"{pack}-LambdaConcurrency",
            SANDBOX_COST,
            "new accounts have a concurrency quota of 10, below which no concurrency can be reserved, so the sandbox reserves none; production reserves it.",
        )


# --- DynamoDB ----------------------------------------------------------------


def table_without_backup_plan(table: IConstruct) -> None:
    for pack in ("HIPAA.Security", "NIST.800.53.R5"):
        acknowledge(
            table,
            f"{pack}-DynamoDBInBackupPlan",
            SANDBOX_COST,
            "a backup vault holding recovery points cannot be deleted, so "
            "`cdk destroy` would leave it behind; the sandbox relies on point-in-time "
            "recovery, production adds a daily backup plan.",
        )


def async_dead_letter_queue(function: IConstruct) -> None:
    acknowledge(
        function,
        "Serverless-LambdaAsyncFailureDestination",
        RULE_DEFECT,
        "failed asynchronous events go to a dead-letter queue, which the HIPAA "
        "and NIST packs require; an on-failure destination on the same queue "
        "would deliver every failure twice. The packs conflict; the DLQ is kept.",
    )


# --- SNS -------------------------------------------------------------------


def delivery_log_streams(policy: IConstruct, topic: "sns.Topic") -> None:
    """The delivery-status role writes log streams it cannot name in advance."""
    logical_id = Stack.of(topic).get_logical_id(topic.node.default_child)
    base = f"arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:sns/<AWS::Region>/<AWS::AccountId>/<{logical_id}.TopicName>"
    for group in (base, f"{base}/Failure"):
        acknowledge(
            policy,
            f"AwsSolutions-IAM5[Resource::{group}:*]",
            AWS_REQUIRED,
            "SNS names the log streams of its delivery-status log group itself; the policy is limited to this topic's two log groups.",
        )


def log_group_arn_suffix(policy: IConstruct, log_group_arns: "list[str]") -> None:
    """A log group's ``:*`` ARN, which CloudWatch Logs checks some log-group actions against, names one group only."""
    stack = Stack.of(policy)
    for arn in log_group_arns:
        acknowledge(
            policy,
            f"AwsSolutions-IAM5[Resource::{_as_nag_renders(stack, arn)}:*]",
            AWS_REQUIRED,
            "CloudWatch Logs checks some log-group actions against the group's ARN with ':*' appended; the wildcard stands for that "
            "suffix only, on log groups named one by one.",
        )


def _as_nag_renders(stack: Stack, value: str) -> str:
    """A string with tokens as cdk-nag writes it in a finding id: ``<LogicalId>`` for a Ref, ``<LogicalId.Attribute>`` for a GetAtt."""
    resolved = stack.resolve(value)
    parts = resolved["Fn::Join"][1] if isinstance(resolved, dict) and "Fn::Join" in resolved else [resolved]
    rendered = []
    for part in parts:
        if isinstance(part, str):
            rendered.append(part)
        elif "Ref" in part:
            rendered.append(f"<{part['Ref']}>")
        else:
            logical_id, attribute = part["Fn::GetAtt"]
            rendered.append(f"<{logical_id}.{attribute}>")
    return "".join(rendered)


def backup_service_role(selection: IConstruct) -> None:
    acknowledge(
        selection,
        "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSBackupServiceRolePolicyForBackup]",
        AWS_REQUIRED,
        "AWS Backup's own service-role policy, which AWS maintains as the services it backs up change; the role can be assumed by AWS Backup only.",
    )


# --- Amazon MQ --------------------------------------------------------------


def broker_secrets_without_rotation(secrets) -> None:
    """Amazon MQ has no rotation integration with Secrets Manager."""
    for secret in secrets:
        for finding_id in ("AwsSolutions-SMG4", "HIPAA.Security-SecretsManagerRotationEnabled", "NIST.800.53.R5-SecretsManagerRotationEnabled"):
            acknowledge(
                secret,
                finding_id,
                NOT_OFFERED,
                "Amazon MQ offers no rotation for broker users; a password changes on the broker (MQ UpdateUser for ActiveMQ, applied at the "
                "next reboot; the management API for RabbitMQ) and then in this secret, as docs/exercise-05.md describes.",
            )
