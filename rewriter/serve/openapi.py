"""The OpenAPI 3 description of the proxy's own HTTP contract, served at
`GET /_affinity/openapi.json` and read by the fuzzer (rewriter/measure/fuzz.py).

Every route of serve/app.py (ROUTES, `POST /events`, health and this document) is described:
the headers that steer personalization, the query parameters the proxy reads itself, the
bodies (JSON; NDJSON for `_msearch` and `/events`) and the responses, errors included. Every
error the proxy answers itself has one shape (serve/errors.py), OpenSearch's; errors the engine
answers are passed through with their own status and body, which has the same shape.

Paths the proxy does not serve are refused with 403 and that error shape; OpenAPI cannot
describe "every other path", so the document says it in `info.description`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from rewriter.serve.errors import json_response
from rewriter.serve.openapi_recommend import placements_ops, recommend_ops

JSONObj = dict[str, Any]

OPENAPI_PATH = "/_affinity/openapi.json"

INDEX_PATTERN = r"^[a-z0-9][a-z0-9_.,+-]*$"
"""Index expressions the proxy forwards (serve/search.py `_check_index`); wildcards, `_all`
and affinity's own indices are refused with 403 even when they match."""

NDJSON = "application/x-ndjson"
JSON = "application/json"

ERROR_CODES = {
    "400": "A request the proxy or the engine cannot use: the reason names the header, "
    "parameter or field, and what to send",
    "403": "An index expression or endpoint the proxy does not forward (wildcards, `_all`, "
    "affinity's own indices)",
    "404": "The engine found no such index or scroll",
    "413": "The body is over the proxy's limit (1 MiB a search, 8 MiB an msearch, 16 MiB of "
    "events), or an msearch holds more than 100 searches",
    "503": "OpenSearch is unreachable (the proxy recovers on the next request)",
    "504": "OpenSearch did not answer within AFFINITY_TIMEOUT",
}


def _ref(name: str) -> JSONObj:
    return {"$ref": f"#/components/schemas/{name}"}


def _header(name: str, description: str, schema: JSONObj | None = None) -> JSONObj:
    return {
        "name": name,
        "in": "header",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }


def _query(name: str, description: str, schema: JSONObj) -> JSONObj:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


def _headers(boost_profiles: Sequence[str]) -> list[JSONObj]:
    """The request headers of a search; X-Boost-Profile lists the loaded profiles."""
    boost: JSONObj = {"type": "string"}
    if boost_profiles:
        boost["enum"] = sorted(boost_profiles)
    return [
        _header(
            "X-User-Id",
            "The raw user id; pseudonymized inside (raw ids never reach an index). Without it "
            "the search is generic or cold-start.",
            {"type": "string", "maxLength": 512},
        ),
        _header(
            "X-User-Context",
            'A JSON object with the request context, e.g. {"device": "mobile", "geo": "DE"}; '
            "segments of boost profiles read it. Not JSON, or not an object: 400.",
            {"type": "string", "format": "json-object"},
        ),
        _header(
            "X-Boost-Profile",
            "The boost profile to rank with, by name (profiles/*.yaml; the loaded ones are "
            "listed); another name: 400.",
            boost,
        ),
        _header(
            "X-Personalization",
            "`off` (or 0, false) gives the generic view, identical to a direct query.",
            {"type": "string", "enum": ["on", "off"]},
        ),
    ]


INDEX_PARAM = {
    "name": "index",
    "in": "path",
    "required": True,
    "description": "One index or a comma-separated list; no wildcards, `_all`, remote "
    "clusters, date math, or affinity's own indices.",
    "schema": {"type": "string", "pattern": INDEX_PATTERN, "minLength": 1, "maxLength": 255},
}

INT32 = {"type": "integer", "minimum": 0, "maximum": 2147483647}

SEARCH_PARAMS = [
    _query(
        "explain",
        "`true` adds `_affinity` (relevance, affinity, matched values) to each hit.",
        {"type": "boolean"},
    ),
    _query("from", "The first hit to return; moved into the body before the rewrite.", INT32),
    _query("size", "How many hits to return; moved into the body before the rewrite.", INT32),
    _query(
        "sort",
        "`field:order,...`; joins the body's sort. A field sort is not personalized.",
        {"type": "string"},
    ),
    _query(
        "scroll",
        "Keep a scroll context alive this long (e.g. `1m`): forwarded generic.",
        {"type": "string", "pattern": r"^[0-9]+(ms|s|m|h|d)$"},
    ),
]


