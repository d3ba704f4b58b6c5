"""CaseUber: the blueprint's wiring, on its templates (synthesized once per profile, without the packs)."""

from __future__ import annotations

import json

import pytest
from aws_cdk import App, Duration, Stack
from aws_cdk import aws_lambda as lambda_

from experiments.case_uber import synth_template
from messaging_constructs.saga import Invoke
from messaging_constructs.sequential_offer import SequentialOffer
from stacks.case_uber import DRIVER_TOPIC_PREFIX, INDEX_KEEP, MAX_CANDIDATES, OFFER_HEARTBEAT, OFFER_TIMEOUT
from tests.stacks.helpers import actions, function, props


@pytest.fixture(scope="module", params=["sandbox", "production"])
def template(request):
    return synth_template(request.param)


def granted(template: dict, service: str) -> list[dict]:
    """The statements of the policies of the function whose service name is ``service``."""
    role = function(template, service)[1]["Role"]["Fn::GetAtt"][0]
    return [s for p in props(template, "AWS::IAM::ManagedPolicy").values() if {"Ref": role} in p.get("Roles", []) for s in p["PolicyDocument"]["Statement"]]


def only(template: dict, resource_type: str) -> tuple[str, dict]:
    (found,) = props(template, resource_type).items()
    return found


def test_the_drivers_rule_takes_the_driver_from_the_topic_and_keeps_a_drivers_positions_on_one_shard(template):
    _, rule = only(template, "AWS::IoT::TopicRule")
    payload = rule["TopicRulePayload"]
    assert payload["Sql"] == f"SELECT *, topic(3) AS driver_id, 'driver_app' AS platform FROM '{DRIVER_TOPIC_PREFIX}/+/events'"
    (action,) = payload["Actions"]
    assert action["Kinesis"]["PartitionKey"] == "${driver_id}" and "Sqs" in payload["ErrorAction"]


def test_positions_reach_the_index_through_a_mapping_that_reports_failures_and_gives_up_on_old_positions(template):
    indexer, _ = function(template, "case_uber_positions")
    stream, _ = only(template, "AWS::Kinesis::Stream")
    (mapping,) = [m for m in props(template, "AWS::Lambda::EventSourceMapping").values() if m["FunctionName"] == {"Ref": indexer}]
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": [stream, "Arn"]}
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"] and mapping["BisectBatchOnFunctionError"] is True
    assert mapping["MaximumRecordAgeInSeconds"] == 300 and mapping["MaximumBatchingWindowInSeconds"] == 1
    assert mapping["DestinationConfig"]["OnFailure"]["Destination"]


def test_the_index_expires_stale_positions(template):
    tables = props(template, "AWS::DynamoDB::Table")
    (index,) = [t for k, t in tables.items() if k.startswith("DriverIndex")]
    assert index["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert [k["AttributeName"] for k in index["KeySchema"]] == ["pk", "sk"]
    _, indexer = function(template, "case_uber_positions")
    assert indexer["Environment"]["Variables"]["INDEX_KEEP_SECONDS"] == str(int(INDEX_KEEP.to_seconds()))


def test_an_offer_waits_for_the_driver_with_a_timeout_and_a_heartbeat_and_moves_on_when_refused(template):
    _, machine = only(template, "AWS::StepFunctions::StateMachine")
    text = "".join(p if isinstance(p, str) else "<ref>" for p in machine["DefinitionString"]["Fn::Join"][1])
    states = json.loads(text)["States"]
    offer = states["Offer"]
    assert offer["Resource"].endswith(":states:::lambda:invoke.waitForTaskToken")
    assert offer["TimeoutSeconds"] == OFFER_TIMEOUT.to_seconds() and offer["HeartbeatSeconds"] == OFFER_HEARTBEAT.to_seconds()
    assert offer["Parameters"]["Payload"]["task_token.$"] == "$$.Task.Token"
    catchers = [(c["ErrorEquals"], c["Next"]) for c in offer["Catch"]]
    assert catchers == [
        (["DriverDeclined", "DriverUnreachable", "States.Timeout", "States.HeartbeatTimeout"], "Offer lapsed"),
        (["States.ALL"], "Offer lapsed"),
    ]
    assert states["Offer lapsed"]["Next"] == "Any candidate left?" and offer["Next"] == "RecordAssigned"
    assert states["Any candidate left?"]["Default"] == "RecordNoDriver"
    _, rides = function(template, "case_uber_rides")
    assert rides["Environment"]["Variables"]["MAX_CANDIDATES"] == str(MAX_CANDIDATES)


def test_drivers_answer_the_dispatch_and_only_it(template):
    machine, _ = only(template, "AWS::StepFunctions::StateMachine")
    name = props(template, "AWS::StepFunctions::StateMachine")[machine]["StateMachineName"]
    for service in ("case_uber_connections", "case_uber_offers"):
        answers = [s for s in granted(template, service) if any(a.startswith("states:") for a in actions(s))]
        assert {a for s in answers for a in actions(s)} == {"states:SendTaskSuccess", "states:SendTaskFailure", "states:SendTaskHeartbeat"}
        assert all(name in json.dumps(s["Resource"]) for s in answers)
    starts = [s for s in granted(template, "case_uber_rides") if "states:StartExecution" in actions(s)]
    assert [s["Resource"] for s in starts] == [{"Ref": machine}]


def test_the_position_handler_writes_only_the_index(template):
    tables = props(template, "AWS::DynamoDB::Table")
    (index,) = [k for k in tables if k.startswith("DriverIndex")]
    writes = [s for s in granted(template, "case_uber_positions") if any(a.startswith("dynamodb:") for a in actions(s))]
    assert {a for s in writes for a in actions(s)} == {"dynamodb:UpdateItem", "dynamodb:PutItem", "dynamodb:DeleteItem"}
    assert all(s["Resource"] == {"Fn::GetAtt": [index, "Arn"]} for s in writes)


def test_the_offer_handler_runs_outside_the_network_and_the_h3_layer_goes_where_h3_is_used(template):
    functions = {service: function(template, service)[1] for service in ("case_uber_positions", "case_uber_rides", "case_uber_offers", "case_uber_connections")}
    assert "VpcConfig" not in functions["case_uber_offers"]
    in_network = bool(props(template, "AWS::EC2::VPC"))  # production
    assert all(("VpcConfig" in f) == in_network for s, f in functions.items() if s != "case_uber_offers")
    layers = {s: json.dumps(f["Layers"]) for s, f in functions.items()}
    geo = [k for k in props(template, "AWS::Lambda::LayerVersion") if k.startswith("GeoLayer")]
    assert len(geo) == 1 and all((geo[0] in layers[s]) == (s in ("case_uber_positions", "case_uber_rides")) for s in layers)


def _offer_stack(**options) -> None:
    stack = Stack(App(), "Offers")
    fn = lambda_.Function(stack, "Fn", runtime=lambda_.Runtime.PYTHON_3_13, handler="h.h", code=lambda_.Code.from_inline("x"))
    SequentialOffer(stack, "Dispatch", offer=fn, on_accepted=Invoke("Yes", fn, {}), on_exhausted=Invoke("No", fn, {}), **options)


def test_fails_when_the_heartbeat_is_not_shorter_than_the_offer_timeout():
    with pytest.raises(ValueError, match="heartbeat"):
        _offer_stack(offer_timeout=Duration.seconds(10), heartbeat=Duration.seconds(10))


def test_fails_when_the_payload_sets_what_the_workflow_sets():
    with pytest.raises(ValueError, match="task_token"):
        _offer_stack(payload={"task_token.$": "$.x"})
