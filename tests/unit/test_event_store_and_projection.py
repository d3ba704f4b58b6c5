"""EventStore and Projection: every promise on the synthesized template, and every validation."""

from __future__ import annotations

import json

import pytest
from aws_cdk import Duration
from aws_cdk import aws_iam as iam

from messaging_constructs import EventStore, Projection
from tests.unit.helpers import new_stack, only, resources


@pytest.fixture(scope="module")
def code(tmp_path_factory):
    folder = tmp_path_factory.mktemp("projection")
    (folder / "handler.py").write_text("def lambda_handler(event, context):\n    return event\n")
    (folder / "rebuild.py").write_text("def lambda_handler(event, context):\n    return event\n")
    return str(folder)


def _actions(policy: dict) -> set[str]:
    return {a for s in policy["Properties"]["PolicyDocument"]["Statement"] for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}


def _store(profile: str = "sandbox", **props):
    stack = new_stack(profile)
    return stack, EventStore(stack, "Store", **props)


def test_store_is_keyed_on_aggregate_and_version_with_a_new_image_stream():
    stack, _ = _store()
    (_, table) = only(resources(stack, "AWS::DynamoDB::Table"))
    props = table["Properties"]
    assert props["KeySchema"] == [{"AttributeName": "aggregate_id", "KeyType": "HASH"}, {"AttributeName": "version", "KeyType": "RANGE"}]
    assert {"AttributeName": "version", "AttributeType": "N"} in props["AttributeDefinitions"]
    assert props["StreamSpecification"] == {"StreamViewType": "NEW_IMAGE"}
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["SSESpecification"]["SSEType"] == "KMS" and "KMSMasterKeyId" in props["SSESpecification"]
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True


@pytest.mark.parametrize(("profile", "protected", "policy"), [("sandbox", False, "Delete"), ("production", True, "Retain")])
def test_store_protection_follows_the_profile(profile, protected, policy):
    stack, _ = _store(profile)
    (_, table) = only(resources(stack, "AWS::DynamoDB::Table"))
    assert table["Properties"]["DeletionProtectionEnabled"] is protected and table["DeletionPolicy"] == policy
    assert bool(resources(stack, "AWS::Backup::BackupPlan")) is protected


