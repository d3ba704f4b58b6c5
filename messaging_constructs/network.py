"""PrivateNetwork: an isolated VPC for functions and brokers, reached only through endpoints."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Aws, CfnResource, Names, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from ._iam import ManagedPolicyRole
from ._validation import check_range
from .encryption import KeyUser, allow_service, key_or_new
from .profile import Profile


class PrivateNetwork(Construct):
    """A VPC with private isolated subnets only: no internet gateway, no NAT, no public IPs.

    - one isolated subnet per availability zone (the profile's count);
    - the default security group stripped of all rules;
    - flow logs of all traffic to an encrypted log group with retention;
    - gateway endpoints (free) and interface endpoints (billed per hour and
      AZ) for exactly the services named, each interface endpoint behind a
      security group that admits HTTPS only from the security groups made by
      :meth:`function_security_group` or named with :meth:`allow_endpoint_access`.

    :param interface_endpoints: services reached through interface endpoints,
        e.g. ``ec2.InterfaceVpcEndpointAwsService.SNS``. Default: none.
    :param gateway_endpoints: Default: DynamoDB and S3.
    :param cidr: the VPC's IPv4 range. Default: ``10.40.0.0/16``.
    :param max_azs: availability zones (1 to 6). Default: the profile's (sandbox 2, production 3).
    :param encryption_key: encrypts the flow-log group. Default: a new key with rotation.
    :param vpc: bring your own VPC instead (its isolated subnets are used;
        nothing else is created but endpoints and security groups). Default: a new VPC.
    :param profile: Default: from context.

    Attributes: ``vpc``, ``subnet_selection``, ``endpoint_security_group``,
    ``interface_endpoints`` and ``gateway_endpoints`` (by label), ``flow_log_group`` (None with your own VPC).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        interface_endpoints: Sequence[ec2.InterfaceVpcEndpointAwsService] = (),
        gateway_endpoints: Sequence[ec2.GatewayVpcEndpointAwsService] | None = None,
        cidr: str = "10.40.0.0/16",
        max_azs: int | None = None,
        encryption_key: kms.IKey | None = None,
        vpc: ec2.IVpc | None = None,
        profile: Profile | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.profile = profile or Profile.of(self)
        max_azs = max_azs or self.profile.max_azs
        check_range("max_azs", max_azs, 1, 6)
        self.subnet_selection = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)
        self.flow_log_group: logs.LogGroup | None = None
        if vpc is None:
            key = key_or_new(self, encryption_key, self.profile)
            allow_service(key, KeyUser.LOGS)
            vpc = ec2.Vpc(
                self,
                "Resource",
                ip_addresses=ec2.IpAddresses.cidr(cidr),
                max_azs=max_azs,
                nat_gateways=0,
                subnet_configuration=[ec2.SubnetConfiguration(name="isolated", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=22)],
                restrict_default_security_group=True,
                gateway_endpoints={},
            )
            _drop_redundant_dependency(vpc)
            self.flow_log_group = logs.LogGroup(
                self,
                "FlowLogs",
                encryption_key=key,
                retention=self.profile.log_retention,
                removal_policy=self.profile.removal_policy,
            )
            flow_log_role = ManagedPolicyRole(
                self,
                "FlowLogRole",
                assumed_by=iam.ServicePrincipal("vpc-flow-logs.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": Stack.of(self).account}}),
                description="Lets VPC Flow Logs write to one log group",
            )
            vpc.add_flow_log(
                "FlowLog",
                destination=ec2.FlowLogDestination.to_cloud_watch_logs(self.flow_log_group, flow_log_role),
                traffic_type=ec2.FlowLogTrafficType.ALL,
            )
        self.vpc: ec2.IVpc = vpc
        self._event_source_groups: set[tuple[str, str]] = set()
        self.interface_endpoints: dict[str, ec2.InterfaceVpcEndpoint] = {}
        self.endpoint_security_group = ec2.SecurityGroup(
            self,
            "EndpointSecurityGroup",
            vpc=vpc,
            allow_all_outbound=False,
            description="Interface endpoints: HTTPS from named security groups only",
        )
        self.gateway_endpoints: dict[str, ec2.GatewayVpcEndpoint] = {}
        for service in gateway_endpoints if gateway_endpoints is not None else (ec2.GatewayVpcEndpointAwsService.DYNAMODB, ec2.GatewayVpcEndpointAwsService.S3):
            self.ensure_gateway_endpoint(service)
        for service in interface_endpoints:
            self.add_interface_endpoint(service)

    def add_interface_endpoint(self, service: ec2.IInterfaceVpcEndpointService, *, label: str | None = None) -> ec2.InterfaceVpcEndpoint:
        """An interface endpoint with private DNS, reachable from the endpoint security group's peers.

        :param label: names the endpoint (``<Label>Endpoint``); required for services that are not
            ``InterfaceVpcEndpointAwsService`` values (see :func:`aws_api_service`).
        """
        label = label or _label(service)
        endpoint = self.vpc.add_interface_endpoint(
            f"{label}Endpoint",
            service=service,
            subnets=self.subnet_selection,
            security_groups=[self.endpoint_security_group],
            private_dns_enabled=True,
            open=False,
        )
        self.interface_endpoints[label] = endpoint
        return endpoint

    def ensure_interface_endpoint(self, service: ec2.IInterfaceVpcEndpointService, *, label: str | None = None) -> ec2.InterfaceVpcEndpoint:
        """The network's endpoint for ``service``, added if it has none yet (constructs that need one call this)."""
        return self.interface_endpoints.get(label or _label(service)) or self.add_interface_endpoint(service, label=label)

    def ensure_gateway_endpoint(self, service: ec2.GatewayVpcEndpointAwsService) -> ec2.GatewayVpcEndpoint:
        """The network's gateway endpoint for ``service`` (S3 or DynamoDB; free), added if it has none yet."""
        label = service.name.split(".")[-1].capitalize()
        if label not in self.gateway_endpoints:
            self.gateway_endpoints[label] = self.vpc.add_gateway_endpoint(f"{label}Endpoint", service=service, subnets=[self.subnet_selection])
        return self.gateway_endpoints[label]

    def allow_endpoint_access(self, peer: ec2.IConnectable) -> None:
        """Admit ``peer`` to the interface endpoints on HTTPS (443)."""
        self.endpoint_security_group.connections.allow_from(peer, ec2.Port.tcp(443), "HTTPS to VPC endpoints")

    def allow_event_source_mappings(
        self,
        group: ec2.SecurityGroup,
        port: ec2.Port,
        description: str,
        services: Sequence[ec2.InterfaceVpcEndpointAwsService] = (),
    ) -> None:
        """Let Lambda's event source mappings reach a broker or cluster whose security group is ``group``.

        The mappings' network interfaces share the group: they reach the broker
        through the group itself on ``port``, and Lambda, STS and the like through
        the interface endpoints on HTTPS; ``services`` are the endpoints they need.
        Idempotent: the rules are added once per group and port, each endpoint once.
        The broker and cluster constructs call this from their own
        ``allow_event_source_mappings()``, which the consumer constructs call; the
        function role's network-interface actions are a separate grant
        (``grant_event_source_network_interfaces``).
        """
        for service in services:
            self.ensure_interface_endpoint(service)
        done = (Names.node_unique_id(group.node), port.to_string())
        if done in self._event_source_groups:
            return
        self._event_source_groups.add(done)
        group.add_ingress_rule(group, port, description)
        group.add_egress_rule(group, port, description)
        group.add_egress_rule(self.endpoint_security_group, ec2.Port.tcp(443), "HTTPS to the VPC interface endpoints")
        self.allow_endpoint_access(group)

    def function_security_group(self, scope: Construct, construct_id: str) -> ec2.SecurityGroup:
        """A security group with no inbound rules and outbound HTTPS only, admitted to the interface endpoints."""
        group = ec2.SecurityGroup(
            scope,
            construct_id,
            vpc=self.vpc,
            allow_all_outbound=False,
            description="Function: no inbound; outbound HTTPS to VPC endpoints only",
        )
        # The subnets have no internet route: HTTPS can only reach the interface
        # endpoints (in the VPC range) and the gateway endpoints (whose
        # prefix-list IDs differ per region and cannot be known offline).
        group.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "HTTPS to VPC endpoints")
        self.allow_endpoint_access(group)
        return group


