"""Custom::ServiceLogGroup: CloudFormation's requests, against moto's CloudWatch Logs and a local endpoint for the answers."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from messaging_constructs.service_log_groups import HANDLER_CODE

NAME = "/aws/amazonmq/broker/b-1234/general"
KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/1c2fa620-982a-11e3-aff7-50e2416294e0"


@pytest.fixture
def handler(handler_env):
    with mock_aws():
        spec = importlib.util.spec_from_file_location("service_log_groups_handler_under_test", Path(HANDLER_CODE) / "handler.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module


def _event(request_type: str, url: str, *, name: str = NAME, removal: str = "destroy", physical_id: str | None = None) -> dict:
    event = {
        "RequestType": request_type,
        "ResponseURL": url,
        "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/Exercise05/1c2fa620-982a-11e3-aff7-50e2416294e0",
        "RequestId": "5e0f8a2b-0d8f-4b6e-9d3a-7f1c2b3a4d5e",
        "ResourceType": "Custom::ServiceLogGroup",
        "LogicalResourceId": "WarehouseLogGroupsLogGroup0",
        "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:handler",
        "ResourceProperties": {"ServiceToken": "x", "LogGroupName": name, "RetentionInDays": "7", "KmsKeyArn": KEY_ARN, "RemovalPolicy": removal},
    }
    if physical_id is not None:
        event["PhysicalResourceId"] = physical_id
    return event


def _group(name: str = NAME) -> dict | None:
    groups = boto3.client("logs").describe_log_groups(logGroupNamePrefix=name)["logGroups"]
    return next((g for g in groups if g["logGroupName"] == name), None)


def test_create_makes_the_group_with_retention_and_key(handler, answers, lambda_context):
    url, received = answers
    handler.lambda_handler(_event("Create", url), lambda_context)
    group = _group()
    assert group["retentionInDays"] == 7 and group["kmsKeyId"] == KEY_ARN
    assert [(a["Status"], a["PhysicalResourceId"], a["LogicalResourceId"]) for a in received] == [("SUCCESS", NAME, "WarehouseLogGroupsLogGroup0")]


def test_create_keeps_a_group_the_service_made_first(handler, answers, lambda_context, monkeypatch):
    url, received = answers
    boto3.client("logs").create_log_group(logGroupName=NAME)
    # moto has no AssociateKmsKey: record the call instead.
    associated = []
    monkeypatch.setattr(handler.logs, "associate_kms_key", lambda **call: associated.append(call))
    handler.lambda_handler(_event("Create", url), lambda_context)
    assert _group()["retentionInDays"] == 7
    assert associated == [{"logGroupName": NAME, "kmsKeyId": KEY_ARN}]
    assert received[0]["Status"] == "SUCCESS"


def test_delete_removes_the_group_when_the_profile_destroys(handler, answers, lambda_context):
    url, received = answers
    handler.lambda_handler(_event("Create", url), lambda_context)
    handler.lambda_handler(_event("Delete", url, physical_id=NAME), lambda_context)
    assert _group() is None
    assert [a["Status"] for a in received] == ["SUCCESS", "SUCCESS"]


def test_delete_keeps_the_group_when_the_profile_retains(handler, answers, lambda_context):
    url, received = answers
    handler.lambda_handler(_event("Create", url, removal="retain"), lambda_context)
    handler.lambda_handler(_event("Delete", url, removal="retain", physical_id=NAME), lambda_context)
    assert _group() is not None and received[-1]["Status"] == "SUCCESS"


def test_delete_of_a_group_already_gone_succeeds(handler, answers, lambda_context):
    url, received = answers
    handler.lambda_handler(_event("Delete", url, physical_id=NAME), lambda_context)
    assert received == [dict(received[0], Status="SUCCESS")]


def test_a_failed_create_answers_failed_with_the_reason_and_its_delete_touches_nothing(handler, answers, lambda_context):
    url, received = answers
    event = _event("Create", url)
    event["ResourceProperties"]["RetentionInDays"] = "not a number"
    handler.lambda_handler(event, lambda_context)
    (answer,) = received
    assert answer["Status"] == "FAILED" and "ValueError" in answer["Reason"] and lambda_context.log_stream_name in answer["Reason"]
    assert answer["PhysicalResourceId"] != NAME
    # CloudFormation then deletes what it thinks was made; the service's group (if any) must stay.
    boto3.client("logs").create_log_group(logGroupName=NAME)
    handler.lambda_handler(_event("Delete", url, physical_id=answer["PhysicalResourceId"]), lambda_context)
    assert _group() is not None and received[-1]["Status"] == "SUCCESS"
