"""ServiceLogGroups and FunctionLogGroups: every log group a stack causes has a retention and follows the profile."""

from __future__ import annotations

import pytest
from aws_cdk import Aspects
from aws_cdk import aws_ec2 as ec2

from messaging_constructs import EncryptionKey, FunctionLogGroups, PrivateNetwork, Profile, ServiceLogGroups

from .helpers import new_stack, only, resources, statements

NAMES = ["/aws/amazonmq/broker/b-1/general", "/aws/amazonmq/broker/b-1/audit"]


@pytest.mark.parametrize(("profile", "days", "removal"), [("sandbox", 7, "destroy"), ("production", 365, "retain")])
def test_one_custom_resource_per_name_with_the_profiles_retention_and_removal(profile, days, removal):
    stack = new_stack(profile)
    network = PrivateNetwork(stack, "Network")
    ServiceLogGroups(stack, "Logs", log_group_names=NAMES, network=network)
    found = resources(stack, "Custom::ServiceLogGroup")
    assert sorted(r["Properties"]["LogGroupName"] for r in found.values()) == sorted(NAMES)
    assert {(r["Properties"]["RetentionInDays"], r["Properties"]["RemovalPolicy"]) for r in found.values()} == {(days, removal)}
    # The custom resource itself always goes with the stack; only the handler decides about the group.
    assert {r["DeletionPolicy"] for r in found.values()} == {"Delete"}


def test_the_handler_may_touch_exactly_the_groups_named():
    stack = new_stack()
    ServiceLogGroups(stack, "Logs", log_group_names=NAMES)
    (statement,) = [s for s in statements(stack) if "logs:PutRetentionPolicy" in s["Action"]]
    assert sorted(statement["Action"]) == ["logs:AssociateKmsKey", "logs:CreateLogGroup", "logs:DeleteLogGroup", "logs:PutRetentionPolicy"]
    rendered = [stack.resolve(r) if isinstance(r, dict) else r for r in statement["Resource"]]
    assert len(rendered) == 4 and all("/aws/amazonmq/broker/b-1/" in str(r) for r in rendered)


def test_one_handler_serves_the_whole_stack():
    stack = new_stack()
    key = EncryptionKey(stack, "Key").key
    ServiceLogGroups(stack, "A", log_group_names=NAMES[:1], encryption_key=key)
    ServiceLogGroups(stack, "B", log_group_names=NAMES[1:], encryption_key=key)
    functions = [
        f
        for f in resources(stack, "AWS::Lambda::Function").values()
        if f["Properties"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"] == "service_log_groups"
    ]
    assert len(functions) == 1
    assert len(resources(stack, "Custom::ServiceLogGroup")) == 2


def test_in_production_the_handler_runs_in_the_network_and_reaches_logs_and_s3():
    """It answers CloudFormation on a pre-signed S3 URL, through the S3 gateway endpoint, and calls CloudWatch Logs through its endpoint."""
    stack = new_stack("production")
    network = PrivateNetwork(stack, "Network", gateway_endpoints=[ec2.GatewayVpcEndpointAwsService.DYNAMODB])
    logs_handler = ServiceLogGroups(stack, "Logs", log_group_names=NAMES, network=network).handler
    assert logs_handler.security_group is not None
    assert "Logs" in network.interface_endpoints
    assert set(network.gateway_endpoints) == {"Dynamodb", "S3"}


def test_function_log_groups_gives_providers_a_log_group_with_retention():
    stack = new_stack()
    key = EncryptionKey(stack, "Key").key
    PrivateNetwork(stack, "Network", encryption_key=key)  # adds aws-cdk-lib's default-security-group provider
    Aspects.of(stack).add(FunctionLogGroups(encryption_key=key, profile=Profile.named("sandbox")))
    (provider_id, provider) = only({k: v for k, v in resources(stack, "AWS::Lambda::Function").items() if "VpcRestrictDefaultSG" in k})
    group_id = provider["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
    group = resources(stack, "AWS::Logs::LogGroup")[group_id]
    assert group["Properties"]["RetentionInDays"] == 7 and "KmsKeyId" in group["Properties"]
    assert group["DeletionPolicy"] == "Delete"


def test_without_the_aspect_a_provider_logs_where_lambda_chooses():
    """What the aspect is for: aws-cdk-lib's providers have no log group of the stack's."""
    stack = new_stack()
    PrivateNetwork(stack, "Network")
    (_, provider) = only({k: v for k, v in resources(stack, "AWS::Lambda::Function").items() if "VpcRestrictDefaultSG" in k})
    assert "LoggingConfig" not in provider["Properties"]
