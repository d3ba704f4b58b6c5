"""Small stacks for construct unit tests."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from aws_cdk import App, Stack, Validations
from aws_cdk.assertions import Template

from messaging_constructs.acknowledgements import ACKNOWLEDGEMENT_METADATA


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


@dataclass
class Checked:
    """One synth with the five packs: what they found, the CDK warnings and errors, the acknowledgements, the template."""

    findings: list[tuple[str, str]] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    acknowledgements: list[dict] = field(default_factory=list)
    template: dict = field(default_factory=dict)
    template_file: Path | None = None


def synth_with_packs(app: App, outdir: Path, stack_name: str = "Test") -> Checked:
    """Synthesize ``app`` (made with ``outdir``) with the five cdk-nag packs; what they found and what CDK recorded."""
    from stacks.compliance import PACKS

    for pack in PACKS.values():
        Validations.of(app).add_plugins(pack(app))
    report = outdir / "validation-report.json"
    report.unlink(missing_ok=True)
    try:
        app.synth()
    except RuntimeError as error:  # raised by jsii when a plugin reports a violation
        if "ValidationFailed" not in str(error):
            raise
    template_file = outdir / f"{stack_name}.template.json"
    checked = Checked(template=json.loads(template_file.read_text()), template_file=template_file)
    if report.exists():
        for plugin in json.loads(report.read_text()).get("pluginReports", []):
            for violation in plugin.get("violations", []):
                checked.findings += [(violation["ruleName"], c["constructPath"]) for c in violation.get("violatingConstructs", [])]
    for path, entries in json.loads((outdir / f"{stack_name}.metadata.json").read_text()).items():
        for entry in entries:
            if entry["type"] in ("aws:cdk:warning", "aws:cdk:error"):
                checked.messages.append(f"{path}: {entry['data']}")
            elif entry["type"] == ACKNOWLEDGEMENT_METADATA:
                checked.acknowledgements.append({"path": path.lstrip("/"), **entry["data"]})
    return checked
