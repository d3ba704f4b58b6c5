"""Log groups for the Lambda functions that aws-cdk-lib adds on its own.

A function without a log group of the stack's writes to ``/aws/lambda/<name>``,
which Lambda creates with no retention and which outlives ``cdk destroy``.
``HandlerFunction`` always has its own; the custom-resource providers that
aws-cdk-lib adds (the default-security-group restriction of a VPC, triggers,
``LogRetention``) do not and offer no way to give them one. The
:class:`FunctionLogGroups` aspect does, through Lambda's ``LoggingConfig``.
"""

from __future__ import annotations

import jsii
from aws_cdk import CfnResource, IAspect
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import IConstruct

from .encryption import KeyUser, allow_service
from .profile import Profile

_SUFFIX = "LogGroup"


def give_log_group(function: CfnResource, *, encryption_key: kms.IKey, profile: Profile) -> logs.LogGroup:
    """Make ``function`` (an ``AWS::Lambda::Function``) log to a new log group beside it; once per function.

    The group has the profile's retention and removal policy and is encrypted
    with ``encryption_key`` (whose policy must admit CloudWatch Logs). The
    function's role must be allowed ``logs:CreateLogStream`` and
    ``logs:PutLogEvents`` on it: aws-cdk-lib's providers have them on every log group.
    """
    scope = function.node.scope
    assert scope is not None
    construct_id = f"{function.node.id}{_SUFFIX}"
    existing = scope.node.try_find_child(construct_id)
    if isinstance(existing, logs.LogGroup):
        return existing
    allow_service(encryption_key, KeyUser.LOGS)
    group = logs.LogGroup(scope, construct_id, encryption_key=encryption_key, retention=profile.log_retention, removal_policy=profile.removal_policy)
    if isinstance(function, lambda_.CfnFunction):
        function.logging_config = lambda_.CfnFunction.LoggingConfigProperty(log_group=group.log_group_name)
    else:
        function.add_property_override("LoggingConfig", {"LogGroup": group.log_group_name})
    return group


@jsii.implements(IAspect)
class FunctionLogGroups:
    """An aspect: every Lambda function in the scope without a log group of its own gets one.

    ``Aspects.of(stack).add(FunctionLogGroups(encryption_key=key, profile=profile))``;
    every blueprint stack has it.

    :param encryption_key: encrypts the log groups; its policy is extended to admit CloudWatch Logs. Required.
    :param profile: retention and removal policy of the log groups. Required.
    """

    def __init__(self, *, encryption_key: kms.IKey, profile: Profile) -> None:
        self._key = encryption_key
        self._profile = profile

    def visit(self, node: IConstruct) -> None:
        if not isinstance(node, CfnResource) or node.cfn_resource_type != "AWS::Lambda::Function":
            return
        if isinstance(node, lambda_.CfnFunction) and node.logging_config is not None:
            return
        give_log_group(node, encryption_key=self._key, profile=self._profile)
