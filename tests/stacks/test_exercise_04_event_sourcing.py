"""Exercise04EventSourcing: the blueprint's wiring, on the templates synthesized once per session."""

from __future__ import annotations

import json

import pytest

from .helpers import props

STACK = "Exercise04EventSourcing"


@pytest.fixture(params=["sandbox", "production"])
def template(request, template_json):
    return template_json(request.param, STACK)


def test_one_event_store_and_two_read_model_tables(template):
    tables = list(props(template, "AWS::DynamoDB::Table").values())
    stores = [t for t in tables if len(t["KeySchema"]) == 2]
    assert len(stores) == 1 and stores[0]["StreamSpecification"] == {"StreamViewType": "NEW_IMAGE"}
    read_models = [t for t in tables if t["KeySchema"] == [{"AttributeName": "account_id", "KeyType": "HASH"}]]
    assert len(read_models) == 2  # the live one and the rebuild target
    assert all(t["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] for t in tables)


def test_command_function_knows_the_store_and_the_snapshot_interval(template):
    functions = props(template, "AWS::Lambda::Function")
    (commands,) = [f for f in functions.values() if f.get("Environment", {}).get("Variables", {}).get("POWERTOOLS_SERVICE_NAME") == "account_commands"]
    variables = commands["Environment"]["Variables"]
    assert variables["SNAPSHOT_EVERY"] == "5" and variables["MAX_CONFLICT_RETRIES"] == "3" and "EVENT_STORE_TABLE" in variables


def test_projection_reads_the_stream_with_a_failure_destination(template):
    (mapping,) = props(template, "AWS::Lambda::EventSourceMapping").values()
    assert "OnFailure" in mapping["DestinationConfig"] and mapping["BisectBatchOnFunctionError"] is True
    assert json.loads(mapping["FilterCriteria"]["Filters"][0]["Pattern"])["eventName"] == ["INSERT"]


def test_nothing_may_update_or_delete_events(template):
    (store_id,) = [k for k, t in props(template, "AWS::DynamoDB::Table").items() if len(t["KeySchema"]) == 2]
    for policy in props(template, "AWS::IAM::ManagedPolicy").values():
        for statement in policy["PolicyDocument"]["Statement"]:
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            if {"Fn::GetAtt": [store_id, "Arn"]} in resources:
                assert not {"dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"} & set(actions)


def test_alarms_cover_conflicts_and_iterator_age(template):
    names = {a.get("MetricName") for a in props(template, "AWS::CloudWatch::Alarm").values()}
    assert {"ConcurrencyConflicts", "IteratorAge", "DestinationDeliveryFailures", "Errors", "ApproximateNumberOfMessagesVisible"} <= names


def test_projection_and_rebuild_may_only_upsert_read_model_items(template):
    read_models = [k for k, t in props(template, "AWS::DynamoDB::Table").items() if t["KeySchema"] == [{"AttributeName": "account_id", "KeyType": "HASH"}]]
    granted = set()
    for policy in props(template, "AWS::IAM::ManagedPolicy").values():
        for statement in policy["PolicyDocument"]["Statement"]:
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            if any(r == {"Fn::GetAtt": [t, "Arn"]} for t in read_models for r in resources):
                granted.update(statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]])
    assert granted == {"dynamodb:UpdateItem"}
