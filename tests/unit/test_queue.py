"""SecureQueue: every promise on the synthesized template, and every validation."""

from __future__ import annotations

import json

import pytest
from aws_cdk import CfnParameter, Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from aws_cdk.assertions import Capture, Match

from messaging_constructs import SecureQueue
from tests.unit.helpers import evaluate, new_stack, only, resources, template

TLS_DENY = Match.object_like({"Effect": "Deny", "Action": "sqs:*", "Condition": {"Bool": {"aws:SecureTransport": "false"}}})


def _queue(profile: str = "sandbox", **props):
    stack = new_stack(profile)
    return stack, SecureQueue(stack, "Orders", **props)


def _source_and_dlq(stack):
    queues = resources(stack, "AWS::SQS::Queue")
    source = next(v for v in queues.values() if "RedrivePolicy" in v["Properties"])
    dlq = next(v for v in queues.values() if "RedriveAllowPolicy" in v["Properties"])
    return source, dlq


def test_queue_and_dlq_are_encrypted_with_a_rotating_cmk():
    stack, queue = _queue()
    key_id = Capture()
    template(stack).all_resources_properties("AWS::SQS::Queue", {"KmsMasterKeyId": {"Fn::GetAtt": [key_id, "Arn"]}})
    assert resources(stack, "AWS::KMS::Key")[key_id.as_string()]["Properties"]["EnableKeyRotation"] is True


def test_queue_and_dlq_deny_requests_without_tls():
    stack, _ = _queue()
    policies = resources(stack, "AWS::SQS::QueuePolicy")
    assert len(policies) == 2
    template(stack).all_resources_properties("AWS::SQS::QueuePolicy", {"PolicyDocument": {"Statement": Match.array_with([TLS_DENY])}})


def test_source_redrives_to_its_dlq_after_five_receives_by_default():
    stack, _ = _queue()
    dlq_id = Capture()
    template(stack).has_resource_properties(
        "AWS::SQS::Queue",
        {"RedrivePolicy": {"deadLetterTargetArn": {"Fn::GetAtt": [dlq_id, "Arn"]}, "maxReceiveCount": 5}},
    )
    assert "RedriveAllowPolicy" in resources(stack, "AWS::SQS::Queue")[dlq_id.as_string()]["Properties"]


def test_max_receive_count_is_configurable():
    stack, _ = _queue(max_receive_count=3)
    template(stack).has_resource_properties("AWS::SQS::Queue", {"RedrivePolicy": Match.object_like({"maxReceiveCount": 3})})


def test_dlq_keeps_messages_longer_than_the_source():
    stack, _ = _queue()
    source, dlq = _source_and_dlq(stack)
    assert source["Properties"]["MessageRetentionPeriod"] == 4 * 86400
    assert dlq["Properties"]["MessageRetentionPeriod"] == 14 * 86400


def test_only_the_source_may_redrive_into_the_dlq():
    stack, queue = _queue()
    source, dlq = _source_and_dlq(stack)
    allow = dlq["Properties"]["RedriveAllowPolicy"]
    assert allow["redrivePermission"] == "byQueue"
    (arn,) = allow["sourceQueueArns"]
    assert evaluate(arn) == f"arn:aws:sqs:ap-southeast-5:123456789012:{evaluate(source['Properties']['QueueName'])}"


def test_fifo_queue_gets_a_fifo_dlq_and_high_throughput_settings():
    stack, _ = _queue(fifo=True, content_based_deduplication=True, high_throughput=True)
    source, dlq = _source_and_dlq(stack)
    assert source["Properties"]["FifoQueue"] is True and dlq["Properties"]["FifoQueue"] is True
    assert evaluate(source["Properties"]["QueueName"]).endswith(".fifo") and evaluate(dlq["Properties"]["QueueName"]).endswith("-dlq.fifo")
    assert source["Properties"]["ContentBasedDeduplication"] is True
    assert source["Properties"]["DeduplicationScope"] == "messageGroup"
    assert source["Properties"]["FifoThroughputLimit"] == "perMessageGroupId"


@pytest.mark.parametrize("terminal", [False, True])
def test_queue_names_are_new_for_every_creation_of_the_stack(terminal):
    """SQS refuses a deleted queue's name for 60 seconds: destroy then deploy must not ask for the same names."""
    stack, _ = _queue(terminal=terminal)
    names = [q["Properties"]["QueueName"] for q in resources(stack, "AWS::SQS::Queue").values()]
    first = [evaluate(n) for n in names]
    again = [evaluate(n, {"AWS::StackId": "arn:aws:cloudformation:ap-southeast-5:123456789012:stack/Test/77a0e1b0-982b-11e3-8a9b-0a1b2c3d4e5f"}) for n in names]
    assert all("-50e2416294e0" in name for name in first)
    assert not set(first) & set(again)


def test_a_chosen_name_is_kept_and_its_dlq_follows_it():
    stack, _ = _queue(queue_name="orders", fifo=True)
    source, dlq = _source_and_dlq(stack)
    assert (source["Properties"]["QueueName"], dlq["Properties"]["QueueName"]) == ("orders.fifo", "orders-dlq.fifo")


