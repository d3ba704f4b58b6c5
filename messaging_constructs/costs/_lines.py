"""A priced line of an estimate, and the resources of a synthesized template by the name CDK gave them."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .._templates import referenced
from .prices import PriceTable

_HASH = re.compile(r"[0-9A-F]{8}$")


@dataclass(frozen=True)
class Line:
    """``quantity`` units of the price ``price`` for ``item``; ``usd`` is their cost."""

    item: str
    quantity: float
    price: str
    usd: float

    @classmethod
    def of(cls, item: str, quantity: float, price: str, prices: PriceTable) -> Line:
        return cls(item, quantity, price, quantity * prices[price].usd)


def construct_name(logical_id: str) -> str:
    """A logical id without the hash CDK appends (``Events948F067E`` -> ``Events``)."""
    return _HASH.sub("", logical_id) or logical_id


def total(lines: list[Line]) -> float:
    """The sum of the lines' costs."""
    return sum(line.usd for line in lines)


class Template:
    """A synthesized CloudFormation template's resources, looked up by logical id or by construct name."""

    def __init__(self, template: Mapping[str, Any]) -> None:
        self.resources: Mapping[str, Mapping[str, Any]] = template.get("Resources", {})

    def of_type(self, resource_type: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
        """``(logical id, properties)`` of every resource of one type."""
        for logical_id, resource in self.resources.items():
            if resource.get("Type") == resource_type:
                yield logical_id, resource.get("Properties", {})

    def named(self, name: str, resource_type: str) -> tuple[str, Mapping[str, Any]]:
        """The one resource of ``resource_type`` whose logical id is ``name`` (CDK's id path, joined) plus CDK's hash.

        ``Template.named("Orders", "AWS::SNS::Topic")`` finds ``Orders2A43276C`` (or ``OrdersTopic...``); an
        ambiguous or missing name is an error, so a renamed construct cannot be priced by mistake.
        """
        found = [
            (logical_id, properties)
            for logical_id, properties in self.of_type(resource_type)
            if _HASH.sub("", logical_id) in (name, f"{name}Resource", f"{name}Topic", f"{name}Queue", f"{name}Table", f"{name}Function")
        ]
        if len(found) != 1:
            raise LookupError(f"{len(found)} resources of type {resource_type} named {name!r} in the template")
        return found[0]

    def referring(self, resource_type: str, prop: str, logical_id: str) -> list[tuple[str, Mapping[str, Any]]]:
        """Resources of ``resource_type`` whose property ``prop`` refers to ``logical_id``."""
        return [(lid, props) for lid, props in self.of_type(resource_type) if referenced(props.get(prop)) == logical_id]
