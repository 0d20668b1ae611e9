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
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from rewriter import privacy
from rewriter.boost.profile import BoostProfile
from rewriter.engine.http_pool import EngineError, EngineResponse, EngineTimeout
from rewriter.experiments import assignment
from rewriter.profiles.doc import UnreadableProfile
from rewriter.profiles.view import UserAffinity, affinity_view
from rewriter.ranking import explain, pins
from rewriter.ranking.rewrite import RequestContext, RewriteResult, rewrite
from rewriter.serve.errors import JSON_TYPE, ProxyError, json_response
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


def _json_object(raw: bytes | str, kind: str, what: str) -> dict[str, Any]:
    """`raw` parsed as a JSON object, or a 400 ProxyError of type `kind` naming `what`."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ProxyError(400, kind, f"{what} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ProxyError(400, kind, f"{what} must be a JSON object")
    return value


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
            try:
                body[key] = int(params[key])
            except ValueError:
                raise ProxyError(
                    400, "illegal_argument_exception", f"{key} must be an integer"
                ) from None
    if params.get("sort"):  # OpenSearch adds URL sorts after the body's
        given = body.get("sort")
        body["sort"] = [*(given if isinstance(given, list) else [given] if given else [])]
        body["sort"] += url_sort(params["sort"])
    return body


def url_sort(value: str) -> list[Any]:
    """`?sort=price:asc,title` in the body's form: [{"price": "asc"}, "title"]."""
    out: list[Any] = []
    for part in filter(None, (p.strip() for p in value.split(","))):
        field, _, order = part.rpartition(":") if ":" in part else (part, "", "")
        out.append({field: order} if order else field)
    return out


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
    lines, rest = pins.msearch_request(index, body, plan, params)
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
    params = dict(request.query_params)
    try:
        if index:
            _check_index(state, index)
        body = _body_from(await request.body(), params)
        path = f"/{index}/_search" if index else "/_search"
        if "scroll" in params:  # generic: a scroll pages a snapshot, not a ranking
            forward = _forward_params(params)  # from, size and sort are in the body
            upstream = await _send(state, "POST", path, params=forward, content=orjson.dumps(body))
            return _passthrough(upstream)
        new_body, plog, boost, affinity, ctx, result = await _personalized(
            state, request, index, body
        )
        upstream = await _send_search(state, index, new_body, result.pins, _forward_params(params))
    except ProxyError as err:
        return err.response()
    if upstream.status != 200:
        return _passthrough(upstream)
    response = orjson.loads(upstream.content)
    if ctx.explain:
        explain.explain_hits(response, plog, boost, affinity, new_body, result.rules)
    plog.pop("params", None)
    response["personalization"] = plog
    if state.impressions is not None:
        user = request.headers.get("x-user-id")
        state.impressions.record_search(user, index, body, response, plog)
    return json_response(response)


async def msearch(request: Request) -> Response:
    state: ProxyState = request.app.state.proxy
    index = request.path_params.get("index", "")
    try:
        if index:
            _check_index(state, index)
        lines = [ln for ln in (await request.body()).splitlines() if ln.strip()]
        if len(lines) % 2:
            raise ProxyError(
                400, "illegal_argument_exception", "msearch body must be header/body line pairs"
            )
        out_lines: list[bytes] = []
        logs: list[dict[str, Any]] = []
        plans: list[pins.PinPlan | None] = []
        sent: list[tuple[str, dict[str, Any]]] = []
        for n in range(0, len(lines), 2):
            header = orjson.loads(lines[n])
            target = header.get("index", index)
            target = ",".join(target) if isinstance(target, list) else str(target or "")
            if not target:
                raise ProxyError(
                    400,
                    "action_request_validation_exception",
                    f"msearch entry {n // 2 + 1} names no index",
                )
            _check_index(state, target)
            body = orjson.loads(lines[n + 1])
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
            params=dict(request.query_params),
            content=b"\n".join(out_lines) + b"\n",
            headers={"content-type": "application/x-ndjson"},
        )
    except orjson.JSONDecodeError as exc:
        return ProxyError(400, "parse_exception", f"msearch line is not JSON: {exc}").response()
    except ProxyError as err:
        return err.response()
    if upstream.status != 200:
        return _passthrough(upstream)
    response = orjson.loads(upstream.content)
    response["responses"] = _merge_pinned(response.get("responses", []), plans)
    for item, plog, (target, body) in zip(response.get("responses", []), logs, sent, strict=False):
        item["personalization"] = plog
        if state.impressions is not None and "hits" in item:
            user = request.headers.get("x-user-id")
            state.impressions.record_search(user, target, body, item, plog)
    return json_response(response)


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


def _passthrough(upstream: EngineResponse) -> Response:
    return Response(upstream.content, upstream.status, media_type=upstream.content_type)


async def forward_plain(request: Request) -> Response:
    """Allow-listed endpoints that need no rewrite: `/`, `_count`, scroll continuation."""
    state: ProxyState = request.app.state.proxy
    index = request.path_params.get("index")
    try:
        if index:
            _check_index(state, index)
        upstream = await _send(
            state,
            request.method,
            request.url.path,
            params=dict(request.query_params),
            content=await request.body(),
            headers={"content-type": request.headers.get("content-type", "application/json")},
        )
    except ProxyError as err:
        return err.response()
    if request.method == "HEAD":
        return Response(b"", upstream.status)
    return _passthrough(upstream)