def test_visibility_timeout_defaults_to_six_times_the_consumer_timeout():
    stack, _ = _queue(consumer_timeout=Duration.seconds(20))
    source, _ = _source_and_dlq(stack)
    assert source["Properties"]["VisibilityTimeout"] == 120


def test_alarms_on_dlq_messages_and_on_age_of_oldest_message():
    stack, queue = _queue(age_alarm_threshold=Duration.minutes(5))
    alarms = {a["Properties"]["MetricName"]: a["Properties"] for a in resources(stack, "AWS::CloudWatch::Alarm").values()}
    assert alarms["ApproximateNumberOfMessagesVisible"]["Threshold"] == 1
    assert alarms["ApproximateNumberOfMessagesVisible"]["Dimensions"][0]["Value"] == {
        "Fn::GetAtt": [stack.get_logical_id(queue.dead_letter_queue.node.default_child), "QueueName"]
    }
    assert alarms["ApproximateAgeOfOldestMessage"]["Threshold"] == 300
    assert alarms["ApproximateAgeOfOldestMessage"]["Statistic"] == "Maximum"


def test_alarms_notify_the_alarm_topic_on_alarm_and_recovery():
    stack = new_stack()
    topic = sns.Topic(stack, "Alarms")
    SecureQueue(stack, "Orders", alarm_topic=topic)
    template(stack).all_resources_properties(
        "AWS::CloudWatch::Alarm",
        {"AlarmActions": [{"Ref": Match.string_like_regexp("Alarms")}], "OKActions": [{"Ref": Match.string_like_regexp("Alarms")}]},
    )


def test_terminal_queue_has_no_dlq_keeps_14_days_and_alarms_on_any_message():
    stack, queue = _queue(terminal=True)
    _, props = only(resources(stack, "AWS::SQS::Queue"))
    assert "RedrivePolicy" not in props["Properties"]
    assert props["Properties"]["MessageRetentionPeriod"] == 14 * 86400
    _, alarm = only(resources(stack, "AWS::CloudWatch::Alarm"))
    assert alarm["Properties"]["MetricName"] == "ApproximateNumberOfMessagesVisible" and alarm["Properties"]["Threshold"] == 1
    assert queue.terminal and queue.dead_letter_queue is None


def test_dead_letter_alarm_threshold_is_a_prop():
    stack, _ = _queue(dead_letter_alarm_threshold=10)
    alarms = {a["Properties"]["MetricName"]: a["Properties"] for a in resources(stack, "AWS::CloudWatch::Alarm").values()}
    assert alarms["ApproximateNumberOfMessagesVisible"]["Threshold"] == 10


def test_a_given_dead_letter_queue_is_used_as_it_is():
    """A shared terminal queue as the DLQ of two queues: each redrives to it, and it alarms once, on its own."""
    stack = new_stack()
    shared = SecureQueue(stack, "Shared", terminal=True)
    a = SecureQueue(stack, "A", dead_letter_queue=shared, max_receive_count=3)
    b = SecureQueue(stack, "B", dead_letter_queue=shared.queue)
    shared_id = stack.get_logical_id(shared.queue.node.default_child)
    queues = resources(stack, "AWS::SQS::Queue")
    assert len(queues) == 3
    for queue, count in ((a, 3), (b, 5)):
        assert queue.dead_letter_queue is shared.queue
        redrive = queues[stack.get_logical_id(queue.queue.node.default_child)]["Properties"]["RedrivePolicy"]
        assert redrive == {"deadLetterTargetArn": {"Fn::GetAtt": [shared_id, "Arn"]}, "maxReceiveCount": count}
    not_empty = [x for x in resources(stack, "AWS::CloudWatch::Alarm").values() if x["Properties"]["MetricName"] == "ApproximateNumberOfMessagesVisible"]
    assert len(not_empty) == 1


def test_an_imported_queue_can_be_the_dead_letter_queue():
    stack = new_stack()
    imported = sqs.Queue.from_queue_arn(stack, "Imported", "arn:aws:sqs:us-east-1:123456789012:shared-dlq")
    queue = SecureQueue(stack, "A", dead_letter_queue=imported)
    _, source = only(resources(stack, "AWS::SQS::Queue"))
    assert source["Properties"]["RedrivePolicy"]["deadLetterTargetArn"] == "arn:aws:sqs:us-east-1:123456789012:shared-dlq"
    assert queue.dead_letter_queue is imported


def test_fails_when_dead_letter_queue_is_a_flag():
    with pytest.raises(ValueError, match="dead_letter_queue takes a queue or None, got False: .*terminal=True"):
        _queue(dead_letter_queue=False)


def test_fails_when_a_terminal_queue_is_given_a_dead_letter_queue():
    stack = new_stack()
    with pytest.raises(ValueError, match="a terminal queue has no dead-letter queue of its own"):
        SecureQueue(stack, "A", terminal=True, dead_letter_queue=SecureQueue(stack, "B", terminal=True))


