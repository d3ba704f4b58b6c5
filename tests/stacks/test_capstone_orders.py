"""CapstoneOrders: the blueprint's wiring, on the templates synthesized once per session."""

from __future__ import annotations

import json

import pytest

from tests.stacks.helpers import actions, function, props, statements

STACK = "CapstoneOrders"


@pytest.fixture(params=["sandbox", "production"])
def template(request, template_json):
    return template_json(request.param, STACK)


def _policy_of(template: dict, service: str) -> list[dict]:
    logical_id, fn = function(template, service)
    role = fn["Role"]["Fn::GetAtt"][0]
    found = []
    for policy in props(template, "AWS::IAM::ManagedPolicy").values():
        if {"Ref": role} in policy.get("Roles", []):
            found += policy["PolicyDocument"]["Statement"]
    return found


def _granted(template: dict, service: str) -> set[str]:
    return {a for s in _policy_of(template, service) for a in actions(s)}


def _definition(template: dict) -> dict:
    (machine,) = props(template, "AWS::StepFunctions::StateMachine").values()
    return json.loads("".join(p if isinstance(p, str) else "X" for p in machine["DefinitionString"]["Fn::Join"][1]))


def test_every_table_is_encrypted_with_the_stack_key_and_recoverable(template):
    tables = props(template, "AWS::DynamoDB::Table")
    assert len(tables) == 6  # orders, outbox, stock, payments, circuit breakers, WebSocket connections
    for table in tables.values():
        assert table["SSESpecification"]["SSEEnabled"] is True and "KMSMasterKeyId" in table["SSESpecification"]
        assert table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True


def test_the_outbox_pipe_puts_checkout_events_on_the_bus_and_a_rule_feeds_the_saga_starter(template):
    (pipe,) = props(template, "AWS::Pipes::Pipe").values()
    assert pipe["TargetParameters"]["EventBridgeEventBusParameters"]["Source"] == "blueprints.checkout"
    rules = [r for r in props(template, "AWS::Events::Rule").values()]
    (starts,) = [r for r in rules if r["EventPattern"].get("detail-type") == ["OrderAccepted"]]
    assert starts["EventPattern"]["source"] == ["blueprints.checkout"]
    assert "DeadLetterConfig" in starts["Targets"][0] and starts["Targets"][0]["RetryPolicy"]["MaximumRetryAttempts"] >= 1


def test_the_saga_reserves_authorizes_waits_for_the_merchant_and_confirms_and_compensates_in_reverse(template):
    definition = _definition(template)
    states = definition["States"]
    assert definition["StartAt"] == "Start"
    order, name = [], states["Start"]["Default"]
    while states[name]["Type"] != "Succeed":
        order.append(name)
        name = states[name]["Next"]
    assert order == ["ReserveStock", "RecordStockReserved", "AuthorizePayment", "RecordAwaitingMerchant", "AwaitMerchant", "RecordConfirmed"]
    entry = {c["StringEquals"]: c["Next"] for c in states["Compensate from"]["Choices"]}
    assert entry["ReserveStock"] == "ReleaseStock" and entry["AuthorizePayment"] == "VoidPayment" and entry["RecordConfirmed"] == "VoidPayment"
    assert states["VoidPayment"]["Next"] == "ReleaseStock" and states["ReleaseStock"]["Next"] == "RecordCompensated"
    merchant = states["AwaitMerchant"]
    assert merchant["Resource"].endswith(":states:::sqs:sendMessage.waitForTaskToken") or "waitForTaskToken" in json.dumps(merchant["Resource"])
    assert merchant["TimeoutSeconds"] in (300, 900) and "Retry" not in merchant


def test_merchant_timeout_follows_the_profile(template_json):
    assert _definition(template_json("sandbox", STACK))["States"]["AwaitMerchant"]["TimeoutSeconds"] == 300
    assert _definition(template_json("production", STACK))["States"]["AwaitMerchant"]["TimeoutSeconds"] == 900


def test_each_function_holds_only_the_table_actions_it_uses(template):
    dynamodb = {
        service: {a for a in _granted(template, service) if a.startswith("dynamodb:")}
        for service in ("order_status", "stock_reservations", "payments", "saga_starter")
    }
    assert dynamodb["order_status"] == {"dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:PutItem"}
    assert dynamodb["stock_reservations"] == {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"}
    assert dynamodb["payments"] == {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"}
    assert dynamodb["saga_starter"] == set()
    assert "states:StartExecution" in _granted(template, "saga_starter")


def test_no_statement_grants_a_wildcard_action(template):
    assert not [a for s in statements(template) for a in actions(s) if a == "*" or a.endswith(":*")]


def test_the_saga_is_alarmed_and_on_the_dashboard(template):
    alarms = [a for a in props(template, "AWS::CloudWatch::Alarm").values() if a.get("Namespace") == "AWS/States"]
    assert {a["MetricName"] for a in alarms} == {"ExecutionsFailed", "ExecutionsTimedOut", "ExecutionsAborted"}
    assert all(a.get("AlarmActions") for a in alarms)
