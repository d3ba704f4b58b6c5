"""Reading synthesized CloudFormation templates: what a reference names."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def referenced(value: Any) -> str | None:
    """The logical id a ``{"Ref": id}`` or ``{"Fn::GetAtt": [id, attribute]}`` names, or None."""
    if isinstance(value, Mapping):
        if isinstance(value.get("Ref"), str):
            return value["Ref"]
        attribute = value.get("Fn::GetAtt")
        if isinstance(attribute, list) and attribute:
            return attribute[0]
    return None
