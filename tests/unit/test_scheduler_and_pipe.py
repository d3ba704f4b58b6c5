"""ScheduleGroup and EventPipe: every promise on the synthesized template, and every validation."""

from __future__ import annotations

import json

import pytest
from aws_cdk import Duration
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_scheduler as scheduler

from messaging_constructs import EventBus, EventPipe, ScheduleGroup, SecureQueue
from tests.unit.helpers import new_stack, only, resources

DAILY = scheduler.ScheduleExpression.cron(minute="0", hour="6")


def _actions(policy: dict) -> set[str]:
    return {a for s in policy["Properties"]["PolicyDocument"]["Statement"] for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}


def _group():
    stack = new_stack()
    bus = EventBus(stack, "Bus")
    return stack, bus, ScheduleGroup(stack, "Schedules", encryption_key=bus.key)


def test_schedule_puts_an_event_on_the_bus_encrypted_with_dlq_and_retry_policy():
    stack, bus, group = _group()
    group.put_event("Daily", schedule=DAILY, bus=bus, source="blueprints.scheduler", detail_type="DailyReportRequested", detail={"version": 1})
    (_, schedule) = only(resources(stack, "AWS::Scheduler::Schedule"))
    props = schedule["Properties"]
    assert props["ScheduleExpression"] == "cron(0 6 * * ? *)"
    assert "KmsKeyArn" in props
    target = props["Target"]
    assert target["RetryPolicy"] == {"MaximumEventAgeInSeconds": 3600, "MaximumRetryAttempts": 5}
    dlq_id = stack.get_logical_id(group.dead_letter_queue.node.default_child)
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [dlq_id, "Arn"]}}
    assert target["EventBridgeParameters"] == {"DetailType": "DailyReportRequested", "Source": "blueprints.scheduler"}
    assert json.loads(target["Input"]) == {"version": 1}


def test_schedule_role_may_put_on_the_bus_and_send_to_its_dlq_only():
    stack, bus, group = _group()
    group.put_event("Daily", schedule=DAILY, bus=bus, source="blueprints.scheduler", detail_type="D", detail={"version": 1})
    policy = resources(stack, "AWS::IAM::ManagedPolicy")[stack.get_logical_id(group.role.policy.node.default_child)]
    assert _actions(policy) == {"events:PutEvents", "sqs:SendMessage", "kms:GenerateDataKey", "kms:Decrypt"}
    (_, role) = only(resources(stack, "AWS::IAM::Role"))
    assert role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}


def test_schedule_can_send_to_a_queue_with_exact_grants():
    stack, bus, group = _group()
    queue = SecureQueue(stack, "Work", encryption_key=bus.key)
    group.send_message("Tick", schedule=scheduler.ScheduleExpression.rate(Duration.hours(1)), queue=queue, message={"kind": "tick"})
    policy = resources(stack, "AWS::IAM::ManagedPolicy")[stack.get_logical_id(group.role.policy.node.default_child)]
    assert not any(a.endswith("*") for a in _actions(policy))


def test_schedule_group_alarms_on_target_errors_drops_and_lost_dead_letters():
    stack, bus, group = _group()
    names = {a["Properties"]["MetricName"] for a in resources(stack, "AWS::CloudWatch::Alarm").values() if a["Properties"].get("Namespace") == "AWS/Scheduler"}
    assert names == {"TargetErrorCount", "InvocationDroppedCount", "InvocationsFailedToBeSentToDeadLetterCount"}


def test_fails_when_a_schedule_source_is_reserved_for_aws():
    stack, bus, group = _group()
    with pytest.raises(ValueError, match="source must not start with 'aws.'"):
        group.put_event("Daily", schedule=DAILY, bus=bus, source="aws.events", detail_type="D", detail={})


def _pipe(**props):
    stack = new_stack()
    bus = EventBus(stack, "Bus")
    source = props.pop("source", None) or SecureQueue(stack, "Work", encryption_key=bus.key)
    pipe = EventPipe(stack, "Pipe", source=source, target=props.pop("target", bus), encryption_key=bus.key, **props)
    return stack, bus, pipe


def test_pipe_from_queue_to_bus_with_filter_and_template():
    stack, bus, pipe = _pipe(
        filter_patterns=[{"body": {"kind": ["restock"]}}], input_template="<$.body>", event_source="blueprints.warehouse", detail_type="RestockRequested"
    )
    (_, resource) = only(resources(stack, "AWS::Pipes::Pipe"))
    props = resource["Properties"]
    assert json.loads(props["SourceParameters"]["FilterCriteria"]["Filters"][0]["Pattern"]) == {"body": {"kind": ["restock"]}}
    assert props["TargetParameters"]["EventBridgeEventBusParameters"] == {"DetailType": "RestockRequested", "Source": "blueprints.warehouse"}
    assert props["TargetParameters"]["InputTemplate"] == "<$.body>"
    assert props["LogConfiguration"]["Level"] == "ERROR"


def test_pipe_role_holds_exactly_the_source_and_target_actions():
    stack, bus, pipe = _pipe()
    policy = resources(stack, "AWS::IAM::ManagedPolicy")[stack.get_logical_id(pipe.role.policy.node.default_child)]
    assert _actions(policy) == {
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "sqs:ReceiveMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueUrl",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
        "kms:Decrypt",
        "events:PutEvents",
    }


def test_pipe_logs_to_an_encrypted_group_and_alarms_on_failures():
    stack, bus, pipe = _pipe()
    group = resources(stack, "AWS::Logs::LogGroup")[stack.get_logical_id(pipe.log_group.node.default_child)]
    assert "KmsKeyId" in group["Properties"] and group["Properties"]["RetentionInDays"] == 7
    names = {
        a["Properties"]["MetricName"]
        for a in resources(stack, "AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("Namespace") == "AWS/EventBridge/Pipes"
    }
    assert names == {"ExecutionFailed"}


def test_stream_source_bisects_retries_and_dead_letters():
    stack = new_stack()
    bus = EventBus(stack, "Bus")
    table = dynamodb.Table(
        stack,
        "Table",
        partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
        stream=dynamodb.StreamViewType.NEW_IMAGE,
    )
    pipe = EventPipe(stack, "Pipe", source=table, target=bus, encryption_key=bus.key, batch_size=100)
    (_, resource) = only(resources(stack, "AWS::Pipes::Pipe"))
    params = resource["Properties"]["SourceParameters"]["DynamoDBStreamParameters"]
    assert params["OnPartialBatchItemFailure"] == "AUTOMATIC_BISECT"
    assert params["MaximumRetryAttempts"] == 3 and params["MaximumRecordAgeInSeconds"] == 3600
    assert params["DeadLetterConfig"]["Arn"] == {"Fn::GetAtt": [stack.get_logical_id(pipe.dead_letter_queue.node.default_child), "Arn"]}


def test_fails_when_sqs_batch_size_is_above_10():
    with pytest.raises(ValueError, match="batch_size must be between 1 and 10, got 11"):
        _pipe(batch_size=11)


def test_fails_when_log_level_is_unknown():
    with pytest.raises(ValueError, match="log_level must be ERROR, INFO or TRACE, got 'DEBUG'"):
        _pipe(log_level="DEBUG")