def _responses(ok: str, ok_schema: JSONObj, *codes: str, ok_code: str = "200") -> JSONObj:
    out: JSONObj = {ok_code: {"description": ok, "content": {JSON: {"schema": ok_schema}}}}
    for code in codes:
        out[code] = {"$ref": f"#/components/responses/E{code}"}
    return out


def _body(schema: JSONObj, media: str = JSON, description: str = "") -> JSONObj:
    return {"required": False, "description": description, "content": {media: {"schema": schema}}}


def _operation(
    op_id: str, summary: str, responses: JSONObj, params: list[JSONObj], body: JSONObj | None
) -> JSONObj:
    op: JSONObj = {
        "operationId": op_id,
        "summary": summary,
        "parameters": params,
        "responses": responses,
    }
    if body is not None:
        op["requestBody"] = body
    return op


def _search_ops(with_index: bool, headers: list[JSONObj]) -> JSONObj:
    params = [*([INDEX_PARAM] if with_index else []), *headers, *SEARCH_PARAMS]
    responses = _responses(
        "OpenSearch's response plus `personalization`",
        _ref("SearchResponse"),
        "400",
        "403",
        "404",
        "413",
        "503",
        "504",
    )
    body = _body(_ref("SearchBody"), description="A search body, as for OpenSearch")
    summary = "Search the named indices, personalized for X-User-Id"
    if not with_index:
        summary = (
            "Refused (403): a search without an index would search every index, affinity's "
            "private ones included; use /{index}/_search"
        )
        responses = {"403": {"$ref": "#/components/responses/E403"}}
    return {
        m: _operation(
            f"{m}_search{'_index' if with_index else ''}", summary, responses, params, body
        )
        for m in ("get", "post")
    }


def _msearch_ops(with_index: bool, headers: list[JSONObj]) -> JSONObj:
    params = [*([INDEX_PARAM] if with_index else []), *headers]
    responses = _responses(
        "OpenSearch's `responses`, each with `personalization`",
        _ref("MsearchResponse"),
        "400",
        "403",
        "404",
        "413",
        "503",
        "504",
    )
    body = _body(
        {"type": "array", "items": {"type": "object"}, "minItems": 2, "maxItems": 200},
        NDJSON,
        "Header and body lines in pairs (at most 100 searches), one JSON object per line; a "
        "header without `index` uses the path's index.",
    )
    return {
        m: _operation(
            f"{m}_msearch{'_index' if with_index else ''}",
            "Several searches, each personalized",
            responses,
            params,
            body,
        )
        for m in ("get", "post")
    }


def _count_ops() -> JSONObj:
    responses = _responses(
        "OpenSearch's count",
        {"type": "object", "properties": {"count": {"type": "integer"}}},
        "400",
        "403",
        "404",
        "413",
        "503",
        "504",
    )
    body = _body(
        {"type": "object", "properties": {"query": _ref("Query")}},
        description="An optional query",
    )
    return {
        m: _operation(
            f"{m}_count",
            "Count matching documents (forwarded as is)",
            responses,
            [INDEX_PARAM],
            body,
        )
        for m in ("get", "post")
    }


def _scroll_ops() -> JSONObj:
    responses = _responses(
        "OpenSearch's scroll page", {"type": "object"}, "400", "404", "503", "504"
    )
    page_body = _body(
        {
            "type": "object",
            "properties": {"scroll": {"type": "string"}, "scroll_id": {"type": "string"}},
        },
        description="The scroll id of the previous page and how long to keep the context",
    )
    clear_body = _body(
        {
            "type": "object",
            "properties": {
                "scroll_id": {
                    "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]
                }
            },
        },
        description="The scroll ids to clear",
    )
    params = [_query("scroll_id", "The scroll id (instead of the body)", {"type": "string"})]
    return {
        "get": _operation("get_scroll", "Next scroll page (generic)", responses, params, page_body),
        "post": _operation(
            "post_scroll", "Next scroll page (generic)", responses, params, page_body
        ),
        "delete": _operation(
            "delete_scroll", "Clear scroll contexts", responses, params, clear_body
        ),
    }


