"""EventBus: every promise on the synthesized template, and every validation."""

from __future__ import annotations

import json

import pytest
from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk.assertions import Match

from messaging_constructs import EventBus, SecureQueue
from tests.unit.helpers import new_stack, only, resources, template

PATTERN = events.EventPattern(source=["blueprints.orders"], detail_type=["OrderPlaced"])


def _bus(profile: str = "sandbox", **props):
    stack = new_stack(profile)
    return stack, EventBus(stack, "Bus", **props)


def _key_statements(stack) -> list[dict]:
    (_, key) = only(resources(stack, "AWS::KMS::Key"))
    return key["Properties"]["KeyPolicy"]["Statement"]


def test_bus_is_encrypted_with_a_cmk_and_has_a_dlq():
    stack, bus = _bus()
    (_, resource) = only(resources(stack, "AWS::Events::EventBus"))
    key_id = stack.get_logical_id(bus.key.node.default_child)
    assert resource["Properties"]["KmsKeyIdentifier"] == {"Fn::GetAtt": [key_id, "Arn"]}
    dlq_id = stack.get_logical_id(bus.dead_letter_queue.node.default_child)
    assert resource["Properties"]["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [dlq_id, "Arn"]}}


def test_eventbridge_may_use_the_key_for_this_account_only():
    stack, _ = _bus()
    statements = [s for s in _key_statements(stack) if s.get("Principal", {}).get("Service") == "events.amazonaws.com"]
    data = [s for s in statements if s["Action"] != "kms:DescribeKey"]
    assert data, "no statement for EventBridge"
    for statement in data:
        assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
        assert sorted(statement["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey", "kms:ReEncryptFrom", "kms:ReEncryptTo"]
    # DescribeKey (key metadata only) stands alone without conditions, as AWS documents it.
    assert [s for s in statements if s["Action"] == "kms:DescribeKey"] == [
        {"Action": "kms:DescribeKey", "Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"}, "Resource": "*"}
    ]


def test_bus_dlq_does_not_depend_on_the_bus_key():
    stack, bus = _bus()
    dlq = resources(stack, "AWS::SQS::Queue")[stack.get_logical_id(bus.dead_letter_queue.node.default_child)]
    assert dlq["Properties"]["SqsManagedSseEnabled"] is True and "KmsMasterKeyId" not in dlq["Properties"]


def test_bus_dlq_admits_only_this_bus():
    stack, bus = _bus()
    bus_id = stack.get_logical_id(bus.bus.node.default_child)
    template(stack).has_resource_properties(
        "AWS::SQS::QueuePolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {"Principal": {"Service": "events.amazonaws.com"}, "Condition": {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": [bus_id, "Arn"]}}}}
                        )
                    ]
                )
            }
        },
    )


@pytest.mark.parametrize(("profile", "days"), [("sandbox", 7), ("production", 365)])
def test_archive_is_encrypted_and_kept_per_profile(profile, days):
    stack, _ = _bus(profile)
    (_, archive) = only(resources(stack, "AWS::Events::Archive"))
    assert archive["Properties"]["RetentionDays"] == days
    assert "KmsKeyIdentifier" in archive["Properties"]
    assert json.loads(json.dumps(archive["Properties"]["EventPattern"]))["account"]


def test_archive_can_be_limited_to_a_pattern_or_left_out():
    stack, _ = _bus(archive_event_pattern=PATTERN, archive_retention=Duration.days(30))
    (_, archive) = only(resources(stack, "AWS::Events::Archive"))
    assert archive["Properties"]["EventPattern"]["source"] == ["blueprints.orders"] and archive["Properties"]["RetentionDays"] == 30
    stack, _ = _bus(archive=False)
    assert not resources(stack, "AWS::Events::Archive")


def test_bus_policy_admits_only_the_named_accounts():
    stack, _ = _bus(allowed_accounts=["111122223333"])
    (_, policy) = only(resources(stack, "AWS::Events::EventBusPolicy"))
    statement = policy["Properties"]["Statement"]
    assert statement["Action"] == "events:PutEvents"
    assert "111122223333" in json.dumps(statement["Principal"])


def test_every_rule_target_has_a_dlq_and_an_explicit_retry_policy():
    stack, bus = _bus()
    bus.add_rule("Inventory", event_pattern=PATTERN, target=SecureQueue(stack, "Work"), max_event_age=Duration.minutes(30), retry_attempts=4)
    (_, rule) = only(resources(stack, "AWS::Events::Rule"))
    (target,) = rule["Properties"]["Targets"]
    assert target["RetryPolicy"] == {"MaximumEventAgeInSeconds": 1800, "MaximumRetryAttempts": 4}
    dlq_id = stack.get_logical_id(bus.rule_dead_letter_queues[0].node.default_child)
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [dlq_id, "Arn"]}}


def test_rule_defaults_are_two_hours_and_ten_attempts():
    stack, bus = _bus()
    bus.add_rule("Inventory", event_pattern=PATTERN, target=SecureQueue(stack, "Work"))
    (_, rule) = only(resources(stack, "AWS::Events::Rule"))
    assert rule["Properties"]["Targets"][0]["RetryPolicy"] == {"MaximumEventAgeInSeconds": 7200, "MaximumRetryAttempts": 10}


