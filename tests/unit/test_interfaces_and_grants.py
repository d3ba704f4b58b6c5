"""The adapter (wrappers or CDK interfaces, imported ones too) and the one way of granting "send to an encrypted queue"."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from aws_cdk import Duration
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs

from messaging_constructs import (
    AlarmTopic,
    EncryptionKey,
    EventBus,
    EventPipe,
    HandlerFunction,
    QueueEventSource,
    ScheduleGroup,
    SecureQueue,
    SecureTopic,
)
from messaging_constructs._interfaces import fifo_of, function_of, key_of, queue_key_of, queue_of, role_of, timeout_of, topic_of, visibility_timeout_of
from tests.unit.helpers import actions, new_stack, only, resources, statements

QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:imported"
FIFO_QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:imported.fifo"
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:imported"
BUS_ARN = "arn:aws:events:us-east-1:123456789012:event-bus/imported"
KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
PATTERN = events.EventPattern(source=["blueprints.orders"])
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def code(tmp_path_factory):
    folder = tmp_path_factory.mktemp("handler")
    (folder / "handler.py").write_text("def lambda_handler(event, context):\n    return event\n")
    return str(folder)


def _stack_in_the_account():
    """Imported resources of the stack's own account and region: CDK then adds the resource policies they need (a function's permission)."""
    from aws_cdk import App, Environment, Stack

    return Stack(App(context={"profile": "sandbox"}), "Test", env=Environment(account="123456789012", region="us-east-1"))


def _imported_queue(stack, arn: str = QUEUE_ARN, construct_id: str = "ImportedQueue") -> sqs.IQueue:
    return sqs.Queue.from_queue_arn(stack, construct_id, arn)


def _imported_function(stack) -> lambda_.IFunction:
    return lambda_.Function.from_function_arn(stack, "ImportedFunction", FUNCTION_ARN)


def _all_actions(policy: dict) -> set[str]:
    return {a for s in policy["Properties"]["PolicyDocument"]["Statement"] for a in actions(s)}


# --- the adapter ---------------------------------------------------------------


def test_the_adapter_hands_out_the_interface_of_a_wrapper_and_passes_an_interface_through(code):
    stack = new_stack()
    queue, imported = SecureQueue(stack, "Queue", fifo=True), _imported_queue(stack, FIFO_QUEUE_ARN)
    topic, function = SecureTopic(stack, "Topic"), HandlerFunction(stack, "Function", code_path=code, service_name="fn")
    key = EncryptionKey(stack, "Key")
    assert queue_of(queue) is queue.queue and queue_of(imported) is imported
    assert fifo_of(queue) and fifo_of(imported) and not fifo_of(_imported_queue(stack, QUEUE_ARN, "Standard"))
    assert queue_key_of(queue) is queue.key and queue_key_of(imported) is None
    assert visibility_timeout_of(queue) is queue.visibility_timeout and visibility_timeout_of(imported) is None
    assert topic_of(topic) is topic.topic and function_of(function) is function.function and key_of(key) is key.key
    assert timeout_of(function).to_seconds() == 30 and timeout_of(_imported_function(stack)) is None
    assert role_of(function, "test") is function.role


@pytest.mark.parametrize(
    ("adapter", "message"),
    [
        (queue_of, "expected a SecureQueue or an sqs.IQueue, got str"),
        (topic_of, "expected a SecureTopic, an AlarmTopic or an sns.ITopic, got str"),
        (function_of, "expected a HandlerFunction or a lambda_.IFunction, got str"),
        (key_of, "expected an EncryptionKey or a kms.IKey, got str"),
    ],
)
def test_fails_when_the_adapter_is_given_something_else(adapter, message):
    with pytest.raises(ValueError, match=message):
        adapter("arn:aws:sqs:us-east-1:123456789012:a string is not a queue")


def test_no_isinstance_ladder_is_left_in_the_constructs():
    """Only the adapter tells the library's wrappers from the CDK interfaces; other isinstance calls are genuine type checks."""
    wrappers = re.compile(r"isinstance\([^)]*\b(SecureQueue|SecureTopic|HandlerFunction|EventBus|EncryptionKey|AlarmTopic)\b")
    found = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "messaging_constructs").rglob("*.py")
        if path.name != "_interfaces.py"
        for line in path.read_text().splitlines()
        if wrappers.search(line)
    ]
    # The one left is a lookup of the stack's shared handler by construct id, not a choice between types.
    assert found == ["messaging_constructs/service_log_groups.py"]


