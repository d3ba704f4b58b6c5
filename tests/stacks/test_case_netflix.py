"""CaseNetflix: the blueprint's wiring, on its templates (synthesized here once per profile, without the packs)."""

from __future__ import annotations

import json

import pytest
from aws_cdk import App

from messaging_constructs import Profile
from stacks.case_netflix import TEAMS, CaseNetflixStack
from tests.stacks.helpers import actions, function, props

TEAM_QUEUES = {f"{team.name}Events" for team in TEAMS}


@pytest.fixture(scope="module", params=["sandbox", "production"])
def template(request, tmp_path_factory):
    app = App(outdir=str(tmp_path_factory.mktemp(f"netflix-{request.param}")), context={"profile": request.param})
    CaseNetflixStack(app, "CaseNetflix", profile=Profile.of(app))
    return app.synth().get_stack_by_name("CaseNetflix").template


def _granted(template: dict, logical_id: str) -> set[str]:
    role = props(template, "AWS::Lambda::Function")[logical_id]["Role"]["Fn::GetAtt"][0]
    return {
        a
        for p in props(template, "AWS::IAM::ManagedPolicy").values()
        if {"Ref": role} in p.get("Roles", [])
        for s in p["PolicyDocument"]["Statement"]
        for a in actions(s)
    }


def test_each_team_has_its_own_rule_queue_dlq_and_function(template):
    rules = props(template, "AWS::Events::Rule")
    queues = props(template, "AWS::SQS::Queue")
    team_rules = {k: r for k, r in rules.items() if any(r["Targets"][0]["Arn"]["Fn::GetAtt"][0].startswith(q) for q in TEAM_QUEUES)}
    assert len(team_rules) == len(TEAMS) == 3
    targets = {r["Targets"][0]["Arn"]["Fn::GetAtt"][0] for r in team_rules.values()}
    assert len(targets) == 3  # one queue per team, none shared
    for rule in team_rules.values():
        assert "DeadLetterConfig" in rule["Targets"][0] and rule["Targets"][0]["RetryPolicy"]["MaximumRetryAttempts"] >= 1
    for queue_id in targets:
        assert int(queues[queue_id]["RedrivePolicy"]["maxReceiveCount"]) == 5
    mappings = [m for m in props(template, "AWS::Lambda::EventSourceMapping").values() if m["EventSourceArn"]["Fn::GetAtt"][0] in targets]
    consumers = {m["FunctionName"]["Ref"] for m in mappings}
    assert len(consumers) == 3 and all(m["FunctionResponseTypes"] == ["ReportBatchItemFailures"] for m in mappings)
    names = {props(template, "AWS::Lambda::Function")[c]["Environment"]["Variables"]["TEAM_NAME"] for c in consumers}
    assert names == {team.name for team in TEAMS}


def test_the_quality_rule_filters_on_the_rebuffer_count(template):
    patterns = [r["EventPattern"] for r in props(template, "AWS::Events::Rule").values()]
    assert {"detail": {"rebuffer_count": [{"numeric": [">", 0]}]}, "detail-type": ["PlaybackStopped"], "source": ["netflix.playback"]} in patterns


def test_team_consumers_may_only_read_and_update_the_breaker_table(template):
    consumers = [k for k, f in props(template, "AWS::Lambda::Function").items() if "TEAM_NAME" in f.get("Environment", {}).get("Variables", {})]
    assert len(consumers) == 3
    for consumer in consumers:
        assert {a for a in _granted(template, consumer) if a.startswith("dynamodb:")} == {"dynamodb:GetItem", "dynamodb:UpdateItem"}
        assert not any(a.startswith("events:") for a in _granted(template, consumer))


def test_the_encoding_workflow_encodes_then_publishes_and_discards_on_failure(template):
    (machine,) = props(template, "AWS::StepFunctions::StateMachine").values()
    definition = json.loads("".join(p if isinstance(p, str) else "X" for p in machine["DefinitionString"]["Fn::Join"][1]))
    states = definition["States"]
    order, name = [], states["Start"]["Default"]
    while states[name]["Type"] != "Succeed":
        order.append(name)
        name = states[name]["Next"]
    assert order == ["EncodeRenditions", "PublishTitle"]
    entry = {c["StringEquals"]: c["Next"] for c in states["Compensate from"]["Choices"]}
    assert entry == {"EncodeRenditions": "DiscardRenditions", "PublishTitle": "DiscardRenditions"}
    encoder, _ = function(template, "case_netflix_encoding")
    granted = _granted(template, encoder)
    assert "events:PutEvents" in granted and {a for a in granted if a.startswith("dynamodb:")} == {
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
    }
    starter, _ = function(template, "case_netflix_encoding_starter")
    assert {a for a in _granted(template, starter) if a.startswith("states:")} == {"states:StartExecution"}
