"""The search handlers: `_search`, `_msearch`, and the few read requests forwarded as they are.

Each search is checked (index expression), rewritten for its user (ranking/rewrite.py), sent
to OpenSearch (with pins: one `_msearch` of the search and the pinned fetch), and answered
with OpenSearch's response plus the `personalization` object. Nothing here writes events or
profiles: the search path never imports the write path.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, NoReturn
from urllib.parse import quote, urlencode

import orjson
from starlette.requests import Request
from starlette.responses import Response

from rewriter import privacy
from rewriter.boost.profile import BoostProfile
from rewriter.engine.http_pool import EngineError, EngineResponse, EngineTimeout
from rewriter.experiments import assignment
from rewriter.profiles.doc import UnreadableProfile
from rewriter.profiles.view import UserAffinity, affinity_view
from rewriter.ranking import explain, facets, pins
from rewriter.ranking.resolve import query_text
from rewriter.ranking.rewrite import RequestContext, RewriteResult, rewrite
from rewriter.serve import metrics, tracing
from rewriter.serve.errors import JSON_TYPE, ProxyError, json_response
from rewriter.serve.index_refs import clears_every_scroll, reads_private, referenced_indices
from rewriter.serve.limits import (
    MAX_MSEARCH_BODY_BYTES,
    MAX_MSEARCH_SEARCHES,
    MAX_REQUEST_LINE_BYTES,
    MAX_SEARCH_BODY_BYTES,
    check_depth,
    read_body,
)
from rewriter.serve.state import ProxyState

log = logging.getLogger("affinity.proxy")

_INDEX_OK = re.compile(r"^[a-z0-9][a-z0-9_.,+-]*$")


# --------------------------------------------------------------------------- helpers
def _check_index(state: ProxyState, index: str) -> None:
    internal = state.settings.indices.private
    names = index.split(",")
    if any(n in ("_all", "*") or "*" in n or "?" in n for n in names):
        raise ProxyError(
            403,
            "affinity_forbidden_index",
            f"index expression {index!r} uses a wildcard or _all; name the indices explicitly",
        )
    if not _INDEX_OK.match(index):
        raise ProxyError(400, "affinity_bad_index", f"{index!r} is not a valid index name")
    hidden = [n for n in names if n in internal or n.startswith(tuple(f"{i}-v" for i in internal))]
    if hidden:
        raise ProxyError(
            403,
            "affinity_forbidden_index",
            f"{hidden[0]} holds affinity's private data and cannot be read through the proxy",
        )


def _check_references(state: ProxyState, body: Any) -> None:
    """The indices a body reads beside its path's (terms lookup, more_like_this items, ...):
    never affinity's private ones, by name or by a pattern that matches one."""
    private = state.settings.indices.private
    for name in referenced_indices(body):
        if reads_private(name, private):
            raise ProxyError(
                403,
                "affinity_forbidden_index",
                f"the body reads index {name!r}, which holds affinity's private data: it "
                "cannot be read through the proxy",
            )


def _refuse_every_index() -> NoReturn:
    """`/_search` without an index searches every index, affinity's private ones included."""
    raise ProxyError(
        403,
        "affinity_forbidden_index",
        "a search without an index searches every index, affinity's private profiles and "
        "events included; name the indices in the path: /{index}/_search",
    )


