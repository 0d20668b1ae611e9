"""Regression tests for what the proxy fuzzer (rewriter/measure/fuzz.py) found: each request
once got a 5xx, reached the engine when it should not, or answered outside the error shape.
The engine is a stub that answers canned responses and records what it was sent."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from rewriter import config
from rewriter.engine.http_pool import EngineResponse
from rewriter.profiles.store import MemoryProfileStore
from rewriter.serve.app import create_app
from rewriter.serve.errors import JSON_TYPE
from rewriter.serve.limits import MAX_JSON_DEPTH, MAX_MSEARCH_SEARCHES, MAX_SEARCH_BODY_BYTES

HITS = {"took": 1, "hits": {"total": {"value": 1, "relation": "eq"}, "hits": [{"_score": 1.0}]}}


@dataclass
class StubEngine:
    """EngineHTTP's interface: answers `answer(method, path, params, content)`; records calls."""

    answer: Callable[..., tuple[int, Any]] = lambda *_: (200, HITS)
    calls: list[dict[str, Any]] = field(default_factory=list)

    async def request(self, method: str, path: str, **kwargs: Any) -> EngineResponse:
        self.calls.append({"method": method, "path": path, **kwargs})
        status, body = self.answer(method, path, kwargs.get("params"), kwargs.get("content"))
        return EngineResponse(status, orjson.dumps(body), JSON_TYPE)

    async def get(self, path: str, **kwargs: Any) -> EngineResponse:
        return await self.request("GET", path, **kwargs)

    async def close(self) -> None:
        return None


class Impressions:
    """The impression writer's interface: records what it is asked to log."""

    def __init__(self) -> None:
        self.logged: list[str] = []

    def record_search(self, user: Any, index: str, *_: Any) -> None:
        self.logged.append(index)

    def record_search_later(self, user: Any, index: str, *_: Any) -> None:
        self.logged.append(index)


def _send(
    tmp_path: Path,
    engine: StubEngine,
    method: str,
    url: str,
    impressions: Impressions | None = None,
    **kwargs: Any,
) -> httpx.Response:
    settings = replace(config.load({}), secret="unit-secret-0123456789", url="http://127.0.0.1:9")
    settings = replace(settings, impressions=False)
    (tmp_path / "default.yaml").write_text("name: default\n")
    app = create_app(
        settings,
        boost_dir=str(tmp_path),
        profiles=MemoryProfileStore(),
        http=engine,  # type: ignore[arg-type]
    )
    app.state.proxy.impressions = impressions

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://proxy") as client:
            return await client.request(method, url, **kwargs)

    return asyncio.run(go())


def _error(r: httpx.Response, status: int, kind: str, *fragments: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == JSON_TYPE
    body = r.json()
    assert body["status"] == status and body["error"]["type"] == kind, body
    for fragment in fragments:
        assert fragment in body["error"]["reason"], body


def _nested(depth: int) -> bytes:
    return b'{"query":' * depth + b"{}" + b"}" * depth


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 300, 1000])
def test_a_deeply_nested_search_body_is_a_400_not_a_recursion_error(
    tmp_path: Path, depth: int
) -> None:
    engine = StubEngine()
    r = _send(tmp_path, engine, "POST", "/shop/_search", content=_nested(depth))
    _error(r, 400, "parse_exception", "request body", f"{MAX_JSON_DEPTH} levels")
    assert engine.calls == []


def test_a_body_at_the_depth_limit_is_searched(tmp_path: Path) -> None:
    engine = StubEngine()
    r = _send(tmp_path, engine, "POST", "/shop/_search", content=_nested(MAX_JSON_DEPTH - 1))
    assert r.status_code == 200, r.text
    assert len(engine.calls) == 1


def test_a_deeply_nested_user_context_names_the_header(tmp_path: Path) -> None:
    context = '{"a":' * 500 + "1" + "}" * 500
    r = _send(tmp_path, StubEngine(), "POST", "/shop/_search", headers={"X-User-Context": context})
    _error(r, 400, "affinity_bad_header", "X-User-Context")


@pytest.mark.parametrize("value", [str(2**70), str(2**31), "-2147483649"])
def test_a_url_size_beyond_a_java_int_is_a_400_naming_it(tmp_path: Path, value: str) -> None:
    engine = StubEngine()
    r = _send(tmp_path, engine, "GET", f"/shop/_search?size={value}")
    _error(r, 400, "illegal_argument_exception", "size", value[:20])
    assert engine.calls == []


