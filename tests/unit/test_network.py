"""PrivateNetwork: isolated, logged, closed by default, reachable only through endpoints."""

from __future__ import annotations

from aws_cdk import aws_ec2 as ec2

from messaging_constructs import PrivateNetwork
from tests.unit.helpers import new_stack, only, resources, template


def _network(**props):
    stack = new_stack("production")
    return stack, PrivateNetwork(stack, "Network", **props)


def test_no_internet_route_and_no_public_ips():
    stack, _ = _network()
    assert not resources(stack, "AWS::EC2::InternetGateway")
    assert not resources(stack, "AWS::EC2::NatGateway")
    for route in resources(stack, "AWS::EC2::Route").values():
        assert "GatewayId" not in route["Properties"] and "NatGatewayId" not in route["Properties"]
    for subnet in resources(stack, "AWS::EC2::Subnet").values():
        assert subnet["Properties"]["MapPublicIpOnLaunch"] is False


def test_default_security_group_is_stripped():
    stack, _ = _network()
    assert resources(stack, "Custom::VpcRestrictDefaultSG")


def test_flow_logs_of_all_traffic_to_an_encrypted_log_group():
    stack, _ = _network()
    (_, flow_log) = only(resources(stack, "AWS::EC2::FlowLog"))
    assert flow_log["Properties"]["TrafficType"] == "ALL"
    (_, group) = only(resources(stack, "AWS::Logs::LogGroup"))
    assert "KmsKeyId" in group["Properties"] and group["Properties"]["RetentionInDays"] == 365


def test_exactly_the_endpoints_named():
    stack, _ = _network(
        interface_endpoints=[ec2.InterfaceVpcEndpointAwsService.SNS, ec2.InterfaceVpcEndpointAwsService.XRAY],
        gateway_endpoints=[ec2.GatewayVpcEndpointAwsService.DYNAMODB],
    )
    endpoints = resources(stack, "AWS::EC2::VPCEndpoint").values()
    kinds = sorted(e["Properties"].get("VpcEndpointType", "Gateway") for e in endpoints)
    assert kinds == ["Gateway", "Interface", "Interface"]
    for endpoint in endpoints:
        if endpoint["Properties"].get("VpcEndpointType") == "Interface":
            assert endpoint["Properties"]["PrivateDnsEnabled"] is True


def test_endpoints_admit_https_only_from_named_security_groups():
    stack, network = _network(interface_endpoints=[ec2.InterfaceVpcEndpointAwsService.SNS])
    peer = network.function_security_group(stack, "Function")
    template(stack).has_resource_properties(
        "AWS::EC2::SecurityGroupIngress",
        {
            "IpProtocol": "tcp",
            "FromPort": 443,
            "ToPort": 443,
            "SourceSecurityGroupId": {"Fn::GetAtt": [stack.get_logical_id(peer.node.default_child), "GroupId"]},
        },
    )
    endpoint_group = resources(stack, "AWS::EC2::SecurityGroup")[stack.get_logical_id(network.endpoint_security_group.node.default_child)]
    assert "SecurityGroupIngress" not in endpoint_group["Properties"]  # only the named rule above


def test_availability_zones_follow_the_profile():
    stack = new_stack("sandbox")
    PrivateNetwork(stack, "Network")
    # An environment-agnostic stack can resolve at most two zones; with an env set, production uses three.
    assert len(resources(stack, "AWS::EC2::Subnet")) == 2


def test_fails_when_max_azs_is_out_of_range():
    import pytest

    with pytest.raises(ValueError, match="max_azs must be between 1 and 6, got 7"):
        _network(max_azs=7)