def _events_op() -> JSONObj:
    params = [
        _header(
            "X-User-Id",
            "Fills `user_id` of events that have none",
            {"type": "string", "maxLength": 512},
        ),
        _query(
            "wait_for_profiles",
            "`true`: answer only after the events are folded into the profiles",
            {"type": "boolean"},
        ),
    ]
    responses = _responses(
        "The accepted events are durable; counts and a reason per rejected event",
        _ref("EventsSummary"),
        "413",
        "503",
        ok_code="202",
    )
    responses["400"] = {
        "description": "Nothing in the body is a valid event (the summary says why, per "
        "event), or the body as a whole is unusable (the error shape)",
        "content": {JSON: {"schema": {"oneOf": [_ref("EventsSummary"), _ref("Error")]}}},
    }
    responses["429"] = {
        "description": "The write queue is full; nothing was stored: send it again after "
        "Retry-After seconds",
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
        "content": {JSON: {"schema": _ref("Error")}},
    }
    body = {
        "required": True,
        "description": "A JSON array of events, one event object, or NDJSON (one per line)",
        "content": {
            JSON: {
                "schema": {
                    "oneOf": [
                        {"type": "array", "items": _ref("Event"), "maxItems": 10000},
                        _ref("Event"),
                    ]
                }
            },
            NDJSON: {"schema": {"type": "array", "items": _ref("Event"), "maxItems": 10000}},
        },
    }
    op = _operation("post_events", "Record user events", responses, params, body)
    return {"post": op}


def _simple_get(op_id: str, summary: str, responses: JSONObj) -> JSONObj:
    return {"get": _operation(op_id, summary, responses, [], None)}


def _root_ops() -> JSONObj:
    responses = _responses("OpenSearch's cluster info", {"type": "object"}, "503", "504")
    return {"get": _operation("get_root", "The engine's info (forwarded)", responses, [], None)}


def _health_responses() -> JSONObj:
    body = _ref("Health")
    return {
        "200": {
            "description": "The engine is green or yellow",
            "content": {JSON: {"schema": body}},
        },
        "503": {
            "description": "The engine is red or unreachable",
            "content": {JSON: {"schema": body}},
        },
    }


QUERY_SCHEMA: JSONObj = {
    "type": "object",
    "description": "An OpenSearch query (any query type; a few are spelled out for the fuzzer)",
    "properties": {
        "match_all": {"type": "object"},
        "match": {"type": "object", "additionalProperties": {"type": "string"}},
        "term": {"type": "object", "additionalProperties": {"type": "string"}},
        "terms": {
            "type": "object",
            "additionalProperties": {"type": "array", "items": {"type": "string"}},
        },
        "multi_match": {
            "type": "object",
            "properties": {
                "query": {"type": "string"},
                "fields": {"type": "array", "items": {"type": "string"}},
            },
        },
        "range": {"type": "object"},
        "bool": {
            "type": "object",
            "properties": {
                key: {
                    "type": "array",
                    "items": {"$ref": "#/components/schemas/Query"},
                    "maxItems": 3,
                }
                for key in ("must", "should", "filter", "must_not")
            },
        },
    },
    "maxProperties": 1,
}

SEARCH_BODY_SCHEMA: JSONObj = {
    "type": "object",
    "properties": {
        "query": _ref("Query"),
        "from": {"type": "integer"},
        "size": {"type": "integer"},
        "sort": {
            "oneOf": [
                {"type": "string"},
                {"type": "array", "items": {"oneOf": [{"type": "string"}, {"type": "object"}]}},
                {"type": "object"},
            ]
        },
        "_source": {"oneOf": [{"type": "boolean"}, {"type": "array", "items": {"type": "string"}}]},
        "track_total_hits": {"oneOf": [{"type": "boolean"}, {"type": "integer"}]},
        "aggs": {"type": "object"},
        "post_filter": _ref("Query"),
        "rescore": {"oneOf": [{"type": "object"}, {"type": "array", "items": {"type": "object"}}]},
        "search_after": {"type": "array"},
        "min_score": {"type": "number"},
        "collapse": {"type": "object", "properties": {"field": {"type": "string"}}},
    },
}

