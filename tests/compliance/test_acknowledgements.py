"""The public acknowledgements module: each function is named after the rule it acknowledges, and records what it hides."""

from __future__ import annotations

import inspect
import re

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_sns as sns
from constructs import Construct

from messaging_constructs import acknowledgements
from messaging_constructs.acknowledgements import ACKNOWLEDGEMENT_METADATA, AWS_REQUIRED, NOT_OFFERED, OPERATOR_CHOICE, RULE_DEFECT, SANDBOX_COST

FUNCTIONS = [name for name in acknowledgements.__all__ if inspect.isfunction(getattr(acknowledgements, name)) and name != "acknowledge"]


def _apply(name: str) -> list[dict]:
    """Apply acknowledgement ``name`` to a construct of a new stack; the findings it records."""
    stack = Stack(App(), "Test")
    target = Construct(stack, "Target")
    function = getattr(acknowledgements, name)
    parameters = list(inspect.signature(function).parameters)
    if parameters == ["queue", "role"]:
        function(target, "dead-letter queue of a test")
    elif parameters == ["policy", "topic"]:
        function(target, sns.Topic(stack, "Topic"))
    elif parameters == ["policy", "log_group_arns"]:
        function(target, ["arn:aws:logs:us-east-1:123456789012:log-group:/test"])
    elif parameters == ["policy", "object_arns"]:
        function(target, ["arn:aws:s3:::lake/warehouse/*"])
    elif parameters == ["policy", "executions_arn"]:
        function(target, "arn:aws:states:us-east-1:123456789012:execution:saga:*")
    elif parameters == ["grantee", "connections_arn"]:
        function(target, "arn:aws:execute-api:us-east-1:123456789012:a1b2c3/v1/POST/@connections/*")
    elif parameters == ["api"]:  # a WebSocket API's routes, as aws-cdk-lib names them
        for route in ("$connect", "$disconnect", "$default"):
            Construct(target, f"{route}-Route")
        function(target)
    elif parameters == ["secrets"]:
        function([target])
    else:
        function(target)
    return [entry.data for node in target.node.find_all() for entry in node.node.metadata if entry.type == ACKNOWLEDGEMENT_METADATA]


def _flat(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def test_the_module_is_public_and_lists_its_functions():
    assert len(FUNCTIONS) == 30
    assert all(getattr(acknowledgements, name).__doc__ for name in FUNCTIONS)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_each_function_is_named_after_the_rule_it_acknowledges(name):
    """``aws_solutions_sqs3`` -> ``AwsSolutions-SQS3``; a rule of several packs by the rule alone (``lambda_inside_vpc``)."""
    findings = _apply(name)
    assert findings, name
    rules = {finding["id"].split("[")[0] for finding in findings}
    named = any(_flat(name).startswith(_flat(rule)) or _flat(name).startswith(_flat(rule.split("-", 1)[1])) for rule in rules)
    assert named, f"{name} acknowledges {sorted(rules)}"
    assert {finding["kind"] for finding in findings} <= {RULE_DEFECT, AWS_REQUIRED, SANDBOX_COST, NOT_OFFERED, OPERATOR_CHOICE}
    assert all(len(finding["reason"]) > 40 for finding in findings)