@pytest.mark.parametrize(
    ("lines", "fragment"),
    [
        (b'[]\n{"query":{"match_all":{}}}\n', "header line of msearch search 1"),
        (b"{}\n5\n", "body line of msearch search 1"),
        (b'{}\n{}\n{"index":[5]}\n{}\n', "search 2: the header's index"),
        (b'{"index":{"a":1}}\n{}\n', "search 1: the header's index"),
    ],
)
def test_msearch_lines_that_are_not_objects_are_400s_naming_the_line(
    tmp_path: Path, lines: bytes, fragment: str
) -> None:
    r = _send(tmp_path, StubEngine(), "POST", "/shop/_msearch", content=lines)
    assert r.status_code == 400, r.text
    assert fragment in r.json()["error"]["reason"]


def test_msearch_with_too_many_searches_is_a_413(tmp_path: Path) -> None:
    lines = b"{}\n{}\n" * (MAX_MSEARCH_SEARCHES + 1)
    engine = StubEngine()
    r = _send(tmp_path, engine, "POST", "/shop/_msearch", content=lines)
    _error(r, 413, "affinity_too_many_searches", str(MAX_MSEARCH_SEARCHES + 1))
    assert engine.calls == []


@pytest.mark.parametrize("chunked", [False, True])
def test_an_oversized_search_body_is_a_413_before_the_engine(tmp_path: Path, chunked: bool) -> None:
    body = b'{"query":{"match":{"title":"' + b"x " * MAX_SEARCH_BODY_BYTES + b'"}}}'
    engine = StubEngine()
    content: Any = _chunks(body) if chunked else body  # a generator is sent chunked
    r = _send(tmp_path, engine, "POST", "/shop/_search", content=content)
    _error(r, 413, "affinity_body_too_large", str(MAX_SEARCH_BODY_BYTES))
    assert engine.calls == []


async def _chunks(body: bytes) -> Any:
    for start in range(0, len(body), 65536):
        yield body[start : start + 65536]


def test_a_search_without_an_index_is_refused(tmp_path: Path) -> None:
    """It would search every index, affinity's profiles and events included."""
    engine = StubEngine()
    for method in ("GET", "POST"):
        r = _send(tmp_path, engine, method, "/_search", json={"query": {"match_all": {}}})
        _error(r, 403, "affinity_forbidden_index", "/{index}/_search")
    assert engine.calls == []


@pytest.mark.parametrize("path", ["/shop/_search", "/shop/_count", "/shop/_msearch", "/"])
@pytest.mark.parametrize(
    "param", ["format=yaml", "error_trace=x", "error_trace=TRUE", "source=_all"]
)
def test_format_other_than_json_and_a_non_boolean_error_trace_are_400s(
    tmp_path: Path, path: str, param: str
) -> None:
    """The proxy answers JSON only; OpenSearch never answers error_trace=x (the proxy
    waited AFFINITY_TIMEOUT, then answered 504); `source` (a body in the URL) without
    source_content_type was an engine 500, and the proxy rewrites request bodies only."""
    engine = StubEngine()
    r = _send(tmp_path, engine, "GET", f"{path}?{param}")
    _error(r, 400, "illegal_argument_exception", param.split("=")[0])
    assert engine.calls == []


def test_an_engine_500_the_request_caused_is_a_400_with_the_engines_reason(
    tmp_path: Path,
) -> None:
    reason = "`slice` cannot be used outside of a scroll context or PIT context"
    error = {
        "error": {
            "root_cause": [{"type": "search_exception", "reason": reason}],
            "type": "search_phase_execution_exception",
            "reason": "all shards failed",
        },
        "status": 500,
    }
    r = _send(
        tmp_path,
        StubEngine(lambda *_: (500, error)),
        "POST",
        "/shop/_search",
        json={"slice": {"id": 0, "max": 2}},
    )
    assert r.status_code == 400 and r.json()["status"] == 400
    assert r.json()["error"]["root_cause"][0]["reason"] == reason


def test_an_engine_500_for_a_null_in_a_field_list_is_a_400(tmp_path: Path) -> None:
    """`{"stored_fields": [null]}`: OpenSearch 2.19 answers 500 illegal_state_exception."""
    cause = {"type": "illegal_state_exception", "reason": "Can't get text on a VALUE_NULL at 1:19"}
    error = {"error": {"root_cause": [cause], **cause}, "status": 500}
    engine = StubEngine(lambda *_: (500, error))
    r = _send(tmp_path, engine, "POST", "/shop/_search", json={"stored_fields": [None]})
    assert r.status_code == 400 and r.json()["error"]["reason"] == cause["reason"]


