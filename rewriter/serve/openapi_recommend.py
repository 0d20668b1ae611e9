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
