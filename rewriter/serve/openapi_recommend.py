"""The OpenAPI description of `/_affinity/recommend` (serve/recommend.py), merged into the
proxy's document by serve/openapi.py."""

from __future__ import annotations

from typing import Any

from rewriter.recommend.models import MAX_SIZE, MODELS

JSONObj = dict[str, Any]
JSON = "application/json"

RECOMMEND_BODY: JSONObj = {
    "type": "object",
    "required": ["model"],
    "additionalProperties": False,
    "properties": {
        "index": {"type": "string", "description": "The catalog index (default: the catalog)"},
        "model": {"type": "string", "enum": list(MODELS)},
        "item": {"type": "string", "description": "The item (related, bought_together)"},
        "size": {"type": "integer", "minimum": 1, "maximum": MAX_SIZE},
        "filter": {"type": "object", "description": "One query DSL clause the items must match"},
        "exclude_seen": {"type": "boolean", "description": "Leave out items the user has seen"},
    },
}


def _param(name: str, description: str, schema: JSONObj) -> JSONObj:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


def _responses() -> JSONObj:
    ok = {
        "description": "OpenSearch's search response plus `recommendation_id` and "
        "`personalization` (model, source, why, fallbacks)",
        "content": {JSON: {"schema": {"type": "object", "required": ["hits"]}}},
    }
    errors = ("400", "403", "404", "413", "503", "504")
    return {"200": ok, **{c: {"$ref": f"#/components/responses/E{c}"} for c in errors}}


def recommend_ops(headers: list[JSONObj]) -> JSONObj:
    """GET (URL parameters) and POST (JSON body) of /_affinity/recommend."""
    props = RECOMMEND_BODY["properties"]
    params = [
        _param(name, schema.get("description", name), {**schema, "description": None})
        for name, schema in props.items()
    ]
    for p in params:
        p["schema"] = {k: v for k, v in p["schema"].items() if k != "description"}
        if p["name"] == "filter":
            p["schema"] = {"type": "string", "format": "json-object"}
    summary = "Recommendation carousel for the user: " + ", ".join(MODELS)
    get = {
        "operationId": "get_recommend",
        "summary": summary,
        "parameters": [*headers, *params],
        "responses": _responses(),
    }
    post = {
        "operationId": "post_recommend",
        "summary": summary,
        "parameters": headers,
        "requestBody": {"required": True, "content": {JSON: {"schema": RECOMMEND_BODY}}},
        "responses": _responses(),
    }
    return {"get": get, "post": post}


def placements_ops(headers: list[JSONObj]) -> JSONObj:
    """GET /_affinity/placements?slot=NAME."""
    params = [
        {
            "name": "slot",
            "in": "query",
            "required": True,
            "description": "The page slot",
            "schema": {"type": "string", "minLength": 1, "maxLength": 200},
        },
        _param(
            "query",
            "Search words, for placements with a query condition",
            {"type": "string", "maxLength": 1000},
        ),
    ]
    ok = {
        "description": "The decision: slot, placement (null when none is eligible), content, "
        "decision_id, experiment, variant, segments",
        "content": {JSON: {"schema": {"type": "object", "required": ["slot", "placement"]}}},
    }
    errors = {c: {"$ref": f"#/components/responses/E{c}"} for c in ("400", "404", "503", "504")}
    return {
        "get": {
            "operationId": "get_placement",
            "summary": "The placement of a page slot",
            "parameters": [*headers, *params],
            "responses": {"200": ok, **errors},
        }
    }