def test_queue_target_admits_only_its_rule_and_the_key_gets_no_unconditioned_statement():
    stack, bus = _bus()
    work = SecureQueue(stack, "Work", encryption_key=bus.key)
    rule = bus.add_rule("Inventory", event_pattern=PATTERN, target=work)
    rule_id = stack.get_logical_id(rule.node.default_child)
    policy = resources(stack, "AWS::SQS::QueuePolicy")[stack.get_logical_id(work.queue.node.find_child("Policy").node.default_child)]
    allow = [s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"]
    assert allow == [
        {
            "Action": "sqs:SendMessage",
            "Condition": {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": [rule_id, "Arn"]}}},
            "Effect": "Allow",
            "Principal": {"Service": "events.amazonaws.com"},
            "Resource": {"Fn::GetAtt": [stack.get_logical_id(work.queue.node.default_child), "Arn"]},
        }
    ]
    assert all(
        "Condition" in s for s in _key_statements(stack) if s.get("Principal", {}).get("Service") == "events.amazonaws.com" and s["Action"] != "kms:DescribeKey"
    )


def test_rule_alarms_on_failed_and_dead_lettered_invocations():
    stack, bus = _bus()
    bus.add_rule("Inventory", event_pattern=PATTERN, target=SecureQueue(stack, "Work"))
    names = {a["Properties"]["MetricName"] for a in resources(stack, "AWS::CloudWatch::Alarm").values() if a["Properties"].get("Namespace") == "AWS/Events"}
    assert names == {"FailedInvocations", "InvocationsSentToDlq", "InvocationsFailedToBeSentToDlq"}


def test_rule_metrics_carry_the_bus_name_and_the_rules_plain_name():
    """Rules of a custom bus publish under EventBusName and RuleName; the rule's Ref is ``bus|rule``, not its name."""
    stack, bus = _bus()
    rule = bus.add_rule("Inventory", event_pattern=PATTERN, target=SecureQueue(stack, "Work"))
    bus_id, rule_id = stack.get_logical_id(bus.bus.node.default_child), stack.get_logical_id(rule.node.default_child)
    expected = [
        {"Name": "EventBusName", "Value": {"Ref": bus_id}},
        {"Name": "RuleName", "Value": {"Fn::Select": [2, {"Fn::Split": ["/", {"Fn::GetAtt": [rule_id, "Arn"]}]}]}},
    ]
    alarms = [a["Properties"] for a in resources(stack, "AWS::CloudWatch::Alarm").values() if a["Properties"].get("Namespace") == "AWS/Events"]
    assert len(alarms) == 3
    assert all(sorted(a["Dimensions"], key=lambda d: d["Name"]) == expected for a in alarms)
    widget_metric = stack.resolve(bus.metric_rule(rule, "MatchedEvents").to_metric_config().metric_stat.dimensions)
    assert sorted(widget_metric, key=lambda d: d["name"]) == [{"name": d["Name"], "value": d["Value"]} for d in expected]


def test_schemas_go_to_one_registry():
    stack, bus = _bus()
    bus.add_schema("blueprints.orders@OrderPlaced.v1", '{"type": "object"}')
    bus.add_schema("blueprints.orders@OrderPlaced.v2", '{"type": "object"}')
    only(resources(stack, "AWS::EventSchemas::Registry"))
    schemas = resources(stack, "AWS::EventSchemas::Schema").values()
    assert sorted(s["Properties"]["SchemaName"] for s in schemas) == ["blueprints.orders@OrderPlaced.v1", "blueprints.orders@OrderPlaced.v2"]
    assert {s["Properties"]["Type"] for s in schemas} == {"JSONSchemaDraft4"}


def test_grant_put_events_names_the_bus_only():
    from aws_cdk import aws_iam as iam

    stack, bus = _bus()
    role = iam.Role(stack, "Producer", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
    bus.grant_put_events(role)
    (_, policy) = only(resources(stack, "AWS::IAM::Policy"))
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Action"] == "events:PutEvents"
    assert statement["Resource"] == {"Fn::GetAtt": [stack.get_logical_id(bus.bus.node.default_child), "Arn"]}


def test_fails_when_schema_discovery_is_asked_for_on_an_encrypted_bus():
    with pytest.raises(ValueError, match="schema_discovery is not supported by EventBridge on a bus encrypted with a customer-managed key"):
        _bus(schema_discovery=True)


def test_fails_when_retry_policy_is_out_of_range():
    stack, bus = _bus()
    with pytest.raises(ValueError, match="retry_attempts must be between 0 and 185, got 200"):
        bus.add_rule("A", event_pattern=PATTERN, target=SecureQueue(stack, "A"), retry_attempts=200)
    with pytest.raises(ValueError, match="max_event_age must be between 1 minute and 1 day, got 2 days"):
        bus.add_rule("B", event_pattern=PATTERN, target=SecureQueue(stack, "B"), max_event_age=Duration.days(2))


def test_fails_when_a_fifo_queue_target_has_no_message_group():
    stack, bus = _bus()
    with pytest.raises(ValueError, match="a FIFO queue target needs a message_group_id"):
        bus.add_rule("A", event_pattern=PATTERN, target=SecureQueue(stack, "A", fifo=True))


def test_fails_when_archive_retention_is_out_of_range():
    with pytest.raises(ValueError, match="archive retention must be between 1 day and 3650 days, got 12 hours"):
        _bus(archive_retention=Duration.hours(12))