def test_appenders_may_only_put_conditionally_and_readers_only_read():
    stack, store = _store()
    appender = iam.Role(stack, "Appender", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
    reader = iam.Role(stack, "Reader", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
    store.grant_append(appender)
    store.grant_read(reader)
    policies = {k: v for k, v in resources(stack, "AWS::IAM::Policy").items()}
    append = next(v for k, v in policies.items() if k.startswith("Appender"))
    read = next(v for k, v in policies.items() if k.startswith("Reader"))
    assert _actions(append) == {"dynamodb:PutItem", "dynamodb:ConditionCheckItem", "kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"}
    assert _actions(read) == {"dynamodb:GetItem", "dynamodb:Query", "kms:Decrypt"}


def test_store_alarms_on_throttles_and_errors_of_every_operation_it_serves():
    stack, _ = _store()
    alarms = [a["Properties"] for a in resources(stack, "AWS::CloudWatch::Alarm").values()]
    assert len(alarms) == 2
    metrics = json.dumps([a["Metrics"] for a in alarms])
    for name in ("ReadThrottleEvents", "WriteThrottleEvents", "TransactWriteItems", "Query", "Scan"):
        assert name in metrics


def test_conflict_alarm_watches_the_appenders_count_of_lost_races():
    from aws_cdk import aws_cloudwatch as cloudwatch

    stack, store = _store(conflict_alarm_threshold=25)
    store.add_conflict_alarm("Conflicts", cloudwatch.Metric(namespace="App", metric_name="ConcurrencyConflicts", statistic="Sum"))
    (alarm,) = [a["Properties"] for a in resources(stack, "AWS::CloudWatch::Alarm").values() if a["Properties"].get("MetricName") == "ConcurrencyConflicts"]
    assert alarm["Threshold"] == 25 and alarm["Namespace"] == "App"


def _projection(code: str, **props):
    stack, store = _store()
    projection = Projection(stack, "Balances", event_store=store, code_path=code, service_name="balances", read_model_key="account_id", **props)
    return stack, store, projection


def test_projection_consumes_new_events_only_with_bisect_retries_age_and_on_failure_destination(code):
    stack, _, projection = _projection(code)
    (_, mapping) = only(resources(stack, "AWS::Lambda::EventSourceMapping"))
    props = mapping["Properties"]
    assert json.loads(props["FilterCriteria"]["Filters"][0]["Pattern"]) == {"eventName": ["INSERT"], "dynamodb": {"NewImage": {"kind": {"S": ["event"]}}}}
    assert props["BisectBatchOnFunctionError"] is True
    assert props["MaximumRetryAttempts"] == 3 and props["MaximumRecordAgeInSeconds"] == 3600
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["ParallelizationFactor"] == 1 and props["StartingPosition"] == "TRIM_HORIZON"
    dlq_id = stack.get_logical_id(projection.dead_letter_queue.node.default_child)
    assert props["DestinationConfig"] == {"OnFailure": {"Destination": {"Fn::GetAtt": [dlq_id, "Arn"]}}}


def test_projection_owns_its_read_model_and_may_touch_only_it(code):
    stack, store, projection = _projection(code)
    read_model = resources(stack, "AWS::DynamoDB::Table")[stack.get_logical_id(projection.read_model.node.default_child)]
    assert read_model["Properties"]["KeySchema"] == [{"AttributeName": "account_id", "KeyType": "HASH"}]
    policy = resources(stack, "AWS::IAM::ManagedPolicy")[stack.get_logical_id(projection.handler.role.policy.node.default_child)]
    dynamodb_actions = {a for a in _actions(policy) if a.startswith("dynamodb:")}
    assert dynamodb_actions == {
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DescribeStream",
        "dynamodb:GetRecords",
        "dynamodb:GetShardIterator",
        "dynamodb:ListStreams",
    }
    assert not any(a.endswith("*") for a in _actions(policy))


def test_projection_alarms_on_failure_records_that_cannot_be_delivered(code):
    stack, _, _ = _projection(code)
    names = {a["Properties"].get("MetricName") for a in resources(stack, "AWS::CloudWatch::Alarm").values()}
    assert "DestinationDeliveryFailures" in names


def test_rebuild_may_repair_the_live_read_model(code):
    stack, _, projection = _projection(code)
    rebuild = projection.add_rebuild()
    policy = resources(stack, "AWS::IAM::ManagedPolicy")[stack.get_logical_id(rebuild.role.policy.node.default_child)]
    live = {"Fn::GetAtt": [stack.get_logical_id(projection.read_model.node.default_child), "Arn"]}
    assert any(live in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]) for s in policy["Properties"]["PolicyDocument"]["Statement"])


def test_projection_alarms_on_iterator_age(code):
    stack, _, _ = _projection(code, iterator_age_threshold=Duration.minutes(2))
    (alarm,) = [a["Properties"] for a in resources(stack, "AWS::CloudWatch::Alarm").values() if a["Properties"].get("MetricName") == "IteratorAge"]
    assert alarm["Threshold"] == 120000 and alarm["Statistic"] == "Maximum" and alarm["EvaluationPeriods"] == 3


def test_rebuild_scans_the_store_into_a_fresh_table(code):
    stack, store, projection = _projection(code)
    rebuild = projection.add_rebuild()
    assert projection.rebuild_table is not None
    policy = resources(stack, "AWS::IAM::ManagedPolicy")[stack.get_logical_id(rebuild.role.policy.node.default_child)]
    assert {a for a in _actions(policy) if a.startswith("dynamodb:")} == {"dynamodb:Scan", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"}
    function = resources(stack, "AWS::Lambda::Function")[stack.get_logical_id(rebuild.function.node.default_child)]
    assert function["Properties"]["Handler"] == "rebuild.lambda_handler" and function["Properties"]["Timeout"] == 900


def test_fails_when_parallelization_factor_is_out_of_range(code):
    with pytest.raises(ValueError, match="parallelization_factor must be between 1 and 10, got 11"):
        _projection(code, parallelization_factor=11)


def test_fails_when_max_record_age_is_out_of_range(code):
    with pytest.raises(ValueError, match="max_record_age must be between 1 minute and 7 days, got 30 s"):
        _projection(code, max_record_age=Duration.seconds(30))
