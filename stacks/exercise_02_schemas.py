"""JSON Schemas (draft 4) of the Exercise 02 events, one per event type and version, for the schema registry."""

from __future__ import annotations

import json

_ORDER_V1 = {
    "order_id": {"type": "string", "minLength": 1},
    "customer_id": {"type": "string", "minLength": 1},
    "total": {"type": "number", "minimum": 0},
    "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
}
_ITEMS = {
    "type": "array",
    "minItems": 1,
    "maxItems": 50,
    "items": {
        "type": "object",
        "required": ["sku", "quantity"],
        "properties": {"sku": {"type": "string", "minLength": 1}, "quantity": {"type": "integer", "minimum": 1}},
    },
}


def _schema(title: str, version: int, properties: dict, required: list[str]) -> str:
    detail = {
        "type": "object",
        "required": ["version", *required],
        "properties": {"version": {"type": "integer", "enum": [version]}, **properties},
    }
    return json.dumps(
        {
            "$schema": "http://json-schema.org/draft-04/schema#",
            "title": f"{title} v{version}",
            "type": "object",
            "required": ["detail-type", "source", "detail"],
            "properties": {"detail-type": {"type": "string", "enum": [title]}, "source": {"type": "string"}, "detail": detail},
        },
        sort_keys=True,
    )


def event_schemas() -> dict[str, str]:
    """Registry schema name -> schema document, for every event type and version the services accept."""
    order_v1 = list(_ORDER_V1)
    schemas = {}
    for detail_type in ("OrderPlaced", "OrderCancelled"):
        schemas[f"blueprints.orders@{detail_type}.v1"] = _schema(detail_type, 1, _ORDER_V1, order_v1)
        schemas[f"blueprints.orders@{detail_type}.v2"] = _schema(detail_type, 2, {**_ORDER_V1, "items": _ITEMS}, [*order_v1, "items"])
    for detail_type in ("StockReserved", "StockReleased"):
        schemas[f"blueprints.inventory@{detail_type}.v1"] = _schema(
            detail_type, 1, {"order_id": _ORDER_V1["order_id"], "items": {**_ITEMS, "minItems": 0}}, ["order_id", "items"]
        )
    schemas["blueprints.inventory@StockShortage.v1"] = _schema(
        "StockShortage",
        1,
        {"order_id": _ORDER_V1["order_id"], "missing": {"type": "array", "minItems": 1, "items": {"type": "string"}}},
        ["order_id", "missing"],
    )
    schemas["blueprints.scheduler@DailyReportRequested.v1"] = _schema("DailyReportRequested", 1, {"report": {"type": "string"}}, ["report"])
    schemas["blueprints.warehouse@RestockRequested.v1"] = _schema(
        "RestockRequested",
        1,
        {
            "kind": {"type": "string", "enum": ["restock"]},
            "request_id": {"type": "string", "minLength": 1},
            "sku": {"type": "string"},
            "quantity": {"type": "integer", "minimum": 1},
        },
        ["kind", "request_id", "sku", "quantity"],
    )
    return schemas
