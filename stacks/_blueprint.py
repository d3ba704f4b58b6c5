"""What every blueprint stack starts with: one key, one alarm topic, one dashboard, the network in production."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aws_cdk import Aspects, Duration, Stack, triggers
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from constructs import Construct

from messaging_constructs import (
    RUNTIME,
    AlarmTopic,
    EncryptionKey,
    FunctionLogGroups,
    HandlerFunction,
    KeyUser,
    MonitoringDashboard,
    PrivateNetwork,
    Profile,
    SecureQueue,
)
from messaging_constructs.network import drop_provider_role_dependency

from ._paths import lambda_code, layer_code

CONSUMER_TIMEOUT = Duration.seconds(30)


def layer_construct_id(name: str) -> str:
    """``kafka_client`` -> ``KafkaClientLayer``: the construct id of the layer built from ``layers/<name>``."""
    return f"{name.title().replace('_', '')}Layer"


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
    def create(
        cls,
        stack: Stack,
        profile: Profile,
        *,
        interface_endpoints: Sequence[ec2.InterfaceVpcEndpointAwsService],
        network: bool | None = None,
    ) -> Blueprint:
        """The stack's key (for logs too), alarm topic and dashboard, and the network with the endpoints named (plus X-Ray and DynamoDB).

        :param network: make the network. Default: in production only (where functions run in it).
        """
        key = EncryptionKey(stack, "Key", users=[KeyUser.LOGS], alias=f"alias/{stack.node.id.lower()}", profile=profile).key
        # Production stacks refuse `cdk destroy` until protection is lifted on purpose (README, "Teardown").
        stack.termination_protection = profile.termination_protection
        # The custom-resource functions aws-cdk-lib adds get log groups with retention, deleted with the stack.
        Aspects.of(stack).add(FunctionLogGroups(encryption_key=key, profile=profile))
        network = (
            PrivateNetwork(
                stack,
                "Network",
                encryption_key=key,
                profile=profile,
                interface_endpoints=[*interface_endpoints, ec2.InterfaceVpcEndpointAwsService.XRAY],
                gateway_endpoints=[ec2.GatewayVpcEndpointAwsService.DYNAMODB],
            )
            if (profile.functions_in_vpc if network is None else network)
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

    def function(
        self,
        construct_id: str,
        code: str,
        *,
        environment: Mapping[str, str] | None = None,
        layers: Sequence[lambda_.ILayerVersion] = (),
        timeout: Duration = CONSUMER_TIMEOUT,
        memory_size: int = 256,
        reserved_concurrent_executions: int | None = None,
        in_network: bool = True,
    ) -> HandlerFunction:
        """A handler from ``lambdas/<code>``, in the network when there is one (unless ``in_network`` is False), on the dashboard."""
        fn = HandlerFunction(
            self.stack,
            construct_id,
            code_path=lambda_code(code),
            service_name=code,
            timeout=timeout,
            memory_size=memory_size,
            reserved_concurrent_executions=reserved_concurrent_executions,
            network=self.network if in_network else None,
            environment=environment,
            layers=layers,
            **self.common,
        )
        self.dashboard.monitor(fn)
        return fn

    def trigger(self, construct_id: str, fn: HandlerFunction, *, after: Sequence[Construct]) -> triggers.Trigger:
        """Invoke ``fn`` during deployment, once ``after`` exist, and again whenever ``fn`` changes."""
        trigger = triggers.Trigger(self.stack, construct_id, handler=fn.function, execute_after=list(after), execute_on_handler_change=True)
        drop_provider_role_dependency(self.stack, "AWSCDK.TriggerCustomResourceProviderCustomResourceProvider")
        return trigger

    def layer(self, name: str, description: str) -> lambda_.LayerVersion:
        """The layer built at set-up from ``layers/<name>/requirements.txt`` (see scripts/build_layers.py)."""
        return lambda_.LayerVersion(
            self.stack,
            layer_construct_id(name),
            code=lambda_.Code.from_asset(layer_code(name)),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[lambda_.Architecture.ARM_64],
            description=description,
            removal_policy=self.profile.removal_policy,
        )

    def queue(self, construct_id: str, **options: Any) -> SecureQueue:
        """A queue sized for the blueprint's consumers, on the dashboard."""
        queue = SecureQueue(self.stack, construct_id, consumer_timeout=CONSUMER_TIMEOUT, **self.common, **options)
        self.dashboard.monitor(queue)
        return queue
