"""`POST|GET /_affinity/recommend`: recommendation carousels, computed by OpenSearch.

Request (JSON body, or the same names as URL parameters; `filter` then as JSON text):
`{"index": "catalog", "model": "for_you", "item": ID, "size": 10, "filter": {...},
"exclude_seen": true}`, with the search headers (`X-User-Id`, `X-User-Context`,
`X-Boost-Profile`, `X-Personalization: off`).

Each model (recommend/models.py) reads what it needs (serve/recommend_sources.py), builds one
catalog search, and that search is rewritten for the user exactly as a `_search` is
(ranking/rewrite.py: the stored script re-ranks by affinity with the boost profile's alpha,
its rules apply). The response is OpenSearch's search response plus `recommendation_id`
(send it back with the impression, click and purchase events the carousel led to) and
`personalization`: the rewrite's log plus `model`, `source` (what the candidates came from),
`why` (one sentence) and `fallbacks` (each fallback taken, in order).

Fallbacks: `for_you` without a profile uses the segment prior of the request's device or geo
(`affinity segments build`), else popularity; `related` / `bought_together` with fewer than
MIN_NEIGHBORS stored neighbours use attribute similarity; `trending` narrows to the user's
favoured categories unless that leaves too few, and is popularity when nothing rose;
`recently_viewed` is empty for an opted-out or unknown user.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import replace
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from rewriter import privacy
from rewriter.boost.diversity import diversify
from rewriter.boost.profile import BoostProfile
from rewriter.engine.http_pool import EngineError
from rewriter.profiles.doc import UnreadableProfile
from rewriter.profiles.view import UserAffinity
from rewriter.ranking.reference import POPULARITY_FIELD
from rewriter.ranking.rewrite import rewrite
from rewriter.recommend import models
from rewriter.recommend.models import RecommendError, RecommendRequest, parse_request
from rewriter.serve import recommend_sources as sources
from rewriter.serve.errors import ProxyError, json_response
from rewriter.serve.limits import MAX_SEARCH_BODY_BYTES, read_body
from rewriter.serve.search import (
    _blames_request,
    _check_index,
    _check_references,
    _context,
    _engine_error,
    _json_object,
    _log_unreadable,
    _user_affinity,
)
from rewriter.serve.state import ProxyState

PATH = "/_affinity/recommend"
RECOMMENDATION_PREFIX = "r-"
MIN_NEIGHBORS = 3
FAVORED_VALUES = 10
TRENDING_CATEGORY = "category"


class Candidates:
    """A model's first pass and what the response says about it."""

    def __init__(self, query: models.Query, source: str, why: str) -> None:
        self.query = query
        self.source = source
        self.why = why
        self.exclude: list[str] = []
        self.filter: models.Query | None = None
        self.annotations: dict[str, dict[str, Any]] = {}


async def recommend(request: Request) -> Response:
    state: ProxyState = request.app.state.proxy
    try:
        req = parse_request(await _raw(request), state.settings.indices.catalog)
        _check_index(state, req.index)
        _check_references(state, req.filter)  # a terms lookup may not read private indices
        return await _answer(state, request, req)
    except RecommendError as err:
        return ProxyError(400, "affinity_bad_recommendation", str(err)).response()
    except ProxyError as err:
        return err.response()


async def _raw(request: Request) -> dict[str, Any]:
    if request.method == "GET":
        return dict(request.query_params)
    raw = await read_body(request, MAX_SEARCH_BODY_BYTES, "the recommend body")
    return _json_object(raw, "parse_exception", "request body") if raw.strip() else {}