def test_fails_when_the_dead_letter_queue_is_of_the_other_type():
    stack = new_stack()
    with pytest.raises(ValueError, match="a FIFO queue needs a FIFO dead-letter queue"):
        SecureQueue(stack, "A", fifo=True, dead_letter_queue=SecureQueue(stack, "B", terminal=True))


def _granted(stack) -> set[str]:
    _, policy = only(resources(stack, "AWS::IAM::Policy"))
    return {a for s in policy["Properties"]["PolicyDocument"]["Statement"] for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}


def test_grant_send_names_exactly_what_aws_documents_for_a_producer():
    """sqs:SendMessage; kms:GenerateDataKey and kms:Decrypt (SQS key management, "Configure KMS permissions for producers")."""
    stack, queue = _queue()
    role = iam.Role(stack, "Producer", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
    grant = queue.grant_send_messages(role)
    assert isinstance(grant, iam.Grant) and grant.success
    assert _granted(stack) == {"sqs:SendMessage", "kms:GenerateDataKey", "kms:Decrypt"}
    _, policy = only(resources(stack, "AWS::IAM::Policy"))
    resources_by_action = {json.dumps(s["Action"]): s["Resource"] for s in policy["Properties"]["PolicyDocument"]["Statement"]}
    assert resources_by_action['"sqs:SendMessage"'] == {"Fn::GetAtt": [stack.get_logical_id(queue.queue.node.default_child), "Arn"]}
    assert resources_by_action['["kms:GenerateDataKey", "kms:Decrypt"]'] == {"Fn::GetAtt": [stack.get_logical_id(queue.key.node.default_child), "Arn"]}


@pytest.mark.parametrize("method", ["grant_send_messages", "grant_consume_messages", "grant_redrive"])
def test_every_grant_returns_an_iam_grant(method):
    stack, queue = _queue()
    role = iam.Role(stack, "Principal", assumed_by=iam.AccountRootPrincipal())
    assert isinstance(getattr(queue, method)(role), iam.Grant)


def test_grant_consume_names_exact_actions_and_key_decrypt():
    stack, queue = _queue()
    role = iam.Role(stack, "Consumer", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
    queue.grant_consume_messages(role)
    _, policy = only(resources(stack, "AWS::IAM::Policy"))
    actions = {a for s in policy["Properties"]["PolicyDocument"]["Statement"] for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert actions == {
        "sqs:ReceiveMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueUrl",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
        "kms:Decrypt",
    }


def test_grant_redrive_allows_message_move_tasks_on_the_dlq_only():
    stack, queue = _queue()
    role = iam.Role(stack, "Operator", assumed_by=iam.AccountRootPrincipal())
    queue.grant_redrive(role)
    _, policy = only(resources(stack, "AWS::IAM::Policy"))
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    move = next(s for s in statements if "sqs:StartMessageMoveTask" in s["Action"])
    assert move["Resource"] == {"Fn::GetAtt": [stack.get_logical_id(queue.dead_letter_queue.node.default_child), "Arn"]}
    assert not any(a.endswith("*") for a in _granted(stack))


@pytest.mark.parametrize(("profile", "policy"), [("sandbox", "Delete"), ("production", "Retain")])
def test_removal_policy_follows_the_profile(profile, policy):
    stack, _ = _queue(profile)
    for queue in resources(stack, "AWS::SQS::Queue").values():
        assert queue["DeletionPolicy"] == policy


def test_fails_when_visibility_timeout_is_under_six_times_the_consumer_timeout():
    with pytest.raises(ValueError, match=r"at least 6 times the consumer timeout \(180 s\), got 60 s"):
        _queue(visibility_timeout=Duration.seconds(60), consumer_timeout=Duration.seconds(30))


def test_fails_when_max_receive_count_is_out_of_range():
    with pytest.raises(ValueError, match="max_receive_count must be between 1 and 1000, got 0"):
        _queue(max_receive_count=0)


def test_fails_when_source_retention_is_not_shorter_than_the_dlq_retention():
    with pytest.raises(ValueError, match="retention period must be between 1 minute and 13 days, got 14 days"):
        _queue(retention_period=Duration.days(14))


def test_fails_when_fifo_options_are_used_on_a_standard_queue():
    with pytest.raises(ValueError, match="content_based_deduplication needs fifo=True"):
        _queue(content_based_deduplication=True)
    with pytest.raises(ValueError, match="high_throughput needs fifo=True"):
        _queue(high_throughput=True)


def test_fails_when_queue_name_is_too_long():
    with pytest.raises(ValueError, match="queue name must be at most 80 characters"):
        _queue(queue_name="q" * 81)


def test_unresolved_tokens_are_not_validated():
    stack = new_stack()
    count = CfnParameter(stack, "MaxReceiveCount", type="Number").value_as_number
    SecureQueue(stack, "Orders", max_receive_count=count)
    template(stack).has_resource_properties("AWS::SQS::Queue", {"RedrivePolicy": Match.object_like({"maxReceiveCount": {"Ref": "MaxReceiveCount"}})})
