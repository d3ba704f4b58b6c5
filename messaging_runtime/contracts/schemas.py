"""JSON Schema draft 4 from the contracts, for EventBridge's schema registry (``JSONSchemaDraft4``).

pydantic writes JSON Schema 2020-12; the registry reads draft 4. What differs
in the schemas the contracts produce is converted: ``$defs`` becomes
``definitions`` (and every ``$ref`` follows), ``const`` becomes a one-value
``enum``, numeric ``exclusiveMinimum``/``exclusiveMaximum`` become ``minimum``/
``maximum`` with the boolean flag, a ``$ref`` with siblings (ignored in draft 4)
moves into ``allOf``, and ``format: uuid`` (unknown to draft 4) becomes a
pattern. Any other keyword draft 4 does not know raises, so a schema is never
registered half-understood.

A registry schema describes the consumer's view: it does not forbid fields it
does not list, so an event from a producer that has added an optional field
still matches it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from ._base import Contract, EventKind

DRAFT_4 = "http://json-schema.org/draft-04/schema#"
UUID_PATTERN = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"

#: The keywords the converted schemas may hold: draft 4's, for the types the contracts use.
_DRAFT_4_KEYWORDS = frozenset(
    {
        "$ref", "title", "description", "default", "type", "enum", "allOf", "anyOf", "oneOf", "not",
        "properties", "patternProperties", "required", "additionalProperties", "minProperties", "maxProperties",
        "items", "minItems", "maxItems", "uniqueItems",
        "minLength", "maxLength", "pattern", "format",
        "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
    }
)  # fmt: skip
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf")


def json_schema(model: type[Contract], *, consumer: bool = True) -> dict[str, Any]:
    """The draft 4 schema of ``model``: the consumer's view (default) or, with ``consumer=False``, the producer's."""
    schema = (model.Consumer if consumer else model).model_json_schema(ref_template="#/$defs/{model}")
    definitions = schema.pop("$defs", {})
    renames = _readable_names(definitions)
    converted = _draft_4(schema, renames)
    if definitions:
        converted["definitions"] = {renames[name]: _draft_4(body, renames) for name, body in definitions.items()}
    return converted


def _readable_names(definitions: dict[str, Any]) -> dict[str, str]:
    """Each definition under its model's title (pydantic names a consumer view's after its class, ``Consumer``), when unique."""
    titles = [body.get("title", name) for name, body in definitions.items()]
    return {name: title if titles.count(title) == 1 else name for name, title in zip(definitions, titles, strict=True)}


def _draft_4(node: Any, renames: dict[str, str], *, in_properties: bool = False) -> Any:
    if isinstance(node, list):
        return [_draft_4(item, renames) for item in node]
    if not isinstance(node, dict):
        return node
    if in_properties:  # property names, each to its schema; pydantic's title for a property ("Order Id") says no more than its name
        return {name: {k: v for k, v in _draft_4(body, renames).items() if k != "title"} for name, body in node.items()}
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "$ref":
            out[key] = "#/definitions/" + renames[value.removeprefix("#/$defs/")]
        elif key == "const":
            out["enum"] = [value]
        elif key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        elif key == "format" and value == "uuid":
            out["pattern"] = UUID_PATTERN
        elif key in ("properties", "patternProperties"):
            out[key] = _draft_4(value, renames, in_properties=True)
        elif key in ("items", "additionalProperties", "not", *_SCHEMA_LISTS):
            out[key] = _draft_4(value, renames)
        elif key not in _DRAFT_4_KEYWORDS:
            raise ValueError(f"JSON Schema keyword {key!r} has no draft 4 equivalent here; extend the conversion before using it")
        else:
            out[key] = value
    if "$ref" in out and len(out) > 1:  # draft 4 ignores a $ref's siblings
        out = {**{k: v for k, v in out.items() if k != "$ref"}, "allOf": [{"$ref": out["$ref"]}]}
    return out


def registry_schema(kind: EventKind[Any], version: int | None = None) -> str:
    """The registry content for ``kind`` at ``version`` (default: the current one): the EventBridge event, its detail the contract.

    The event's ``detail-type`` and ``source`` are fixed to the kind's; the
    document is JSON with sorted keys, so the template changes only when the contract does.
    """
    version = kind.versions[-1] if version is None else version
    detail = json_schema(kind.model(version))
    definitions = detail.pop("definitions", {})
    definitions[detail["title"]] = detail
    document = {
        "$schema": DRAFT_4,
        "title": f"{kind.detail_type} v{version}",
        "description": f"{kind.detail_type} version {version} from {kind.source}. {detail.get('description', '')}".strip(),
        "type": "object",
        "required": ["detail-type", "source", "detail"],
        "properties": {
            "detail-type": {"type": "string", "enum": [kind.detail_type]},
            "source": {"type": "string", "enum": [kind.source]},
            "detail": {"$ref": f"#/definitions/{detail['title']}"},
        },
        "definitions": definitions,
    }
    return json.dumps(document, sort_keys=True)


def record_schema(kind: EventKind[Any], version: int | None = None) -> str:
    """The draft 4 schema of one record of ``kind`` at ``version`` (default: the current one), for a stream's schema registry
    (AWS Glue Schema Registry, JSON data format): the consumer's view, as the stream's consumers read it; sorted keys."""
    version = kind.versions[-1] if version is None else version
    return json.dumps({"$schema": DRAFT_4, **json_schema(kind.model(version))}, sort_keys=True)


def registry_schemas(kinds: Iterable[EventKind[Any]]) -> dict[str, str]:
    """Registry schema name (``<source>@<detail-type>.v<version>``) to content, for every version of every kind."""
    return {kind.registry_name(version): registry_schema(kind, version) for kind in kinds for version in kind.versions}
