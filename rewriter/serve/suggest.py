"""`GET /_affinity/suggest?index=catalog&q=...&size=8[&explain=true]`: suggestions as the
user types (issue 11, item 2; ranking/suggest.py says what is searched and how).

One engine round trip: an _msearch of the suggestions search (rewritten for the user like any
search, the boost profile's merchandising rules left out: they name catalog items) and, for
a short prefix, the user's recent searches from their impressions (none for an opted-out
user or with `X-Personalization: off`; `affinity user delete` erases them with the user).
Suggest requests log no impressions. Bad parameters are a 400 naming the parameter; an
empty prefix without recent searches is a 200 with no suggestions.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from rewriter import privacy
from rewriter.engine.http_pool import EngineError
from rewriter.profiles.doc import UnreadableProfile
from rewriter.ranking import explain
from rewriter.ranking import suggest as s
from rewriter.ranking.rewrite import rewrite
from rewriter.serve.errors import ProxyError, json_response
from rewriter.serve.search import (
    _check_index,
    _context,
    _engine_error,
    _log_unreadable,
    _send,
    _user_affinity,
)
from rewriter.serve.state import ProxyState


async def suggest(request: Request) -> Response:
    state: ProxyState = request.app.state.proxy
    try:
        return await _suggest(state, request)
    except ProxyError as err:
        return err.response()


async def _suggest(state: ProxyState, request: Request) -> Response:
    params = request.query_params
    index = params.get("index") or ""
    if not index:
        raise ProxyError(
            400, "affinity_bad_param", "index is required: the catalog to suggest for (index=…)"
        )
    _check_index(state, index)
    if "," in index:
        raise ProxyError(400, "affinity_bad_param", "index names one catalog, not a list")
    try:
        prefix, size = s.clean_prefix(params.get("q")), s.clean_size(params.get("size"))
    except s.SuggestError as exc:
        raise ProxyError(400, "affinity_bad_param", str(exc)) from None
    target = s.suggestions_index(index)
    user, ctx = _context(request)
    pseudonym = privacy.pseudonymize(user, state.secret) if user else None
    if pseudonym:
        ctx = replace(ctx, user=pseudonym)
    boost = replace(state.boost_for(index, request.headers.get("x-boost-profile")), rules=())
    try:  # the generic view reads no profile
        off = ctx.personalization_off
        affinity = None if off else await _user_affinity(state, pseudonym, boost)
    except EngineError as exc:
        raise _engine_error(exc) from exc
    except UnreadableProfile as exc:
        _log_unreadable(exc)
        affinity, ctx = None, replace(ctx, profile_unreadable=True)
    result = rewrite(s.suggest_body(prefix, size + s.MAX_RECENT), affinity, boost, ctx)
    plog: dict[str, Any] = dict(result.log)
    private = ctx.personalization_off or (affinity is not None and affinity.opt_out)
    lines: list[dict[str, Any]] = []
    if prefix:
        lines += [{"index": target}, result.body]
    if pseudonym and not private and s.wants_recent(prefix):
        impressions = state.settings.indices.impressions
        lines += [{"index": impressions}, s.recent_body(pseudonym, index, prefix)]
    responses = await _msearch(state, lines) if lines else []
    found = responses[0] if prefix else {"hits": {"hits": []}}
    if prefix and "error" in found:
        raise _suggestions_error(index, found)
    recent = s.recent_texts(responses[-1]) if len(lines) // 2 > int(bool(prefix)) else []
    if ctx.explain and prefix:
        explain.explain_hits(found, plog, boost, affinity, result.body, result.rules)
    plog.pop("params", None)
    plog["recent"] = len(recent)
    hits = found.get("hits", {}).get("hits", [])
    suggestions = s.merge_suggestions(recent, hits, list(boost.attributes), size)
    return json_response(
        {"index": index, "q": prefix, "suggestions": suggestions, "personalization": plog}
    )


async def _msearch(state: ProxyState, lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    upstream = await _send(
        state,
        "POST",
        "/_msearch",
        content=b"\n".join(orjson.dumps(line) for line in lines) + b"\n",
        headers={"content-type": "application/x-ndjson"},
    )
    body = orjson.loads(upstream.content) if upstream.status == 200 else {}
    responses = body.get("responses") if isinstance(body, dict) else None
    if not isinstance(responses, list) or len(responses) != len(lines) // 2:
        raise ProxyError(
            503,
            "affinity_engine_unavailable",
            f"OpenSearch answered the suggestion search with status {upstream.status}",
        )
    return responses


def _suggestions_error(index: str, found: dict[str, Any]) -> ProxyError:
    error = found.get("error") or {}
    kind = error.get("type") if isinstance(error, dict) else None
    if kind == "index_not_found_exception":
        return ProxyError(
            404,
            "affinity_no_suggestions",
            f"{index} has no suggestions index yet: run `affinity suggestions build --index "
            f"{index}`",
        )
    reason = error.get("reason") if isinstance(error, dict) else error
    return ProxyError(400, "affinity_bad_suggest", f"the suggestion search failed: {reason}")