async def _answer(state: ProxyState, request: Request, req: RecommendRequest) -> Response:
    user, ctx = _context(request)
    pseudonym = privacy.pseudonymize(user, state.secret) if user else None
    if pseudonym:
        ctx = replace(ctx, user=pseudonym)
    boost = state.boost_for(req.index, request.headers.get("x-boost-profile"))
    fallbacks: list[str] = []
    try:
        affinity = (
            None if ctx.personalization_off else await _user_affinity(state, pseudonym, boost)
        )
    except UnreadableProfile as exc:
        _log_unreadable(exc)
        affinity, ctx = None, replace(ctx, profile_unreadable=True)
    except EngineError as exc:
        raise _engine_error(exc) from exc
    opted_out = affinity is not None and affinity.opt_out
    if affinity is None and req.model in ("for_you", "trending") and not ctx.personalization_off:
        prior = await sources.segment_prior(state, ctx.raw, boost)
        if prior is not None:
            fallbacks.append(f"segment_prior:{prior[0]}")
            affinity = prior[1]
    items, cand = await asyncio.gather(  # independent reads, one round trip of latency
        sources.user_items(state, None if opted_out else pseudonym),
        _candidates(state, req, pseudonym, affinity, opted_out, boost, fallbacks),
    )
    exclude = [*cand.exclude, *(items.bought if req.model == "for_you" else [])]
    if req.exclude_seen and req.model != "recently_viewed":
        exclude += items.seen
    caps = boost.diversity
    fetch = min(max(3 * req.size, caps.top), models.MAX_SIZE) if caps.enabled else req.size
    body = models.catalog_body(cand.query, fetch, req.filter, exclude)
    if cand.filter is not None:
        body["query"]["bool"]["filter"].append(cand.filter)
    result = rewrite(body, affinity, _no_cold_start_term(boost), ctx)
    status, response = await sources.engine_json(
        state, "POST", f"/{req.index}/_search", result.body
    )
    if status != 200:  # the engine's error, a 400 when the request caused its 500
        return json_response(response, 400 if _blames_request(response) else status)
    hits = response.get("hits", {}).get("hits", [])
    if caps.enabled:  # the greedy re-rank of boost/diversity.py, then the requested size
        ranked = diversify(hits, _values, caps)[: req.size]
        moved = sum(a is not b for a, b in zip(ranked, hits[: req.size], strict=False))
        response["hits"]["hits"] = hits = ranked
    for hit in hits:
        if hit.get("_id") in cand.annotations:
            hit["_recommendation"] = cand.annotations[hit["_id"]]
    plog = dict(result.log)
    plog.pop("params", None)
    if user is None and plog.get("reason") is None and not plog.get("applied"):
        plog["reason"] = "no_user"
    plog.update(model=req.model, source=cand.source, why=cand.why, fallbacks=fallbacks)
    if caps.enabled:
        plog["diversity"] = {"max_per": dict(caps.max_per), "top": caps.top, "moved": moved}
    response["personalization"] = plog
    response["recommendation_id"] = f"{RECOMMENDATION_PREFIX}{uuid.uuid4().hex}"
    _log(state, req, response, plog, pseudonym)
    return json_response(response)


def _log(
    state: ProxyState,
    req: RecommendRequest,
    response: dict[str, Any],
    plog: dict[str, Any],
    pseudonym: str | None,
) -> None:
    """The carousel as an impression (doc id = recommendation_id, `mode: recommendation`), for
    `affinity recommendations report`; off the request path, like a search's."""
    if state.impressions is None:
        return
    ids = [str(h.get("_id")) for h in response.get("hits", {}).get("hits", [])]
    state.impressions.record(
        {
            "query_id": response["recommendation_id"],
            "user_id": pseudonym,
            "index": req.index,
            "mode": "recommendation",
            "model": req.model,
            "source": plog.get("source"),
            "items": [{"id": i, "position": n + 1} for n, i in enumerate(ids)],
            "item_ids": ids,
            "segments": plog.get("segments") or [],
            "experiment": plog.get("experiment"),
            "variant": plog.get("variant"),
            "applied": bool(plog.get("applied")),
            "boost_profile": (plog.get("boost_profile") or {}).get("name"),
            "timestamp": time.time(),
        }
    )


def _values(hit: dict[str, Any], field: str) -> list[str]:
    raw = (hit.get("_source") or {}).get(field)
    return [str(v) for v in (raw if isinstance(raw, list) else [raw]) if v is not None]


def _no_cold_start_term(boost: BoostProfile) -> BoostProfile:
    """The boost profile the model's search is rewritten with: the affinity term and the rules,
    but no cold-start popularity term (popularity is in the first pass where a model wants it;
    added again it would outweigh what `related` or `trending` found)."""
    return replace(boost, cold_start=replace(boost.cold_start, strategy="none"))


async def _candidates(
    state: ProxyState,
    req: RecommendRequest,
    pseudonym: str | None,
    affinity: UserAffinity | None,
    opted_out: bool,
    boost: BoostProfile,
    fallbacks: list[str],
) -> Candidates:
    if req.model == "for_you":
        return _for_you(affinity, opted_out, boost, fallbacks)
    if req.model in models.ITEM_MODELS:
        assert req.item is not None
        return await _pairs(state, req, req.item, boost, fallbacks)
    if req.model == "trending":
        return await _trending(state, req, affinity, opted_out, boost, fallbacks)
    return await _recently_viewed(state, req, pseudonym, opted_out)


