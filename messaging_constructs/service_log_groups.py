"""ServiceLogGroups: log groups that an AWS service creates by name at run time, kept by the stack."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from aws_cdk import ArnFormat, CustomResource, Duration, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from constructs import Construct

from . import acknowledgements as ack
from .encryption import KeyUser, allow_service, key_or_new
from .function import HandlerFunction
from .network import PrivateNetwork
from .profile import Profile

HANDLER_CODE = str(Path(__file__).resolve().parent / "handlers" / "service_log_groups")
_HANDLER_ID = "ServiceLogGroupsHandler"


class ServiceLogGroups(Construct):
    """Log groups a service names and creates itself, given the stack's retention, key and removal policy.

    Some services write to log groups they create on first use, under names
    that exist only once the resource runs: Amazon MQ writes a broker's logs to
    ``/aws/amazonmq/broker/<broker id>/general`` (and ``/audit`` on ActiveMQ).
    Such a group has no retention, is encrypted with CloudWatch's own key and
    outlives ``cdk destroy``. A ``Custom::ServiceLogGroup`` per name creates
    the group if the service has not yet, sets the profile's retention,
    encrypts it with the CMK and, when the profile destroys, deletes it with
    the stack (after which a service still running could create it again:
    the owning resource is deleted after its log groups).

    One :class:`HandlerFunction` per stack serves every instance; its role
    may create, encrypt, set retention on and delete exactly the groups named.
    In a network (production), it reaches CloudWatch Logs through an interface
    endpoint and answers CloudFormation's pre-signed S3 URL through the S3
    gateway endpoint, which this adds when missing.

    :param log_group_names: the names, tokens allowed. Required.
    :param network: where the function runs when the profile puts functions
        in a VPC. Default: none (the function runs outside a VPC).
    :param encryption_key: encrypts the groups. Default: a new key with rotation.
    :param alarm_topic: the function's alarms. Default: no action.
    :param profile: retention and removal policy. Default: from context.

    Attributes: ``resources`` (one ``CustomResource`` per name), ``handler``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        log_group_names: Sequence[str],
        network: PrivateNetwork | None = None,
        encryption_key: kms.IKey | None = None,
        alarm_topic: sns.ITopic | None = None,
        profile: Profile | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.profile = profile or Profile.of(self)
        self.key = key_or_new(self, encryption_key, self.profile)
        allow_service(self.key, KeyUser.LOGS)
        self.handler = _handler(Stack.of(self), network if self.profile.functions_in_vpc else None, self.key, alarm_topic, self.profile)
        stack = Stack.of(self)
        arns = [
            stack.format_arn(service="logs", resource="log-group", resource_name=name, arn_format=ArnFormat.COLON_RESOURCE_NAME) for name in log_group_names
        ]
        self.handler.role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogGroup", "logs:AssociateKmsKey", "logs:PutRetentionPolicy", "logs:DeleteLogGroup"],
                resources=[*arns, *(f"{arn}:*" for arn in arns)],
            )
        )
        ack.aws_solutions_iam5_log_group_arn_suffix(self.handler.role.policy, arns)
        self.resources: list[CustomResource] = []
        for index, name in enumerate(log_group_names):
            resource = CustomResource(
                self,
                f"LogGroup{index}",
                service_token=self.handler.function.function_arn,
                resource_type="Custom::ServiceLogGroup",
                properties={
                    "LogGroupName": name,
                    "RetentionInDays": self.profile.log_retention,
                    "KmsKeyArn": self.key.key_arn,
                    # The resource itself is always deleted; the handler keeps the group when the profile retains.
                    "RemovalPolicy": "destroy" if self.profile.removal_policy == RemovalPolicy.DESTROY else "retain",
                },
            )
            # The handler checks nothing before it acts: its grants must exist first.
            resource.node.add_dependency(self.handler.role.policy)
            self.resources.append(resource)


def _handler(stack: Stack, network: PrivateNetwork | None, key: kms.IKey, alarm_topic: sns.ITopic | None, profile: Profile) -> HandlerFunction:
    """The stack's one handler, made by the first instance (with its key, network and alarm topic)."""
    existing = stack.node.try_find_child(_HANDLER_ID)
    if isinstance(existing, HandlerFunction):
        return existing
    if network is not None:
        network.ensure_interface_endpoint(ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS)
        network.ensure_gateway_endpoint(ec2.GatewayVpcEndpointAwsService.S3)
    return HandlerFunction(
        stack,
        _HANDLER_ID,
        code_path=HANDLER_CODE,
        service_name="service_log_groups",
        description="Custom::ServiceLogGroup: keeps log groups that services create by name",
        timeout=Duration.minutes(1),
        memory_size=128,
        encryption_key=key,
        network=network,
        alarm_topic=alarm_topic,
        profile=profile,
    )