EVENT_SCHEMA: JSONObj = {
    "type": "object",
    "required": ["type", "item_id", "timestamp"],
    "properties": {
        "event_id": {"type": "string", "maxLength": 512},
        "user_id": {"type": "string", "maxLength": 512},
        "type": {"type": "string", "description": "a key of the fold profile's event_weights"},
        "item_id": {"type": "string", "maxLength": 512},
        "timestamp": {
            "oneOf": [{"type": "string", "format": "date-time"}, {"type": "number"}],
            "description": "ISO 8601 or epoch seconds/milliseconds, 1990 to a day ahead",
        },
        "query": {"type": "string", "maxLength": 2048},
        "query_id": {"type": "string"},
        "position": {"type": "integer", "minimum": 0},
        "value": {"type": "number", "minimum": 0},
        "price": {"type": "number", "minimum": 0},
        "quantity": {"type": "integer", "minimum": 1},
        "session_id": {"type": "string"},
        "context": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "maxProperties": 32,
        },
        "experiment": {"type": "string"},
        "variant": {"type": "string"},
        "opt_out": {"type": "boolean"},
        "attributes": {
            "type": "object",
            "additionalProperties": {
                "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]
            },
        },
    },
}

EVENTS_SUMMARY_SCHEMA: JSONObj = {
    "type": "object",
    "required": ["accepted", "duplicates", "not_stored", "rejected", "rejections", "notes"],
    "properties": {
        "accepted": {"type": "integer"},
        "duplicates": {"type": "integer"},
        "not_stored": {"type": "integer"},
        "rejected": {"type": "integer"},
        "rejections": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["index", "field", "reason"],
                "properties": {
                    "index": {"type": "integer"},
                    "line": {"type": "integer"},
                    "field": {"type": "string"},
                    "reason": {"type": "string"},
                    "event_id": {"type": "string"},
                },
            },
        },
        "notes": {"type": "array", "items": {"type": "string"}},
        "folded": {"type": "boolean"},
    },
}

ERROR_SCHEMA: JSONObj = {
    "type": "object",
    "required": ["error", "status"],
    "description": "OpenSearch's error body: `type` says which error, `reason` what happened "
    "and what to do (naming the header, parameter, field or index)",
    "properties": {
        "error": {
            "type": "object",
            "required": ["type", "reason"],
            "properties": {"type": {"type": "string"}, "reason": {"type": "string"}},
        },
        "status": {"type": "integer"},
    },
}

PERSONALIZATION_SCHEMA: JSONObj = {
    "type": "object",
    "required": ["applied", "reason", "boost_profile"],
    "properties": {
        "applied": {"type": "boolean"},
        "reason": {"type": "string", "nullable": True},
        "mode": {"type": "string", "nullable": True},
        "shape": {"type": "string", "nullable": True},
        "alpha_eff": {"type": "number"},
        "window": {"type": "integer", "nullable": True},
        "page_beyond_window": {"type": "boolean"},
        "segments": {"type": "array", "items": {"type": "string"}},
        "rules_fired": {"type": "array", "items": {"type": "string"}},
        "pinned": {"type": "array", "items": {"type": "object"}},
        "boost_profile": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "version": {"type": "string"}},
        },
        "query_id": {"type": "string"},
    },
}

HEALTH_SCHEMA: JSONObj = {
    "type": "object",
    "required": ["status", "engine", "boost_profiles", "boost_profile_errors"],
    "properties": {
        "status": {"type": "string", "enum": ["ok", "degraded"]},
        "engine": {"type": "string"},
        "boost_profiles": {"type": "object"},
        "boost_profile_errors": {"type": "array", "items": {"type": "string"}},
        "profile_cache": {
            "type": "object",
            "nullable": True,
            "description": "Hits, misses, hit rate, size and the change feed's state",
        },
    },
}


def _components() -> JSONObj:
    return {
        "schemas": {
            "Query": QUERY_SCHEMA,
            "SearchBody": SEARCH_BODY_SCHEMA,
            "SearchResponse": {
                "type": "object",
                "required": ["hits", "personalization"],
                "properties": {
                    "hits": {"type": "object"},
                    "personalization": _ref("Personalization"),
                },
            },
            "MsearchResponse": {
                "type": "object",
                "required": ["responses"],
                "properties": {"responses": {"type": "array", "items": {"type": "object"}}},
            },
            "Personalization": PERSONALIZATION_SCHEMA,
            "Event": EVENT_SCHEMA,
            "EventsSummary": EVENTS_SUMMARY_SCHEMA,
            "Health": HEALTH_SCHEMA,
            "Error": ERROR_SCHEMA,
        },
        "responses": {
            f"E{code}": {"description": text, "content": {JSON: {"schema": _ref("Error")}}}
            for code, text in ERROR_CODES.items()
        },
    }


