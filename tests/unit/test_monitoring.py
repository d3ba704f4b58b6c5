"""AlarmTopic and MonitoringDashboard."""

from __future__ import annotations

from aws_cdk.assertions import Match

from messaging_constructs import AlarmTopic, EncryptionKey, MonitoringDashboard, SecureQueue, SecureTopic
from tests.unit.helpers import new_stack, only, resources, template


def test_alarm_topic_admits_cloudwatch_alarms_of_this_account_only():
    stack = new_stack()
    AlarmTopic(stack, "Alarms", encryption_key=EncryptionKey(stack, "Key").key)
    template(stack).has_resource_properties(
        "AWS::SNS::TopicPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like({"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}}),
                        Match.object_like(
                            {
                                "Effect": "Allow",
                                "Action": "sns:Publish",
                                "Principal": {"Service": "cloudwatch.amazonaws.com"},
                                "Condition": {
                                    "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}},
                                    "ArnLike": {"aws:SourceArn": Match.any_value()},
                                },
                            }
                        ),
                    ]
                )
            }
        },
    )


def test_alarm_topic_key_lets_cloudwatch_encrypt():
    stack = new_stack()
    AlarmTopic(stack, "Alarms", encryption_key=EncryptionKey(stack, "Key").key)
    (_, key) = only(resources(stack, "AWS::KMS::Key"))
    principals = [s.get("Principal", {}).get("Service") for s in key["Properties"]["KeyPolicy"]["Statement"]]
    assert "cloudwatch.amazonaws.com" in principals


def test_dashboard_has_a_heading_and_the_widgets_of_each_section():
    stack = new_stack()
    queue = SecureQueue(stack, "Work")
    topic = SecureTopic(stack, "Events")
    dashboard = MonitoringDashboard(stack, "Dashboard")
    dashboard.add_section("Work queue", queue.dashboard_widgets("Work"))
    dashboard.add_section("Events topic", topic.dashboard_widgets("Events"))
    (_, board) = only(resources(stack, "AWS::CloudWatch::Dashboard"))
    body = str(board["Properties"]["DashboardBody"])
    for text in ("## Work queue", "## Events topic", "ApproximateAgeOfOldestMessage", "NumberOfNotificationsFailed"):
        assert text in body


def test_service_roles_trust_only_this_account():
    stack = new_stack()
    SecureTopic(stack, "Events")
    (_, role) = only(resources(stack, "AWS::IAM::Role"))
    (statement,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}


def test_high_throughput_fifo_topic_scopes_throughput_per_message_group():
    stack = new_stack()
    SecureTopic(stack, "Events", fifo=True, high_throughput=True)
    template(stack).has_resource_properties("AWS::SNS::Topic", {"FifoTopic": True, "FifoThroughputScope": "MessageGroup"})
