"""Small stacks for construct unit tests."""

from __future__ import annotations

from aws_cdk import App, Stack
from aws_cdk.assertions import Template


def new_stack(profile: str = "sandbox") -> Stack:
    app = App(context={"profile": profile})
    return Stack(app, "Test")


def template(stack: Stack) -> Template:
    return Template.from_stack(stack)


def resources(stack: Stack, resource_type: str) -> dict:
    return template(stack).find_resources(resource_type)


def only(found: dict) -> tuple[str, dict]:
    assert len(found) == 1, f"expected one resource, found {len(found)}: {sorted(found)}"
    return next(iter(found.items()))


def statements(stack: Stack) -> list[dict]:
    """Every statement of every customer-managed policy in ``stack``."""
    return [s for p in resources(stack, "AWS::IAM::ManagedPolicy").values() for s in p["Properties"]["PolicyDocument"]["Statement"]]


def actions(statement: dict) -> list[str]:
    return statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]


#: Pseudo parameters for :func:`evaluate`: a stack named with 40 characters in a long region name.
PSEUDO = {
    "AWS::StackName": "S" * 40,
    "AWS::StackId": "arn:aws:cloudformation:ap-southeast-5:123456789012:stack/" + "S" * 40 + "/1c2fa620-982a-11e3-aff7-50e2416294e0",
    "AWS::Region": "ap-southeast-5",
    "AWS::AccountId": "123456789012",
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
}


def evaluate(value, pseudo: dict[str, str] | None = None):
    """What CloudFormation makes of ``value`` built from literals, pseudo parameters, Fn::Join, Fn::Select and Fn::Split."""
    pseudo = {**PSEUDO, **(pseudo or {})}
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return [evaluate(v, pseudo) for v in value]
    ((function, argument),) = value.items()
    if function == "Ref":
        return pseudo[argument]
    if function == "Fn::Join":
        separator, parts = argument
        return separator.join(evaluate(parts, pseudo))
    if function == "Fn::Select":
        index, items = argument
        return evaluate(items, pseudo)[int(index)]
    if function == "Fn::Split":
        separator, text = argument
        return evaluate(text, pseudo).split(separator)
    raise ValueError(f"cannot evaluate {function} in a name")