def test_keys_and_alarm_topics_may_be_wrappers_or_interfaces():
    stack = new_stack()
    key = EncryptionKey(stack, "Key")
    alarms = AlarmTopic(stack, "Alarms", encryption_key=key.key)
    SecureQueue(stack, "A", encryption_key=key, alarm_topic=alarms)
    SecureQueue(
        stack,
        "B",
        encryption_key=kms.Key.from_key_arn(stack, "Imported", KEY_ARN),
        alarm_topic=sns.Topic.from_topic_arn(stack, "Topic", "arn:aws:sns:us-east-1:123456789012:alarms"),
    )
    assert len(resources(stack, "AWS::KMS::Key")) == 1
    actions_ = [a["Properties"]["AlarmActions"] for a in resources(stack, "AWS::CloudWatch::Alarm").values()]
    assert sorted(json.dumps(a) for a in actions_) == sorted(
        [json.dumps([{"Ref": stack.get_logical_id(alarms.topic.node.default_child)}])] * 2 + ['["arn:aws:sns:us-east-1:123456789012:alarms"]'] * 2
    )


# --- imported resources ----------------------------------------------------------


def test_an_imported_queue_is_a_rule_target():
    stack = _stack_in_the_account()
    bus = EventBus(stack, "Bus")
    bus.add_rule("Imported", event_pattern=PATTERN, target=_imported_queue(stack))
    (_, rule) = only(resources(stack, "AWS::Events::Rule"))
    (target,) = rule["Properties"]["Targets"]
    assert target["Arn"] == QUEUE_ARN and "DeadLetterConfig" in target and "RetryPolicy" in target
    # An imported queue's policy is not this stack's to change: nothing but the bus DLQ's and the rule DLQ's policies.
    assert len(resources(stack, "AWS::SQS::QueuePolicy")) == 2


def test_an_imported_function_is_a_rule_target_through_its_resource_policy():
    stack = _stack_in_the_account()
    bus = EventBus(stack, "Bus")
    rule = bus.add_rule("Imported", event_pattern=PATTERN, target=_imported_function(stack))
    (_, resource) = only(resources(stack, "AWS::Events::Rule"))
    assert resource["Properties"]["Targets"][0]["Arn"] == FUNCTION_ARN
    (_, permission) = only(resources(stack, "AWS::Lambda::Permission"))
    assert permission["Properties"]["FunctionName"] == FUNCTION_ARN
    assert permission["Properties"]["SourceArn"] == {"Fn::GetAtt": [stack.get_logical_id(rule.node.default_child), "Arn"]}


def test_imported_queues_are_pipe_source_and_target_and_an_imported_function_enriches():
    stack = _stack_in_the_account()
    source = _imported_queue(stack, "arn:aws:sqs:us-east-1:123456789012:source", "Source")
    target = sqs.Queue.from_queue_attributes(stack, "Target", queue_arn="arn:aws:sqs:us-east-1:123456789012:target", key_arn=KEY_ARN)
    pipe = EventPipe(stack, "Pipe", source=source, target=target, enrichment=_imported_function(stack))
    (_, resource) = only(resources(stack, "AWS::Pipes::Pipe"))
    props = resource["Properties"]
    assert (props["Source"], props["Target"], props["Enrichment"]) == (
        "arn:aws:sqs:us-east-1:123456789012:source",
        "arn:aws:sqs:us-east-1:123456789012:target",
        FUNCTION_ARN,
    )
    policy = resources(stack, "AWS::IAM::ManagedPolicy")[stack.get_logical_id(pipe.role.policy.node.default_child)]
    granted = {json.dumps(s["Resource"]): sorted(actions(s)) for s in policy["Properties"]["PolicyDocument"]["Statement"]}
    assert granted['"arn:aws:sqs:us-east-1:123456789012:target"'] == ["sqs:SendMessage"]
    assert granted[json.dumps(KEY_ARN)] == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert "sqs:ReceiveMessage" in granted['"arn:aws:sqs:us-east-1:123456789012:source"']
    # The function itself, not every version and alias of it (``<arn>:*``).
    assert granted[json.dumps(FUNCTION_ARN)] == ["lambda:InvokeFunction"]