DESCRIPTION = """\
affinity's rewriter proxy: an OpenSearch-compatible endpoint that personalizes searches for
`X-User-Id`, plus `POST /events`. Every path not listed here (admin and write endpoints,
`_bulk`, `_delete_by_query`, `_scripts`, ...) is refused with 403 and the error shape
(`affinity_forbidden_endpoint`). Errors the proxy answers itself and errors the engine answers
share OpenSearch's error shape: `{"error": {"type", "reason"}, "status"}`. URL parameters not
listed are forwarded to OpenSearch, except that `format` may only be `json`, `error_trace`
only `true` or `false`, and `source` is refused (400); a forwarded URL over 4,000 bytes is a
414."""


def _with_head(paths: JSONObj) -> JSONObj:
    """Every GET also answers HEAD (Starlette adds it): the same request, no body back."""
    for item in paths.values():
        if "get" in item and "head" not in item:
            get = item["get"]
            head = {**get, "operationId": "head" + get["operationId"][3:]}
            head["responses"] = {
                code: {"description": r.get("description", "See GET")}
                for code, r in get["responses"].items()
            }
            item["head"] = head
    return paths


def _suggest_ops(headers: list[JSONObj]) -> JSONObj:
    """GET /_affinity/suggest (serve/suggest.py)."""
    params = [
        {**_query("index", "The catalog whose suggestions to search (one index).", {}),
         "required": True, "schema": {"type": "string", "pattern": INDEX_PATTERN}},
        _query("q", "What the user typed so far (up to 100 characters).", {"type": "string"}),
        _query("size", "How many suggestions (1..50, default 8).", {"type": "integer"}),
        _query("explain", "`true` adds `why` to each suggestion.", {"type": "boolean"}),
        *headers,
    ]  # fmt: skip
    body = {"type": "object", "properties": {"suggestions": {"type": "array"}}}
    codes = ("400", "403", "404", "503", "504")
    responses = _responses("Suggestions, recent searches first", body, *codes)
    return {
        "get": _operation("get_suggest", "Suggestions as the user types", responses, params, None)
    }


def spec(boost_profiles: Sequence[str] = ()) -> JSONObj:
    """The OpenAPI 3.0 document of the proxy (a new dict on every call); `boost_profiles`
    are the names X-Boost-Profile accepts (the proxy's loaded profiles)."""
    headers = _headers(boost_profiles)
    return {
        "openapi": "3.0.3",
        "info": {"title": "affinity proxy", "version": "1", "description": DESCRIPTION},
        "paths": _with_head(
            {
                "/": _root_ops(),
                "/_affinity/health": _simple_get(
                    "health", "Engine health and the loaded boost profiles", _health_responses()
                ),
                OPENAPI_PATH: _simple_get(
                    "openapi",
                    "This document",
                    {
                        "200": {
                            "description": "OpenAPI 3",
                            "content": {JSON: {"schema": {"type": "object"}}},
                        }
                    },
                ),
                "/_affinity/metrics": _simple_get(
                    "metrics",
                    "Prometheus metrics (text format): requests, latency, cache, queues",
                    {
                        "200": {
                            "description": "Prometheus text exposition format 0.0.4",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                ),
                "/_search": _search_ops(False, headers),
                "/_msearch": _msearch_ops(False, headers),
                "/_search/scroll": _scroll_ops(),
                "/{index}/_search": _search_ops(True, headers),
                "/{index}/_msearch": _msearch_ops(True, headers),
                "/{index}/_count": _count_ops(),
                "/events": _events_op(),
                "/_affinity/suggest": _suggest_ops(headers),
                "/_affinity/recommend": recommend_ops(headers),
                "/_affinity/placements": placements_ops(headers),
            }
        ),
        "components": _components(),
    }


async def openapi(request: Request) -> Response:
    """GET /_affinity/openapi.json."""
    return json_response(spec(list(request.app.state.proxy.boost_profiles)))
