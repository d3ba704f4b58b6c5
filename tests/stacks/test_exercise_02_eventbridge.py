"""Exercise02EventBridge: the blueprint's wiring, on the templates synthesized once per session."""

from __future__ import annotations

import json

import pytest

STACK = "Exercise02EventBridge"


def _of_type(template: dict, resource_type: str) -> dict:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == resource_type}


@pytest.fixture(params=["sandbox", "production"])
def template(request, template_json):
    return template_json(request.param, STACK)


def _rules(template: dict) -> dict[str, dict]:
    return {json.dumps(r["Properties"]["EventPattern"], sort_keys=True): r["Properties"] for r in _of_type(template, "AWS::Events::Rule").values()}


def test_one_encrypted_bus_with_a_dlq_and_an_encrypted_archive(template):
    (bus,) = _of_type(template, "AWS::Events::EventBus").values()
    assert "KmsKeyIdentifier" in bus["Properties"] and "DeadLetterConfig" in bus["Properties"]
    (archive,) = _of_type(template, "AWS::Events::Archive").values()
    assert "KmsKeyIdentifier" in archive["Properties"]


def test_archive_retention_per_profile(template_json):
    for profile, days in (("sandbox", 7), ("production", 365)):
        (archive,) = _of_type(template_json(profile, STACK), "AWS::Events::Archive").values()
        assert archive["Properties"]["RetentionDays"] == days


def test_rules_route_by_content_with_exists_numeric_prefix_and_anything_but(template):
    patterns = [r["EventPattern"] for r in _of_type_props(template, "AWS::Events::Rule")]
    inventory = next(p for p in patterns if p.get("source") == ["blueprints.orders"])
    assert inventory["detail"] == {"order_id": [{"exists": True}], "version": [{"numeric": [">=", 1]}]}
    notifications = next(p for p in patterns if p is not inventory)
    assert notifications["source"] == [{"prefix": "blueprints."}]
    assert notifications["detail-type"] == [{"anything-but": "StockReleased"}] or notifications["detail-type"] == [{"anything-but": ["StockReleased"]}]


def _of_type_props(template: dict, resource_type: str) -> list[dict]:
    return [r["Properties"] for r in _of_type(template, resource_type).values()]


def test_every_rule_target_has_a_dlq_and_a_retry_policy(template):
    for rule in _of_type_props(template, "AWS::Events::Rule"):
        for target in rule["Targets"]:
            assert "DeadLetterConfig" in target and "RetryPolicy" in target


def test_consumers_sit_behind_queues_with_partial_batch_responses(template):
    mappings = _of_type_props(template, "AWS::Lambda::EventSourceMapping")
    assert len(mappings) == 2
    assert all(m["FunctionResponseTypes"] == ["ReportBatchItemFailures"] for m in mappings)


def test_daily_schedule_puts_a_report_event_with_dlq(template):
    (schedule,) = _of_type_props(template, "AWS::Scheduler::Schedule")
    assert schedule["Target"]["EventBridgeParameters"]["DetailType"] == "DailyReportRequested"
    assert "DeadLetterConfig" in schedule["Target"] and "KmsKeyArn" in schedule


def test_pipe_turns_restock_messages_into_bus_events(template):
    (pipe,) = _of_type_props(template, "AWS::Pipes::Pipe")
    assert json.loads(pipe["SourceParameters"]["FilterCriteria"]["Filters"][0]["Pattern"]) == {"body": {"kind": ["restock"]}}
    assert pipe["TargetParameters"]["EventBridgeEventBusParameters"]["DetailType"] == "RestockRequested"


def test_every_event_type_and_version_has_a_schema(template):
    names = sorted(s["SchemaName"] for s in _of_type_props(template, "AWS::EventSchemas::Schema"))
    assert "blueprints.orders@OrderPlaced.v1" in names and "blueprints.orders@OrderPlaced.v2" in names
    assert len(names) == 9


def test_the_registry_holds_the_schemas_generated_from_the_contracts_in_draft_4(template):
    import jsonschema

    from messaging_runtime.contracts.schemas import registry_schemas
    from stacks.exercise_02_schemas import EVENT_KINDS

    generated = registry_schemas(EVENT_KINDS)
    registered = {s["SchemaName"]: s for s in _of_type_props(template, "AWS::EventSchemas::Schema")}
    assert set(registered) == set(generated)
    for name, schema in registered.items():
        assert schema["Type"] == "JSONSchemaDraft4" and schema["Content"] == generated[name]
        jsonschema.Draft4Validator.check_schema(json.loads(schema["Content"]))


def test_each_service_may_put_only_its_own_events_on_the_bus(template):
    (bus_id,) = _of_type(template, "AWS::Events::EventBus")
    sources = {}
    for logical_id, policy in _of_type(template, "AWS::IAM::ManagedPolicy").items():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if statement["Action"] == "events:PutEvents":
                assert statement["Resource"] == {"Fn::GetAtt": [bus_id, "Arn"]}
                sources[logical_id] = statement.get("Condition", {}).get("StringEquals", {}).get("events:source")
    assert sorted(v for k, v in sources.items() if k.startswith(("OrdersPublisher", "Inventory"))) == [["blueprints.inventory"], ["blueprints.orders"]]
    assert not any(k.startswith("Notifications") for k in sources), "notifications publishes nothing"


def test_idempotency_outlives_the_archive(template_json):
    for profile, seconds in (("sandbox", 14 * 86400), ("production", 365 * 86400)):
        functions = _of_type_props(template_json(profile, STACK), "AWS::Lambda::Function")
        values = {f["Environment"]["Variables"].get("IDEMPOTENCY_EXPIRES_AFTER_SECONDS") for f in functions if "Environment" in f}
        assert str(seconds) in values


def test_every_alarm_notifies_the_alarm_topic(template):
    alarms = _of_type_props(template, "AWS::CloudWatch::Alarm")
    assert len(alarms) >= 25
    assert len({json.dumps(a["AlarmActions"]) for a in alarms}) == 1


def test_sandbox_leaves_nothing_behind(template_json):
    template = template_json("sandbox", STACK)
    assert [k for k, v in template["Resources"].items() if v.get("DeletionPolicy") == "Retain"] == []