def test_an_imported_bus_is_a_pipe_target_and_a_schedule_target():
    stack = new_stack()
    bus = events.EventBus.from_event_bus_arn(stack, "Bus", BUS_ARN)
    table = dynamodb.Table.from_table_attributes(
        stack, "Table", table_arn="arn:aws:dynamodb:us-east-1:123456789012:table/t", table_stream_arn="arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/1"
    )
    EventPipe(stack, "Pipe", source=table, target=bus, event_source="blueprints.pipe")
    group = ScheduleGroup(stack, "Schedules")
    group.put_event("Daily", schedule=scheduler.ScheduleExpression.rate(Duration.days(1)), bus=bus, source="blueprints.scheduler", detail_type="D", detail={})
    puts = [s for s in statements(stack) if "events:PutEvents" in actions(s)]
    assert {s["Resource"] for s in puts} == {BUS_ARN} and len(puts) == 2


def test_an_imported_queue_is_a_schedule_target_with_the_exact_send_grant():
    stack = new_stack()
    group = ScheduleGroup(stack, "Schedules")
    queue = sqs.Queue.from_queue_attributes(stack, "Target", queue_arn="arn:aws:sqs:us-east-1:123456789012:target", key_arn=KEY_ARN)
    group.send_message("Tick", schedule=scheduler.ScheduleExpression.rate(Duration.hours(1)), queue=queue, message={"kind": "tick"})
    (_, schedule) = only(resources(stack, "AWS::Scheduler::Schedule"))
    assert schedule["Properties"]["Target"]["Arn"] == "arn:aws:sqs:us-east-1:123456789012:target"
    policy = resources(stack, "AWS::IAM::ManagedPolicy")[stack.get_logical_id(group.role.policy.node.default_child)]
    assert _all_actions(policy) == {"sqs:SendMessage", "kms:GenerateDataKey", "kms:Decrypt"}


def test_an_imported_queue_is_subscribed_and_its_fifo_is_read_from_its_arn():
    stack = new_stack()
    topic = SecureTopic(stack, "Topic", fifo=True)
    dlq = topic.subscribe_queue(_imported_queue(stack, FIFO_QUEUE_ARN))
    (_, subscription) = only(resources(stack, "AWS::SNS::Subscription"))
    assert subscription["Properties"]["Endpoint"] == FIFO_QUEUE_ARN
    assert subscription["Properties"]["RedrivePolicy"] == {"deadLetterTargetArn": {"Fn::GetAtt": [stack.get_logical_id(dlq.node.default_child), "Arn"]}}
    with pytest.raises(ValueError, match="a FIFO topic needs a FIFO queue"):
        topic.subscribe_queue(_imported_queue(stack, QUEUE_ARN, "Standard"))


