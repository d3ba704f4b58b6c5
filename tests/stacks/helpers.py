"""Reading synthesized templates in the blueprint tests."""

from __future__ import annotations


def props(template: dict, resource_type: str) -> dict[str, dict]:
    """Logical id -> Properties of every resource of ``resource_type``."""
    return {k: v["Properties"] for k, v in template["Resources"].items() if v["Type"] == resource_type}


def function(template: dict, service: str) -> tuple[str, dict]:
    """The one function whose Powertools service name is ``service``: (logical id, Properties)."""
    (found,) = [
        (k, f)
        for k, f in props(template, "AWS::Lambda::Function").items()
        if f.get("Environment", {}).get("Variables", {}).get("POWERTOOLS_SERVICE_NAME") == service
    ]
    return found


def statements(template: dict) -> list[dict]:
    """Every statement of every customer-managed policy."""
    return [s for p in props(template, "AWS::IAM::ManagedPolicy").values() for s in p["PolicyDocument"]["Statement"]]


def actions(statement: dict) -> list[str]:
    return statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
