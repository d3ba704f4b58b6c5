"""EncryptionKey, IdempotencyTable, Profile."""

from __future__ import annotations

import pytest
from aws_cdk import App, Duration
from aws_cdk import aws_iam as iam

from messaging_constructs import PRODUCTION, SANDBOX, EncryptionKey, IdempotencyTable, KeyUser, Profile
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
    # What the SQS key-management page documents for a service sending to an encrypted queue, no wildcard.
    assert sorted(sns["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey"]
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
    assert Profile.of(App()) is SANDBOX
    assert Profile.of(App(context={"profile": "production"})) is PRODUCTION


def test_the_profile_owns_every_size_that_differs_between_sandbox_and_production():
    assert (SANDBOX.kafka_instance_type, SANDBOX.kafka_volume_size, SANDBOX.kafka_enhanced_monitoring) == ("kafka.t3.small", 10, "DEFAULT")
    assert (PRODUCTION.kafka_instance_type, PRODUCTION.kafka_volume_size, PRODUCTION.kafka_enhanced_monitoring) == ("kafka.m7g.large", 100, "PER_BROKER")
    assert (SANDBOX.mq_instance_type, SANDBOX.mq_multi_az) == ("mq.t3.micro", False)
    assert (PRODUCTION.mq_instance_type, PRODUCTION.mq_multi_az) == ("mq.m5.large", True)
    assert (SANDBOX.archive_retention.to_days(), PRODUCTION.archive_retention.to_days()) == (7, 365)


def test_constructs_read_the_profile_fields_not_its_name():
    """A profile of your own (here: production sizes, sandbox teardown) is honoured field by field."""
    import dataclasses

    from aws_cdk import Stack

    from messaging_constructs import BrokerEngine, EventBus, KafkaCluster, MessageBroker, PrivateNetwork

    staging = dataclasses.replace(
        SANDBOX, name="staging", kafka_instance_type="kafka.m7g.large", mq_instance_type="mq.m5.large", mq_multi_az=True, archive_retention=Duration.days(30)
    )
    stack = Stack(App(), "Staging")
    network = PrivateNetwork(stack, "Network", profile=staging)
    KafkaCluster(stack, "Cluster", network=network, profile=staging)
    MessageBroker(stack, "Broker", engine=BrokerEngine.ACTIVEMQ, network=network, profile=staging)
    EventBus(stack, "Bus", profile=staging)
    (_, cluster) = only(resources(stack, "AWS::MSK::Cluster"))
    assert cluster["Properties"]["BrokerNodeGroupInfo"]["InstanceType"] == "kafka.m7g.large"
    (_, broker) = only(resources(stack, "AWS::AmazonMQ::Broker"))
    assert (broker["Properties"]["HostInstanceType"], broker["Properties"]["DeploymentMode"]) == ("mq.m5.large", "ACTIVE_STANDBY_MULTI_AZ")
    (_, archive) = only(resources(stack, "AWS::Events::Archive"))
    assert archive["Properties"]["RetentionDays"] == 30


def test_pick_gives_a_blueprint_its_own_value_per_profile():
    assert SANDBOX.pick(sandbox=6, production=24) == 6 and PRODUCTION.pick(sandbox=6, production=24) == 24
    import dataclasses

    with pytest.raises(ValueError, match="pick knows the sandbox and production profiles, got 'staging'"):
        dataclasses.replace(SANDBOX, name="staging").pick(sandbox=1, production=2)


def test_fails_when_profile_is_unknown():
    with pytest.raises(ValueError, match=r"profile must be one of \['production', 'sandbox'\], got 'staging'"):
        Profile.of(App(context={"profile": "staging"}))