def _json_object(raw: bytes | str, kind: str, what: str) -> dict[str, Any]:
    """`raw` parsed as a JSON object at most MAX_JSON_DEPTH deep, or a 400 ProxyError of type
    `kind` naming `what`."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ProxyError(400, kind, f"{what} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ProxyError(400, kind, f"{what} must be a JSON object, not {_json_kind(value)}")
    check_depth(value, what, kind)
    return value


def _json_kind(value: Any) -> str:
    kinds = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return kinds.get(type(value), "a number")


def _context(request: Request) -> tuple[str | None, RequestContext]:
    raw_ctx = request.headers.get("x-user-context")
    ctx = _json_object(raw_ctx, "affinity_bad_header", "X-User-Context") if raw_ctx else {}
    off = request.headers.get("x-personalization", "").strip().lower() in ("off", "0", "false")
    explain = request.query_params.get("explain", "").lower() in ("true", "1", "")
    explain = explain and "explain" in request.query_params
    user = request.headers.get("x-user-id") or None
    device, geo = ctx.get("device"), ctx.get("geo")
    return user, RequestContext(
        personalization_off=off,
        explain=explain,
        device=device if isinstance(device, str) else None,
        geo=geo if isinstance(geo, str) else None,
        raw=ctx,
    )


async def _user_affinity(
    state: ProxyState, pseudonym: str | None, boost: BoostProfile
) -> UserAffinity | None:
    """The user's view, None without a profile; UnreadableProfile for a stored profile that
    cannot be ranked with."""
    if not pseudonym:
        return None
    doc = await state.profiles.get(pseudonym)
    if doc is None:
        return None
    return affinity_view(doc, time.time(), boost.top_k)


_UNREADABLE_LOGGED: set[str] = set()


def _log_unreadable(exc: UnreadableProfile) -> None:
    """Say once per user (per process) that their searches go without personalization."""
    if exc.user in _UNREADABLE_LOGGED:
        return
    if len(_UNREADABLE_LOGGED) > 10_000:
        _UNREADABLE_LOGGED.clear()
    _UNREADABLE_LOGGED.add(exc.user)
    log.error(
        "%s. Until then, searches for this user are served without personalization "
        "(personalization.reason: profile_unreadable).",
        exc,
    )


def _body_from(raw: bytes, params: Mapping[str, str]) -> dict[str, Any]:
    """The search body with the URL's `from`, `size` and `sort` moved into it, so the rewrite
    decides with all of them in view (a field sort, from the URL or the body, keeps the
    engine's order and only the rules that hide items)."""
    body = _json_object(raw, "parse_exception", "request body") if raw.strip() else {}
    for key in ("from", "size"):
        if key in params:
            body[key] = _url_int(params, key)
    if params.get("sort"):  # OpenSearch adds URL sorts after the body's
        given = body.get("sort")
        body["sort"] = [*(given if isinstance(given, list) else [given] if given else [])]
        body["sort"] += url_sort(params["sort"])
    return body


JAVA_INT = range(-(2**31), 2**31)
"""What OpenSearch reads `from` and `size` into; a larger number is a 400 here, before it
reaches the JSON encoder (64-bit at most) or the engine."""


def _url_int(params: Mapping[str, str], key: str) -> int:
    text = params[key]
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value not in JAVA_INT:
        raise ProxyError(
            400,
            "illegal_argument_exception",
            f"URL parameter {key} must be an integer up to {JAVA_INT.stop - 1}, got {text[:40]!r}",
        )
    return value


def url_sort(value: str) -> list[Any]:
    """`?sort=price:asc,title` in the body's form: [{"price": "asc"}, "title"]."""
    out: list[Any] = []
    for part in filter(None, (p.strip() for p in value.split(","))):
        field, _, order = part.rpartition(":") if ":" in part else (part, "", "")
        out.append({field: order} if order else field)
    return out


def _engine_params(request: Request) -> dict[str, str]:
    """The URL parameters to forward. The proxy reads the engine's answers as JSON and
    answers JSON itself, so `format` may only ask for JSON; `error_trace` must be a boolean
    (OpenSearch 2.19 never answers a request whose error_trace is anything else)."""
    params = dict(request.query_params)
    if params.get("format", "json").strip().lower() != "json":
        raise _bad_param("format", params["format"], "the affinity proxy answers JSON only")
    if params.get("error_trace", "true") not in ("", "true", "false"):
        raise _bad_param("error_trace", params["error_trace"], "it takes true or false")
    for name in ("source", "source_content_type"):
        if name in params:
            raise _bad_param(name, params[name], "send the body as the request body")
    return params


def _bad_param(name: str, value: str, why: str) -> ProxyError:
    return ProxyError(
        400,
        "illegal_argument_exception",
        f"URL parameter {name}={value[:40]!r}: {why}; fix it or leave it out",
    )


def _forward_params(params: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in params.items() if k not in ("from", "size", "sort")}


def _engine_error(exc: Exception) -> ProxyError:
    if isinstance(exc, EngineTimeout):
        return ProxyError(
            504,
            "affinity_engine_timeout",
            f"OpenSearch did not answer in time ({exc.__class__.__name__}); the search was "
            "abandoned. Retry, or raise AFFINITY_TIMEOUT if the cluster is just slow.",
        )
    return ProxyError(
        503,
        "affinity_engine_unavailable",
        f"OpenSearch is unreachable ({exc.__class__.__name__}: {exc}); check the cluster. "
        "The proxy retries on the next request.",
    )


async def _send(state: ProxyState, method: str, path: str, **kwargs: Any) -> EngineResponse:
    line = len(method) + len(quote(path)) + len(urlencode(kwargs.get("params") or {})) + 12
    if line > MAX_REQUEST_LINE_BYTES:
        raise ProxyError(
            414,
            "affinity_url_too_long",
            f"the URL is about {line} bytes; OpenSearch takes request lines up to 4096 bytes: "
            "shorten the index list or the URL parameters",
        )
    try:
        return await state.http.request(method, path, **kwargs)
    except EngineError as exc:
        raise _engine_error(exc) from exc


async def _personalized(
    state: ProxyState, request: Request, index: str, body: dict[str, Any]
) -> tuple[
    dict[str, Any], dict[str, Any], BoostProfile, UserAffinity | None, RequestContext, RewriteResult
]:
    user, ctx = _context(request)
    pseudonym = privacy.pseudonymize(user, state.secret) if user else None
    if pseudonym:  # for boost-profile segments that list users
        ctx = replace(ctx, user=pseudonym)
    header = request.headers.get("x-boost-profile")
    chosen = bool(header) or ctx.personalization_off
    arm = assignment.enroll_search(state.experiments, index, pseudonym, chosen)
    ctx = assignment.arm_context(arm, ctx)
    boost = state.boost_for(index, header, arm)
    try:
        affinity = await _user_affinity(state, pseudonym, boost)
    except EngineError as exc:
        raise _engine_error(exc) from exc
    except UnreadableProfile as exc:  # generic results, never a 500 for one bad document
        _log_unreadable(exc)
        affinity, ctx = None, replace(ctx, profile_unreadable=True)
    result = rewrite(body, affinity, boost, ctx)
    plog = dict(result.log)
    if user is None and plog.get("reason") is None and not plog.get("applied"):
        plog["reason"] = "no_user"
    assignment.tag_log(plog, arm)
    return result.body, plog, boost, affinity, ctx, result


async def _send_search(
    state: ProxyState,
    index: str,
    body: dict[str, Any],
    plan: pins.PinPlan | None,
    params: Mapping[str, str],
) -> EngineResponse:
    """The rewritten search; with pins, it and the pinned fetch in one _msearch (pins.py)."""
    if plan is None:
        path = f"/{index}/_search" if index else "/_search"
        return await _send(state, "POST", path, params=params, content=orjson.dumps(body))
    lines, rest = pins.msearch_request(index, body, plan, _unfiltered(params))
    upstream = await _send(
        state,
        "POST",
        f"/{index}/_msearch" if index else "/_msearch",
        params=rest,
        content=b"\n".join(orjson.dumps(line) for line in lines) + b"\n",
        headers={"content-type": "application/x-ndjson"},
    )
    if upstream.status != 200:
        return upstream
    status, merged = pins.from_msearch(orjson.loads(upstream.content), plan)
    return EngineResponse(status, orjson.dumps(merged), JSON_TYPE)


# --------------------------------------------------------------------------- endpoints
async def search(request: Request) -> Response:
    state: ProxyState = request.app.state.proxy
    index = request.path_params.get("index", "")
    try:
        params = _engine_params(request)
        if not index:
            _refuse_every_index()
        _check_index(state, index)
        raw = await read_body(request, MAX_SEARCH_BODY_BYTES, "the search body")
        body = _body_from(raw, params)
        _check_references(state, body)
        path = f"/{index}/_search" if index else "/_search"
        if "scroll" in params:  # generic: a scroll pages a snapshot, not a ranking
            forward = _forward_params(params)  # from, size and sort are in the body
            upstream = await _send(state, "POST", path, params=forward, content=orjson.dumps(body))
            return _passthrough(upstream)
        new_body, plog, boost, affinity, ctx, result = await _personalized(
            state, request, index, body
        )
        tracing.set_query_id(plog.get("query_id"))
        metrics.note_mode(request, plog.get("mode"))
        off, segments = ctx.personalization_off, result.rules.segments
        facet_plan = facets.plan_facets(body, affinity, boost, off, segments)
        if facet_plan is not None:
            new_body = facets.with_favored_aggs(new_body, facet_plan)
        upstream = await _send_search(state, index, new_body, result.pins, _forward_params(params))
    except ProxyError as err:
        if err.status >= 500:
            log.warning("search on %s not answered: %s", index, err)
        return err.response()
    if upstream.status != 200:
        return _passthrough(upstream)
    reshaped = ctx.explain or facet_plan is not None  # the response itself changes: parse it
    if reshaped:
        response = orjson.loads(upstream.content)
        facet_log = facets.apply_facets(response, facet_plan, explain=ctx.explain)
        if facet_log is not None:
            plog["facets"] = facet_log
        if ctx.explain:
            explain.explain_hits(response, plog, boost, affinity, new_body, result.rules)
    plog.pop("params", None)
    if any(slot.in_search for slot in boost.placements):  # serve/placements.py imports us
        from rewriter.serve.placements import search_placements

        text = query_text(body.get("query"))
        plog["placements"] = search_placements(request, boost, affinity, ctx, text)
    if reshaped:
        response["personalization"] = plog
        content = orjson.dumps(response)
    else:  # one member added: the engine's bytes are not parsed and written again
        content = with_member(upstream.content, "personalization", plog)
    if state.impressions is not None and request.method != "HEAD":  # HEAD shows nothing
        user = request.headers.get("x-user-id")
        state.impressions.record_search_later(user, index, body, content, plog)
    return Response(content, 200, media_type=JSON_TYPE)


def with_member(content: bytes, key: str, value: Any) -> bytes:
    """The JSON object `content` with `key: value` added as its last member, by splicing
    bytes (the engine's answer to a search is one JSON object; its members are kept as
    sent). Falls back to parsing when `content` does not end like an object."""
    text = content.rstrip()
    if not text.endswith(b"}"):
        response = orjson.loads(content)
        response[key] = value
        return orjson.dumps(response)
    member = orjson.dumps(key) + b":" + orjson.dumps(value)
    inner = text[:-1].rstrip()
    empty = inner.endswith(b"{")
    return inner + (member if empty else b"," + member) + b"}"


async def msearch(request: Request) -> Response:
    state: ProxyState = request.app.state.proxy
    index = request.path_params.get("index", "")
    try:
        params = _engine_params(request)
        if index:
            _check_index(state, index)
        raw = await read_body(request, MAX_MSEARCH_BODY_BYTES, "the msearch body")
        lines = [ln for ln in raw.splitlines() if ln.strip()]
        if len(lines) % 2:
            raise ProxyError(
                400, "illegal_argument_exception", "msearch body must be header/body line pairs"
            )
        if len(lines) // 2 > MAX_MSEARCH_SEARCHES:
            raise ProxyError(
                413,
                "affinity_too_many_searches",
                f"the msearch holds {len(lines) // 2} searches; the proxy's limit is "
                f"{MAX_MSEARCH_SEARCHES}: split it into several requests",
            )
        out_lines: list[bytes] = []
        logs: list[dict[str, Any]] = []
        plans: list[pins.PinPlan | None] = []
        sent: list[tuple[str, dict[str, Any]]] = []
        for n in range(0, len(lines), 2):
            header = _msearch_line(lines[n], n // 2 + 1, "header")
            target = _msearch_target(header, index, n // 2 + 1)
            _check_index(state, target)
            body = _msearch_line(lines[n + 1], n // 2 + 1, "body")
            _check_references(state, body)
            new_body, plog, *_, result = await _personalized(state, request, target, body)
            plog.pop("params", None)
            out_lines += [orjson.dumps(header), orjson.dumps(new_body)]
            if result.pins is not None:  # the pinned fetch follows its search (ranking/pins.py)
                out_lines += [orjson.dumps(header), orjson.dumps(result.pins.fetch)]
            plans.append(result.pins)
            logs.append(plog)
            sent.append((target, body))
        path = f"/{index}/_msearch" if index else "/_msearch"
        upstream = await _send(
            state,
            "POST",
            path,
            params=_unfiltered(params) if any(plans) else params,
            content=b"\n".join(out_lines) + b"\n",
            headers={"content-type": "application/x-ndjson"},
        )
    except ProxyError as err:
        return err.response()
    if upstream.status != 200:
        return _passthrough(upstream)
    response = orjson.loads(upstream.content)
    responses = response.get("responses")
    if not isinstance(responses, list) or len(responses) != len(plans) + sum(map(bool, plans)):
        return _passthrough(upstream)  # filter_path left out the responses: nothing to attach to
    response["responses"] = _merge_pinned(responses, plans)
    for item, plog, (target, body) in zip(response["responses"], logs, sent, strict=True):
        if not isinstance(item, dict):
            continue
        if _blames_request(item):
            item["status"] = 400
        item["personalization"] = plog
        if state.impressions is not None and "hits" in item and request.method != "HEAD":
            user = request.headers.get("x-user-id")
            state.impressions.record_search(user, target, body, item, plog)
    return json_response(response)


def _msearch_line(line: bytes, search: int, part: str) -> dict[str, Any]:
    """One msearch line (`part` "header" or "body" of search number `search`) as a JSON
    object, or a 400 naming it."""
    what = f"the {part} line of msearch search {search}"
    if part == "body" and len(line) > MAX_SEARCH_BODY_BYTES:
        raise ProxyError(
            413,
            "affinity_body_too_large",
            f"{what} is {len(line)} bytes; the proxy's limit is {MAX_SEARCH_BODY_BYTES} bytes",
        )
    return _json_object(line, "parse_exception", what)


def _msearch_target(header: Mapping[str, Any], index: str, search: int) -> str:
    """The index expression of one msearch search: its header's `index` (a string or a list
    of strings), else the path's."""
    target = header.get("index", index)
    if isinstance(target, list) and all(isinstance(t, str) for t in target):
        target = ",".join(target)
    if not isinstance(target, str):
        raise ProxyError(
            400,
            "action_request_validation_exception",
            f"msearch search {search}: the header's index must be a string or a list of "
            f"strings, got {_json_kind(target)}",
        )
    if not target:
        raise ProxyError(
            400, "action_request_validation_exception", f"msearch search {search} names no index"
        )
    return target


def _unfiltered(params: Mapping[str, str]) -> dict[str, str]:
    """`params` without `filter_path`: a pinned search is merged from the engine's whole
    _msearch response (ranking/pins.py), which a filter would cut (the app gets the whole
    response)."""
    return {k: v for k, v in params.items() if k != "filter_path"}


def _merge_pinned(
    responses: list[dict[str, Any]], plans: list[pins.PinPlan | None]
) -> list[dict[str, Any]]:
    """One response per app search: pinned searches had two (organic, pinned fetch)."""
    out: list[dict[str, Any]] = []
    at = 0
    for plan in plans:
        if plan is None:
            out.append(responses[at])
            at += 1
            continue
        status, merged = pins.from_msearch({"responses": responses[at : at + 2]}, plan)
        out.append({**merged, "status": status})
        at += 2
    return out


def _request_fault(cause: Any) -> bool:
    """A root cause that OpenSearch answers with 500 although the request caused it: shard
    failures of type search_exception (`slice` without a scroll, `search_after` or `collapse`
    in a scroll), and the parser's "Can't get text on a VALUE_NULL" (a null or an object
    where a field list wants strings: `stored_fields`, `_source`, multi_match `fields`). The
    reason names the field or the position in the body."""
    if not isinstance(cause, dict):
        return False
    reason = cause.get("reason")
    return cause.get("type") == "search_exception" or (
        cause.get("type") == "illegal_state_exception"
        and isinstance(reason, str)
        and reason.startswith("Can't get text on a ")
    )


def _blames_request(body: Any) -> bool:
    """An engine error body with status 500 whose every root cause is the request's fault."""
    error = body.get("error") if isinstance(body, dict) else None
    causes = error.get("root_cause") if isinstance(error, dict) else None
    return (
        body.get("status") == 500
        and isinstance(causes, list)
        and bool(causes)
        and all(_request_fault(c) for c in causes)
    )


def _passthrough(upstream: EngineResponse) -> Response:
    """The engine's answer as it is, except a 500 that the request caused: that is a 400
    (the body keeps the engine's reason, which names the field; its status says 400)."""
    if upstream.status == 500:
        body = _loads(upstream.content)
        if _blames_request(body):
            body["status"] = 400
            return json_response(body, 400)
    return Response(upstream.content, upstream.status, media_type=upstream.content_type)


def _loads(content: bytes) -> Any:
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return None


async def forward_plain(request: Request) -> Response:
    """Allow-listed endpoints that need no rewrite: `/`, `_count`, scroll continuation. The
    body, if any, must be a JSON object (as for a search); it is sent as JSON, so the engine
    answers JSON whatever the client's Content-Type said."""
    state: ProxyState = request.app.state.proxy
    index = request.path_params.get("index")
    try:
        params = _engine_params(request)
        if index:
            _check_index(state, index)
        raw = await read_body(request, MAX_SEARCH_BODY_BYTES, "the request body")
        body = _json_object(raw, "parse_exception", "request body") if raw.strip() else None
        _check_references(state, body)
        if request.method == "DELETE" and clears_every_scroll(body, params):
            raise ProxyError(
                403,
                "affinity_forbidden_scroll",
                "clearing scroll _all would clear every client's scrolls; name your scroll_id",
            )
        upstream = await _send(
            state,
            request.method,
            request.url.path,
            params=params,
            content=b"" if body is None else orjson.dumps(body),
            headers={"content-type": "application/json"},
        )
    except ProxyError as err:
        return err.response()
    if request.method == "HEAD":
        return Response(b"", upstream.status)
    return _passthrough(upstream)
