"""What every blueprint stack starts with: one key, one alarm topic, one dashboard, the network in production."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aws_cdk import Duration, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns

from messaging_constructs import (
    AlarmTopic,
    EncryptionKey,
    HandlerFunction,
    KeyUser,
    MonitoringDashboard,
    PrivateNetwork,
    Profile,
    SecureQueue,
)

from ._paths import lambda_code

CONSUMER_TIMEOUT = Duration.seconds(30)


@dataclass
class Blueprint:
    """The shared pieces of one blueprint stack, and helpers that add functions and queues to its dashboard."""

    stack: Stack
    profile: Profile
    key: kms.IKey
    alarms: sns.ITopic
    dashboard: MonitoringDashboard
    network: PrivateNetwork | None

    @classmethod
    def create(cls, stack: Stack, profile: Profile, *, interface_endpoints: Sequence[ec2.InterfaceVpcEndpointAwsService]) -> Blueprint:
        """The stack's key (for logs too), alarm topic and dashboard; in production also the network with the endpoints named (plus X-Ray and DynamoDB)."""
        key = EncryptionKey(stack, "Key", users=[KeyUser.LOGS], alias=f"alias/{stack.node.id.lower()}", profile=profile).key
        network = (
            PrivateNetwork(
                stack,
                "Network",
                encryption_key=key,
                profile=profile,
                interface_endpoints=[*interface_endpoints, ec2.InterfaceVpcEndpointAwsService.XRAY],
                gateway_endpoints=[ec2.GatewayVpcEndpointAwsService.DYNAMODB],
            )
            if profile.functions_in_vpc
            else None
        )
        return cls(
            stack=stack,
            profile=profile,
            key=key,
            alarms=AlarmTopic(stack, "Alarms", encryption_key=key).topic,
            dashboard=MonitoringDashboard(stack, "Dashboard"),
            network=network,
        )

    @property
    def common(self) -> dict[str, Any]:
        """Props every library construct of the blueprint shares."""
        return dict(encryption_key=self.key, alarm_topic=self.alarms, profile=self.profile)

    def function(self, construct_id: str, code: str, *, environment: Mapping[str, str] | None = None) -> HandlerFunction:
        """A handler from ``lambdas/<code>``, in the network when there is one, on the dashboard."""
        fn = HandlerFunction(
            self.stack,
            construct_id,
            code_path=lambda_code(code),
            service_name=code,
            timeout=CONSUMER_TIMEOUT,
            network=self.network,
            environment=environment,
            **self.common,
        )
        self.dashboard.add_section(f"{construct_id} function", fn.dashboard_widgets(construct_id))
        return fn

    def queue(self, construct_id: str, **options: Any) -> SecureQueue:
        """A queue sized for the blueprint's consumers, on the dashboard."""
        queue = SecureQueue(self.stack, construct_id, consumer_timeout=CONSUMER_TIMEOUT, **self.common, **options)
        self.dashboard.add_section(f"{construct_id} queue", queue.dashboard_widgets(construct_id))
        return queue