@pytest.mark.parametrize(
    "cause",
    [
        {"type": "null_pointer_exception", "reason": "x"},
        {"type": "illegal_state_exception", "reason": "shard not ready"},
    ],
)
def test_an_engine_500_of_its_own_stays_a_500(tmp_path: Path, cause: dict) -> None:
    error = {"error": {"root_cause": [cause]}, "status": 500}
    r = _send(tmp_path, StubEngine(lambda *_: (500, error)), "POST", "/shop/_search", json={})
    assert r.status_code == 500


def test_msearch_with_filter_path_is_passed_through_not_a_500(tmp_path: Path) -> None:
    """filter_path can leave out `responses`: there is nothing to attach personalization to."""
    engine = StubEngine(lambda *_: (200, {}))
    r = _send(tmp_path, engine, "POST", "/shop/_msearch?filter_path=took", content=b"{}\n{}\n")
    assert r.status_code == 200 and r.json() == {}


def test_explain_on_hits_without_ids_answers_200(tmp_path: Path) -> None:
    """`stored_fields: _none_` leaves hits without `_id` (explain once raised KeyError)."""
    r = _send(
        tmp_path,
        StubEngine(),
        "POST",
        "/shop/_search?explain=true",
        json={"stored_fields": "_none_", "from": "x"},
        headers={"X-User-Id": "u1"},
    )
    assert r.status_code == 200, r.text
    assert "_affinity" not in r.json()["hits"]["hits"][0]


def test_count_bodies_reach_the_engine_as_json_whatever_the_content_type(
    tmp_path: Path,
) -> None:
    """The engine answers in the request's content type (YAML, CBOR...): the proxy's answers
    are JSON, so it always sends JSON."""
    engine = StubEngine(lambda *_: (200, {"count": 1}))
    r = _send(
        tmp_path,
        engine,
        "POST",
        "/shop/_count",
        content=b'{"query": {"match_all": {}}}',
        headers={"content-type": "application/yaml"},
    )
    assert r.status_code == 200 and r.json() == {"count": 1}
    assert engine.calls[0]["headers"]["content-type"] == "application/json"
    assert orjson.loads(engine.calls[0]["content"]) == {"query": {"match_all": {}}}


def test_a_count_body_that_is_not_json_is_a_400(tmp_path: Path) -> None:
    engine = StubEngine()
    r = _send(tmp_path, engine, "POST", "/shop/_count", content=b"\xa0\x00")
    _error(r, 400, "parse_exception", "request body")
    assert engine.calls == []


@pytest.mark.parametrize("method", ["TRACE", "PROPFIND", "FOO"])
def test_a_method_no_route_serves_is_a_405_in_the_error_shape(tmp_path: Path, method: str) -> None:
    r = _send(tmp_path, StubEngine(), method, "/shop/_search")
    _error(r, 405, "affinity_method_not_allowed", method)


def test_a_head_search_logs_no_impression(tmp_path: Path) -> None:
    """HEAD runs the search but shows nothing: the fuzzer counted more impressions written
    than searches answered."""
    impressions = Impressions()
    for method in ("HEAD", "GET"):
        r = _send(tmp_path, StubEngine(), method, "/shop/_search", impressions)
        assert r.status_code == 200
    msearch = {"responses": [HITS]}
    engine = StubEngine(lambda *_: (200, msearch))
    _send(tmp_path, engine, "HEAD", "/shop/_msearch", impressions, content=b"{}\n{}\n")
    assert impressions.logged == ["shop"]  # the GET only


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_a_url_longer_than_the_engine_takes_is_a_414(tmp_path: Path, method: str) -> None:
    """OpenSearch answers a request line over 4096 bytes with an HTTP/1.0 400 that the pool
    did not read: a HEAD _count with a 5,000-byte parameter was a 503."""
    engine = StubEngine()
    r = _send(tmp_path, engine, method, "/shop/_count?typed_keys=" + "x" * 5000)
    assert r.status_code == 414
    if method == "GET":
        _error(r, 414, "affinity_url_too_long", "4096")
    assert engine.calls == []
