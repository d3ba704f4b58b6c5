"""SecureTopic: every promise on the synthesized template, and every validation."""

from __future__ import annotations

import pytest
from aws_cdk import aws_sns as sns
from aws_cdk.assertions import Capture, Match

from messaging_constructs import SecureQueue, SecureTopic
from tests.unit.helpers import new_stack, resources, template


def _topic(profile: str = "sandbox", **props):
    stack = new_stack(profile)
    return stack, SecureTopic(stack, "Orders", **props)


def test_topic_is_encrypted_with_a_rotating_cmk():
    stack, _ = _topic()
    key_id = Capture()
    template(stack).has_resource_properties("AWS::SNS::Topic", {"KmsMasterKeyId": {"Fn::GetAtt": [key_id, "Arn"]}})
    assert resources(stack, "AWS::KMS::Key")[key_id.as_string()]["Properties"]["EnableKeyRotation"] is True


def test_topic_policy_denies_publishing_without_tls():
    stack, _ = _topic()
    template(stack).has_resource_properties(
        "AWS::SNS::TopicPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Effect": "Deny",
                                "Action": "sns:Publish",
                                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                            }
                        )
                    ]
                )
            }
        },
    )


def test_every_subscription_gets_its_own_dead_letter_queue():
    stack, topic = _topic()
    a, b = SecureQueue(stack, "A"), SecureQueue(stack, "B")
    topic.subscribe_queue(a)
    topic.subscribe_queue(b)
    subscriptions = resources(stack, "AWS::SNS::Subscription")
    targets = {s["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0] for s in subscriptions.values()}
    assert len(subscriptions) == 2 and len(targets) == 2
    assert targets == {stack.get_logical_id(q.node.default_child) for q in topic.subscription_dead_letter_queues}


def test_subscription_dlq_alarms_on_any_message():
    stack, topic = _topic()
    dlq = topic.subscribe_queue(SecureQueue(stack, "A"))
    dimension = {"Fn::GetAtt": [stack.get_logical_id(dlq.node.default_child), "QueueName"]}
    template(stack).has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {"MetricName": "ApproximateNumberOfMessagesVisible", "Threshold": 1, "Dimensions": [{"Name": "QueueName", "Value": dimension}]},
    )


def test_attribute_filter_policy_and_raw_delivery():
    stack, topic = _topic()
    topic.subscribe_queue(SecureQueue(stack, "A"), filter_policy={"event_type": sns.SubscriptionFilter.string_filter(allowlist=["OrderPlaced"])})
    template(stack).has_resource_properties(
        "AWS::SNS::Subscription",
        {"Protocol": "sqs", "RawMessageDelivery": True, "FilterPolicy": {"event_type": ["OrderPlaced"]}, "FilterPolicyScope": Match.absent()},
    )


def test_body_filter_policy_uses_message_body_scope():
    stack, topic = _topic()
    topic.subscribe_queue(
        SecureQueue(stack, "A"),
        filter_policy={"total": sns.SubscriptionFilter.numeric_filter(greater_than_or_equal_to=500)},
        filter_on_body=True,
    )
    template(stack).has_resource_properties(
        "AWS::SNS::Subscription",
        {"FilterPolicyScope": "MessageBody", "FilterPolicy": {"total": [{"numeric": [">=", 500]}]}},
    )


def test_delivery_status_is_logged_for_every_protocol_that_supports_it():
    stack, _ = _topic(success_sample_rate=10)
    topic = next(iter(resources(stack, "AWS::SNS::Topic").values()))
    logging = topic["Properties"]["DeliveryStatusLogging"]
    assert {entry["Protocol"] for entry in logging} == {"sqs", "lambda", "http/s", "firehose", "application"}
    assert all(entry["SuccessFeedbackSampleRate"] == "10" for entry in logging)


def test_delivery_log_groups_are_encrypted_with_retention():
    stack, topic = _topic()
    groups = resources(stack, "AWS::Logs::LogGroup")
    assert len(groups) == 2
    for group in groups.values():
        assert "KmsKeyId" in group["Properties"] and group["Properties"]["RetentionInDays"] == 7


def test_delivery_log_role_may_write_only_to_the_topic_log_groups():
    stack, _ = _topic()
    (policy,) = resources(stack, "AWS::IAM::ManagedPolicy").values()
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert len(statement["Resource"]) == 2
    assert not resources(stack, "AWS::IAM::Policy"), "no inline policies"


def test_alarm_on_failed_notifications():
    stack, _ = _topic()
    template(stack).has_resource_properties(
        "AWS::CloudWatch::Alarm", {"MetricName": "NumberOfNotificationsFailed", "Namespace": "AWS/SNS", "Statistic": "Sum", "Threshold": 1}
    )


def test_fifo_topic_subscribes_fifo_queue_with_fifo_dlq():
    stack, topic = _topic(fifo=True)
    topic.subscribe_queue(SecureQueue(stack, "Ledger", fifo=True))
    template(stack).has_resource_properties("AWS::SNS::Topic", {"FifoTopic": True})
    dlq = topic.subscription_dead_letter_queues[0]
    assert resources(stack, "AWS::SQS::Queue")[stack.get_logical_id(dlq.node.default_child)]["Properties"]["FifoQueue"] is True


def test_grant_publish_names_exact_actions():
    from aws_cdk import aws_iam as iam

    stack, topic = _topic()
    role = iam.Role(stack, "Producer", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
    topic.grant_publish(role)
    (policy,) = resources(stack, "AWS::IAM::Policy").values()
    actions = sorted(a for s in policy["Properties"]["PolicyDocument"]["Statement"] for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"]))
    assert actions == ["kms:Decrypt", "kms:GenerateDataKey", "sns:Publish"]


def test_fails_when_a_fifo_topic_subscribes_a_standard_queue():
    stack, topic = _topic(fifo=True)
    with pytest.raises(ValueError, match="a FIFO topic needs a FIFO queue"):
        topic.subscribe_queue(SecureQueue(stack, "A"))


def test_fails_when_filter_on_body_has_no_filter_policy():
    stack, topic = _topic()
    with pytest.raises(ValueError, match="filter_on_body needs a filter_policy"):
        topic.subscribe_queue(SecureQueue(stack, "A"), filter_on_body=True)


def test_fails_when_success_sample_rate_is_out_of_range():
    with pytest.raises(ValueError, match="success_sample_rate must be between 0 and 100 %, got 101 %"):
        _topic(success_sample_rate=101)


def test_subscribed_queue_admits_sns_only_from_this_topic_and_key_only_from_this_account():
    stack, topic = _topic()
    queue = SecureQueue(stack, "A", encryption_key=topic.key)
    topic.subscribe_queue(queue)
    topic_ref = {"Ref": stack.get_logical_id(topic.topic.node.default_child)}
    template(stack).has_resource_properties(
        "AWS::SQS::QueuePolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Action": "sqs:SendMessage",
                                "Principal": {"Service": "sns.amazonaws.com"},
                                "Condition": {"ArnEquals": {"aws:SourceArn": topic_ref}},
                            }
                        )
                    ]
                )
            }
        },
    )
    (key,) = resources(stack, "AWS::KMS::Key").values()
    sns_statements = [s for s in key["Properties"]["KeyPolicy"]["Statement"] if s.get("Principal", {}).get("Service") == "sns.amazonaws.com"]
    assert sns_statements and all(s["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}} for s in sns_statements)