def aws_api_service(short_name: str) -> ec2.InterfaceVpcEndpointService:
    """The dual-stack endpoint service ``aws.api.<region>.<short_name>`` that some AWS APIs now offer in place of
    ``com.amazonaws.<region>.<name>`` (e.g. ``kafka-api`` for the MSK API). Clients reach it through its private DNS
    name only with dual-stack endpoints on (``AWS_USE_DUALSTACK_ENDPOINT=true``)."""
    return ec2.InterfaceVpcEndpointService(f"aws.api.{Aws.REGION}.{short_name}", 443)


def _label(service: ec2.IInterfaceVpcEndpointService) -> str:
    if not isinstance(service, ec2.InterfaceVpcEndpointAwsService):
        raise ValueError("give a label for an endpoint service that is not an InterfaceVpcEndpointAwsService")
    return service.short_name.replace("-", " ").title().replace(" ", "").replace(".", "")


def _drop_redundant_dependency(vpc: ec2.Vpc) -> None:
    """The default-security-group handler CDK adds references its role and also depends on it (cfn-lint W3005)."""
    drop_provider_role_dependency(Stack.of(vpc), "Custom::VpcRestrictDefaultSGCustomResourceProvider")


def drop_provider_role_dependency(stack: Stack, provider_id: str) -> None:
    """A CDK custom-resource provider's handler references its role and also depends on it (cfn-lint W3005): keep the reference only."""
    provider = stack.node.try_find_child(provider_id)
    if provider is None:
        return
    handler, role = provider.node.try_find_child("Handler"), provider.node.try_find_child("Role")
    if isinstance(handler, CfnResource) and isinstance(role, CfnResource):
        handler.remove_resource_dependency(role)
