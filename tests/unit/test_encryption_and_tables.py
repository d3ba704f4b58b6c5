"""EncryptionKey, IdempotencyTable, Profile."""

from __future__ import annotations

import pytest
from aws_cdk import App
from aws_cdk import aws_iam as iam

from messaging_constructs import EncryptionKey, IdempotencyTable, KeyUser, Profile
from tests.unit.helpers import new_stack, only, resources


def _key_statements(stack) -> list[dict]:
    (_, key) = only(resources(stack, "AWS::KMS::Key"))
    return key["Properties"]["KeyPolicy"]["Statement"]


def test_key_rotates_and_admits_no_service_unless_asked():
    stack = new_stack()
    EncryptionKey(stack, "Key")
    (_, key) = only(resources(stack, "AWS::KMS::Key"))
    assert key["Properties"]["EnableKeyRotation"] is True
    assert all("Service" not in str(s.get("Principal")) for s in _key_statements(stack))


def test_key_admits_named_services_limited_to_the_account():
    stack = new_stack()
    EncryptionKey(stack, "Key", users=[KeyUser.SNS, KeyUser.LOGS])
    statements = {str(s["Principal"]["Service"]): s for s in _key_statements(stack) if "Service" in s.get("Principal", {})}
    sns = statements["sns.amazonaws.com"]
    assert sorted(sns["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey*"]
    assert sns["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    logs = next(s for k, s in statements.items() if "logs." in k)
    assert "kms:EncryptionContext:aws:logs:arn" in logs["Condition"]["ArnLike"]


@pytest.mark.parametrize(("profile", "policy", "window"), [("sandbox", "Delete", 7), ("production", "Retain", 30)])
def test_key_removal_follows_the_profile(profile, policy, window):
    stack = new_stack(profile)
    EncryptionKey(stack, "Key")
    (_, key) = only(resources(stack, "AWS::KMS::Key"))
    assert key["DeletionPolicy"] == policy and key["Properties"]["PendingWindowInDays"] == window


def test_idempotency_table_shape_encryption_and_recovery():
    stack = new_stack()
    IdempotencyTable(stack, "Idempotency")
    (_, table) = only(resources(stack, "AWS::DynamoDB::Table"))
    props = table["Properties"]
    assert props["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expiration", "Enabled": True}
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["SSESpecification"]["SSEType"] == "KMS" and "KMSMasterKeyId" in props["SSESpecification"]
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True


def test_idempotency_table_in_production_is_protected_retained_and_backed_up():
    stack = new_stack("production")
    IdempotencyTable(stack, "Idempotency")
    (_, table) = only(resources(stack, "AWS::DynamoDB::Table"))
    assert table["DeletionPolicy"] == "Retain" and table["Properties"]["DeletionProtectionEnabled"] is True
    assert resources(stack, "AWS::Backup::BackupPlan") and resources(stack, "AWS::Backup::BackupSelection")


def test_idempotency_table_in_sandbox_is_destroyed_without_backup():
    stack = new_stack("sandbox")
    IdempotencyTable(stack, "Idempotency")
    (_, table) = only(resources(stack, "AWS::DynamoDB::Table"))
    assert table["DeletionPolicy"] == "Delete"
    assert not resources(stack, "AWS::Backup::BackupPlan")


def test_idempotency_grant_names_exact_actions():
    stack = new_stack()
    table = IdempotencyTable(stack, "Idempotency")
    role = iam.Role(stack, "Consumer", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
    table.grant_idempotency(role)
    (_, policy) = only(resources(stack, "AWS::IAM::Policy"))
    actions = sorted(a for s in policy["Properties"]["PolicyDocument"]["Statement"] for a in s["Action"])
    assert actions == sorted(
        [
            "dynamodb:DeleteItem",
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "kms:Decrypt",
            "kms:Encrypt",
            "kms:GenerateDataKey",
        ]
    )


def test_idempotency_table_alarms_on_throttles_and_system_errors():
    stack = new_stack()
    IdempotencyTable(stack, "Idempotency")
    assert len(resources(stack, "AWS::CloudWatch::Alarm")) == 2


def test_profile_defaults_to_sandbox_and_reads_context():
    assert Profile.of(App()).name == "sandbox"
    assert Profile.of(App(context={"profile": "production"})).is_production


def test_fails_when_profile_is_unknown():
    with pytest.raises(ValueError, match=r"profile must be one of \['production', 'sandbox'\], got 'staging'"):
        Profile.of(App(context={"profile": "staging"}))
