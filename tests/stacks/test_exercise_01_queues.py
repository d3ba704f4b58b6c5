"""Exercise01Queues: the blueprint's wiring, on the templates synthesized once per session."""

from __future__ import annotations

import pytest

PROFILES = ["sandbox", "production"]


def _of_type(template: dict, resource_type: str) -> dict:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == resource_type}


@pytest.fixture(params=PROFILES)
def template(request, template_json):
    return template_json(request.param)


def test_two_topics_standard_and_fifo_both_encrypted(template):
    topics = _of_type(template, "AWS::SNS::Topic")
    data_topics = [t for t in topics.values() if "DeliveryStatusLogging" in t["Properties"]]
    assert sorted(bool(t["Properties"].get("FifoTopic")) for t in data_topics) == [False, True]
    assert all("KmsMasterKeyId" in t["Properties"] for t in topics.values())


def test_every_queue_is_encrypted_and_either_has_a_dlq_or_is_one(template):
    queues = _of_type(template, "AWS::SQS::Queue")
    dlq_ids = {q["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0] for q in queues.values() if "RedrivePolicy" in q["Properties"]}
    subscription_dlqs = {
        s["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0] for s in _of_type(template, "AWS::SNS::Subscription").values()
    }
    function_dlqs = {
        f["Properties"]["DeadLetterConfig"]["TargetArn"]["Fn::GetAtt"][0]
        for f in _of_type(template, "AWS::Lambda::Function").values()
        if "DeadLetterConfig" in f["Properties"]
    }
    for logical_id, queue in queues.items():
        assert "KmsMasterKeyId" in queue["Properties"], logical_id
        assert "RedrivePolicy" in queue["Properties"] or logical_id in dlq_ids | subscription_dlqs | function_dlqs, logical_id


def test_four_subscriptions_each_with_a_dlq_and_the_expected_filters(template):
    subscriptions = list(_of_type(template, "AWS::SNS::Subscription").values())
    assert len(subscriptions) == 4
    assert all("RedrivePolicy" in s["Properties"] for s in subscriptions)
    filters = sorted((s["Properties"].get("FilterPolicyScope", "MessageAttributes"), str(s["Properties"].get("FilterPolicy"))) for s in subscriptions)
    assert ("MessageAttributes", str({"event_type": ["OrderPlaced"]})) in filters
    assert ("MessageBody", str({"total": [{"numeric": [">=", 500]}]})) in filters
    assert sum(1 for _, policy in filters if policy == "None") == 2  # audit and ledger take everything


def test_every_consumer_reports_batch_item_failures(template):
    mappings = _of_type(template, "AWS::Lambda::EventSourceMapping")
    assert len(mappings) == 4
    assert all(m["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"] for m in mappings.values())


def test_every_handler_function_has_an_async_dlq(template):
    functions = {k: f for k, f in _of_type(template, "AWS::Lambda::Function").items() if "Custom" not in k}
    assert len(functions) == 5
    assert all("DeadLetterConfig" in f["Properties"] for f in functions.values())


def test_every_alarm_notifies_the_alarm_topic(template):
    alarms = _of_type(template, "AWS::CloudWatch::Alarm")
    assert len(alarms) >= 30
    actions = {str(a["Properties"]["AlarmActions"]) for a in alarms.values()}
    assert len(actions) == 1 and "Alarms" in actions.pop()


def test_one_dashboard(template):
    assert len(_of_type(template, "AWS::CloudWatch::Dashboard")) == 1


def test_one_shared_key(template):
    assert len(_of_type(template, "AWS::KMS::Key")) == 1


def test_sandbox_functions_run_outside_a_vpc_and_leave_nothing_behind(template_json):
    template = template_json("sandbox")
    assert not _of_type(template, "AWS::EC2::VPC")
    retained = [k for k, v in template["Resources"].items() if v.get("DeletionPolicy") == "Retain"]
    assert retained == []


def test_production_functions_run_in_the_vpc_with_reserved_concurrency(template_json):
    template = template_json("production")
    functions = {k: f for k, f in _of_type(template, "AWS::Lambda::Function").items() if "Custom" not in k}
    assert all("VpcConfig" in f["Properties"] and f["Properties"]["ReservedConcurrentExecutions"] == 10 for f in functions.values())
    assert not _of_type(template, "AWS::EC2::InternetGateway") and not _of_type(template, "AWS::EC2::NatGateway")


def test_production_retains_data(template_json):
    template = template_json("production")
    for resource_type in ("AWS::SQS::Queue", "AWS::DynamoDB::Table", "AWS::KMS::Key", "AWS::Logs::LogGroup"):
        assert all(r.get("DeletionPolicy") == "Retain" for r in _of_type(template, resource_type).values()), resource_type


def test_no_iam_statement_allows_a_wildcard_action(template):
    for resource_type in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy", "AWS::KMS::Key"):
        for resource in _of_type(template, resource_type).values():
            document = resource["Properties"].get("PolicyDocument") or resource["Properties"].get("KeyPolicy")
            for statement in document["Statement"]:
                actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                if statement["Effect"] == "Allow" and "AWS" not in str(statement.get("Principal", "")):
                    assert not any(a == "*" or a.endswith(":*") for a in actions), statement
