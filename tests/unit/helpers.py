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