def _favored(affinity: UserAffinity | None, boost: BoostProfile) -> dict[str, list[str]]:
    if affinity is None or affinity.opt_out:
        return {}
    return {
        attr: [v for v, _ in sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))][
            :FAVORED_VALUES
        ]
        for attr, values in affinity.affinities.items()
        if boost.attributes.get(attr, 0) > 0 and values
    }


def _popular(boost: BoostProfile, favored: dict[str, list[str]]) -> models.Query:
    cold = boost.cold_start
    return models.for_you_query(
        favored, boost.attributes, POPULARITY_FIELD, cold.modifier, max(cold.popularity_weight, 1.0)
    )


def _for_you(
    affinity: UserAffinity | None, opted_out: bool, boost: BoostProfile, fallbacks: list[str]
) -> Candidates:
    favored = _favored(affinity, boost)
    if favored:
        shown = "; ".join(f"{a}: {', '.join(v[:3])}" for a, v in favored.items())
        return Candidates(_popular(boost, favored), "profile", f"your favourites ({shown})")
    fallbacks.append("popularity")
    why = "popular items (you opted out)" if opted_out else "popular items (no profile yet)"
    return Candidates(_popular(boost, {}), "popularity", why)


async def _pairs(
    state: ProxyState, req: RecommendRequest, item: str, boost: BoostProfile, fallbacks: list[str]
) -> Candidates:
    source = await sources.catalog_item(state, req.index, item)  # 404 for an unknown item
    title = source.get("title") if isinstance(source.get("title"), str) else item
    stored = await sources.pair_neighbors(state, req.model, item)
    verb = "viewed" if req.model == "related" else "bought"
    if len(stored) >= MIN_NEIGHBORS:
        cand = Candidates(
            models.scored_ids([(i, s) for i, s, _ in stored]),
            "co_views" if req.model == "related" else "co_purchases",
            f"people who {verb} {title!r} also {verb} these, more often than chance",
        )
        cand.annotations = {i: {"llr": s, "co_sessions": n} for i, s, n in stored}
    else:
        fallbacks.append("attribute_similarity")
        cand = Candidates(
            models.similar_query(req.index, item, source, boost.attributes),
            "attribute_similarity",
            f"items like {title!r} (too few sessions {verb} it with other items)",
        )
    cand.exclude = [item]
    return cand


async def _trending(
    state: ProxyState,
    req: RecommendRequest,
    affinity: UserAffinity | None,
    opted_out: bool,
    boost: BoostProfile,
    fallbacks: list[str],
) -> Candidates:
    rises = await sources.trending(state)
    if not rises:
        fallbacks.append("popularity")
        return Candidates(_popular(boost, {}), "popularity", "popular items (nothing rose lately)")
    cand = Candidates(models.scored_ids(rises), "trending", "rising fastest in the last day")
    cand.annotations = {i: {"rise": r} for i, r in rises}
    categories = _favored(affinity, boost).get(TRENDING_CATEGORY, [])
    if categories and not opted_out:
        narrowed = models.catalog_body(cand.query, req.size, req.filter, [])
        narrowed["query"]["bool"]["filter"].append({"terms": {TRENDING_CATEGORY: categories}})
        status, found = await sources.engine_json(
            state, "POST", f"/{req.index}/_count", {"query": narrowed["query"]}
        )
        if status == 200 and found.get("count", 0) >= req.size:
            cand.filter = {"terms": {TRENDING_CATEGORY: categories}}
            cand.why += f" in your categories ({', '.join(categories[:3])})"
        else:
            fallbacks.append("all_categories")
    return cand


async def _recently_viewed(
    state: ProxyState, req: RecommendRequest, pseudonym: str | None, opted_out: bool
) -> Candidates:
    if not pseudonym or opted_out:
        why = "you opted out" if opted_out else "no user"
        return Candidates({"ids": {"values": []}}, "none", f"nothing to show ({why})")
    recent = await sources.recent_items(state, pseudonym, req.size)
    cand = Candidates(
        models.scored_ids(models.recency_scores(recent)), "events", "your most recent items"
    )
    return cand


ROUTES = [Route(PATH, recommend, methods=["GET", "POST"])]