def test_an_imported_function_consumes_an_imported_queue():
    stack = _stack_in_the_account()
    source = QueueEventSource(stack, "Source", consumer=_imported_function(stack), queue=_imported_queue(stack))
    (_, mapping) = only(resources(stack, "AWS::Lambda::EventSourceMapping"))
    assert (mapping["Properties"]["FunctionName"], mapping["Properties"]["EventSourceArn"]) == ("imported", QUEUE_ARN)
    assert mapping["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert source.mapping is not None


# --- "send to an encrypted queue", one way everywhere ----------------------------------

SEND = {"sqs:SendMessage", "kms:GenerateDataKey", "kms:Decrypt"}


def _send_statements(stack, queue: SecureQueue) -> set[str]:
    """Every action any policy grants on the queue or on its key."""
    queue_arn = {"Fn::GetAtt": [stack.get_logical_id(queue.queue.node.default_child), "Arn"]}
    key_arn = {"Fn::GetAtt": [stack.get_logical_id(queue.key.node.default_child), "Arn"]}
    granted = set()
    for policy in [*resources(stack, "AWS::IAM::ManagedPolicy").values(), *resources(stack, "AWS::IAM::Policy").values()]:
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            targets = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            if queue_arn in targets or key_arn in targets:
                granted.update(actions(statement))
    return granted


def test_a_principal_a_schedule_group_and_a_pipe_are_granted_the_same_exact_send(code):
    stack = new_stack()
    queue = SecureQueue(stack, "Target", encryption_key=EncryptionKey(stack, "QueueKey"))
    role = iam.Role(stack, "Producer", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
    queue.grant_send_messages(role)
    ScheduleGroup(stack, "Schedules").send_message("Tick", schedule=scheduler.ScheduleExpression.rate(Duration.hours(1)), queue=queue, message={})
    EventPipe(stack, "Pipe", source=SecureQueue(stack, "Source"), target=queue)
    assert _send_statements(stack, queue) == SEND


def test_a_functions_dead_letter_queue_is_granted_the_same_exact_send(code):
    stack = new_stack()
    queue = SecureQueue(stack, "Dlq", terminal=True, encryption_key=EncryptionKey(stack, "QueueKey"))
    HandlerFunction(stack, "Fn", code_path=code, service_name="fn", dead_letter_queue=queue)
    assert _send_statements(stack, queue) == SEND


def test_services_sending_to_a_queue_get_a_queue_policy_for_one_source_and_exact_key_actions():
    stack = new_stack()
    key = EncryptionKey(stack, "QueueKey")
    queue = SecureQueue(stack, "Target", encryption_key=key)
    SecureTopic(stack, "Topic").subscribe_queue(queue)
    statements_ = resources(stack, "AWS::KMS::Key")[stack.get_logical_id(key.key.node.default_child)]["Properties"]["KeyPolicy"]["Statement"]
    (sns_statement,) = [s for s in statements_ if s.get("Principal", {}).get("Service") == "sns.amazonaws.com"]
    assert sorted(sns_statement["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey"]
    policy = resources(stack, "AWS::SQS::QueuePolicy")[stack.get_logical_id(queue.queue.node.find_child("Policy").node.default_child)]
    (allow,) = [s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"]
    assert allow["Action"] == "sqs:SendMessage" and "aws:SourceArn" in allow["Condition"]["ArnEquals"]


def test_dead_letter_queue_is_a_queue_object_on_every_construct_that_has_one(code, tmp_path):
    """One type per name: an sqs.IQueue (or None for a terminal queue), never a bool, a name or a wrapper."""
    from messaging_constructs import EventStore, Projection

    (tmp_path / "handler.py").write_text("def lambda_handler(event, context):\n    return event\n")
    stack = new_stack()
    table = dynamodb.Table.from_table_attributes(
        stack, "Table", table_arn="arn:aws:dynamodb:us-east-1:123456789012:table/t", table_stream_arn="arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/1"
    )
    constructs = [
        SecureQueue(stack, "Queue"),
        HandlerFunction(stack, "Function", code_path=code, service_name="fn"),
        EventBus(stack, "Bus"),
        EventPipe(stack, "Pipe", source=table, target=_imported_queue(stack)),
        Projection(stack, "Projection", event_store=EventStore(stack, "Store"), code_path=str(tmp_path), service_name="projection"),
        ScheduleGroup(stack, "Schedules"),
    ]
    for construct in constructs:
        queue = construct.dead_letter_queue
        assert hasattr(queue, "queue_arn") and not isinstance(queue, SecureQueue), type(construct).__name__
    assert SecureQueue(stack, "Terminal", terminal=True).dead_letter_queue is None
