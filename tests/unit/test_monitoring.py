"""AlarmTopic and MonitoringDashboard."""

from __future__ import annotations

import pytest
from aws_cdk.assertions import Annotations, Match

from messaging_constructs import NO_ALARM_TOPIC, AlarmTopic, EncryptionKey, EventBus, HandlerFunction, MonitoringDashboard, SecureQueue, SecureTopic
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


def _body(stack) -> str:
    (_, board) = only(resources(stack, "AWS::CloudWatch::Dashboard"))
    return str(board["Properties"]["DashboardBody"])


def test_dashboard_has_a_heading_and_the_widgets_of_each_section():
    stack = new_stack()
    queue = SecureQueue(stack, "Work")
    topic = SecureTopic(stack, "Events")
    dashboard = MonitoringDashboard(stack, "Dashboard")
    assert dashboard.monitor(queue).monitor(topic) is dashboard
    assert dashboard.monitored == [queue, topic]
    body = _body(stack)
    for text in ("## Work queue", "Work: messages", "## Events topic", "Events: published", "ApproximateAgeOfOldestMessage", "NumberOfNotificationsFailed"):
        assert text in body


def test_a_title_names_the_section_and_its_widgets_and_add_section_takes_widgets_of_your_own():
    from aws_cdk import aws_cloudwatch as cloudwatch

    stack = new_stack()
    dashboard = MonitoringDashboard(stack, "Dashboard")
    dashboard.monitor(SecureQueue(stack, "OrdersQueue"), title="Orders").add_section("Notes", [cloudwatch.TextWidget(markdown="runbook")])
    body = _body(stack)
    assert "## Orders" in body and "Orders: messages" in body and "## Notes" in body and "runbook" in body
    assert "OrdersQueue queue" not in body


def test_a_heading_does_not_repeat_what_the_id_says():
    stack = new_stack()
    MonitoringDashboard(stack, "Dashboard").monitor(SecureQueue(stack, "WorkQueue"))
    body = _body(stack)
    assert "## WorkQueue" in body and "## WorkQueue queue" not in body


def test_the_bus_section_draws_every_rule():
    stack = new_stack()
    bus = EventBus(stack, "Bus")
    from aws_cdk import aws_events as events

    for name in ("A", "B"):
        bus.add_rule(f"{name}Rule", event_pattern=events.EventPattern(source=[name]), target=SecureQueue(stack, name))
    MonitoringDashboard(stack, "Dashboard").monitor(bus)
    body = _body(stack)
    assert "## Bus rules" in body and "Bus ARule: matched" in body and "Bus BRule: matched" in body


def test_fails_when_the_construct_draws_no_section():
    stack = new_stack()
    with pytest.raises(ValueError, match="AlarmTopic draws no dashboard section"):
        MonitoringDashboard(stack, "Dashboard").monitor(AlarmTopic(stack, "Alarms", encryption_key=EncryptionKey(stack, "Key").key))


# --- no alarm topic -------------------------------------------------------------


def _no_topic_warnings(stack) -> list:
    return Annotations.from_stack(stack).find_warning("*", Match.string_like_regexp(NO_ALARM_TOPIC))


def test_without_an_alarm_topic_a_construct_still_alarms_and_synth_warns_once():
    stack = new_stack()
    SecureQueue(stack, "Work")
    alarms = resources(stack, "AWS::CloudWatch::Alarm")
    assert len(alarms) == 2 and all("AlarmActions" not in a["Properties"] for a in alarms.values())
    (warning,) = _no_topic_warnings(stack)
    assert warning.id == "/Test/Work" and "notify nobody" in str(warning.entry.data)


def test_a_construct_warns_once_not_once_per_inner_construct(tmp_path):
    """A function's dead-letter queue and a topic's subscription DLQs are inside the construct that already warned."""
    (tmp_path / "handler.py").write_text("def lambda_handler(event, context):\n    return event\n")
    stack = new_stack()
    HandlerFunction(stack, "Consumer", code_path=str(tmp_path), service_name="consumer")
    topic = SecureTopic(stack, "Events")
    topic.subscribe_queue(SecureQueue(stack, "A"))
    assert sorted(w.id for w in _no_topic_warnings(stack)) == ["/Test/A", "/Test/Consumer", "/Test/Events"]


def test_with_an_alarm_topic_nothing_warns():
    stack = new_stack()
    topic = AlarmTopic(stack, "Alarms", encryption_key=EncryptionKey(stack, "Key").key)
    SecureQueue(stack, "Work", alarm_topic=topic)  # the AlarmTopic construct itself is taken too
    assert _no_topic_warnings(stack) == []
    template(stack).all_resources_properties("AWS::CloudWatch::Alarm", {"AlarmActions": [{"Ref": Match.string_like_regexp("Alarms")}]})


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
