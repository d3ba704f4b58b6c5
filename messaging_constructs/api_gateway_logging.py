"""The account's API Gateway CloudWatch Logs role, which access and execution logging of REST and WebSocket stages need."""

from __future__ import annotations

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from . import acknowledgements as ack
from ._iam import ManagedPolicyRole
from .profile import Profile

_ID = "ApiGatewayCloudWatchLogging"
#: What API Gateway does with the role: make the execution log groups it names itself, write those and the access logs.
LOG_ACTIONS = (
    "logs:CreateLogGroup",
    "logs:CreateLogStream",
    "logs:DescribeLogGroups",
    "logs:DescribeLogStreams",
    "logs:PutLogEvents",
    "logs:GetLogEvents",
    "logs:FilterLogEvents",
)


def cloud_watch_logging(scope: Construct) -> apigateway.CfnAccount:
    """The stack's ``AWS::ApiGateway::Account`` and its role, made once per stack; a stage that logs depends on it.

    API Gateway writes a stage's access logs and execution logs to CloudWatch Logs only with the role set in the
    account's API Gateway settings for the region ("CloudWatch Logs role ARN must be set in account settings to
    enable logging" otherwise; set-up-logging in the API Gateway guide). The setting is one per account and region,
    shared by every API there: both the setting and the role are retained when the stack is deleted, so that no
    other API loses its logs. It is the one thing a sandbox ``cdk destroy`` leaves, by design (README, "Teardown").
    A later stack that sets it again points it at its own role, with the same permissions.
    """
    stack = Stack.of(scope)
    existing = stack.node.try_find_child(_ID)
    if existing is not None:
        return existing.node.default_child  # type: ignore[return-value]
    holder = Construct(stack, _ID)
    role = ManagedPolicyRole(
        holder,
        "Role",
        assumed_by=iam.ServicePrincipal("apigateway.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": stack.account}}),
        description="Lets API Gateway write the access and execution logs of this account's REST and WebSocket stages",
    )
    role.add_to_principal_policy(iam.PolicyStatement(actions=list(LOG_ACTIONS), resources=["*"]))
    ack.aws_solutions_iam5_api_gateway_logging(role.policy)
    account = apigateway.CfnAccount(holder, "Resource", cloud_watch_role_arn=role.role_arn)
    account.node.add_dependency(role.policy)
    for resource in (role.node.default_child, role.policy.node.default_child, account):
        resource.apply_removal_policy(RemovalPolicy.RETAIN)
    return account


def execution_log_group(scope: Construct, stage: Construct, name: str, key: kms.IKey, profile: Profile) -> logs.LogGroup:
    """The log group API Gateway writes ``stage``'s execution logs to, made first (encrypted, with the profile's retention and
    removal) so that API Gateway never makes it without either: ``name`` is the one API Gateway uses for the kind of API."""
    group = logs.LogGroup(
        scope, "ExecutionLogs", log_group_name=name, encryption_key=key, retention=profile.log_retention, removal_policy=profile.removal_policy
    )
    stage.node.add_dependency(group)
    return group
