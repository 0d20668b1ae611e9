"""What the recommend models read before their catalog search: the user's items, the segment
prior, the pair tables, the trending rises. Each is one OpenSearch request through the
proxy's pool (serve/recommend.py puts them together); the bodies are recommend/models.py's.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import orjson

from rewriter.boost.profile import BoostProfile
from rewriter.engine.http_pool import EngineError
from rewriter.profiles.view import UserAffinity, top_values
from rewriter.recommend import models, table
from rewriter.serve.errors import ProxyError
from rewriter.serve.search import _engine_error
from rewriter.serve.state import ProxyState

SEGMENT_PREFIX = "segment:"  # ingest/segment_priors.py: the prior of `device=mobile` is
# `segment:device=mobile` in the profiles index (the search path may not import ingest)
SEGMENT_DIMENSIONS: tuple[str, ...] = ("device", "geo")


async def engine_json(
    state: ProxyState, method: str, path: str, body: dict[str, Any] | None = None
) -> tuple[int, dict[str, Any]]:
    """(status, JSON body) of one engine request; 503/504 ProxyError when it cannot answer."""
    try:
        response = await state.http.request(
            method, path, content=orjson.dumps(body) if body is not None else None
        )
    except EngineError as exc:
        raise _engine_error(exc) from exc
    try:
        parsed = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        parsed = {}
    return response.status, parsed if isinstance(parsed, dict) else {}


@dataclass(frozen=True)
class UserItems:
    seen: list[str]
    bought: list[str]


NO_ITEMS = UserItems([], [])


async def user_items(state: ProxyState, pseudonym: str | None) -> UserItems:
    """The items the user has events for (newest first) and those they bought."""
    if not pseudonym:
        return NO_ITEMS
    events = state.settings.indices.events
    status, found = await engine_json(
        state, "POST", f"/{events}/_search", models.user_items_body(pseudonym)
    )
    if status != 200:
        return NO_ITEMS
    aggs = found.get("aggregations", {})
    seen = [str(b["key"]) for b in aggs.get("seen", {}).get("buckets", [])]
    bought = [str(b["key"]) for b in aggs.get("bought", {}).get("items", {}).get("buckets", [])]
    return UserItems(seen, bought)


async def recent_items(state: ProxyState, pseudonym: str, size: int) -> list[str]:
    events = state.settings.indices.events
    status, found = await engine_json(
        state, "POST", f"/{events}/_search", models.recent_items_body(pseudonym, size)
    )
    hits = found.get("hits", {}).get("hits", []) if status == 200 else []
    return [str(h["_source"]["item_id"]) for h in hits if "item_id" in h.get("_source", {})]


async def segment_prior(
    state: ProxyState, context: dict[str, Any], boost: BoostProfile
) -> tuple[str, UserAffinity] | None:
    """The first stored segment prior of the request's device or geo, as a UserAffinity whose
    mass is the segment's member count (more members, more confidence: alpha_eff)."""
    for dimension in SEGMENT_DIMENSIONS:
        value = context.get(dimension)
        if not isinstance(value, str) or not value:
            continue
        segment = f"{dimension}={value}"
        doc_id = quote(f"{SEGMENT_PREFIX}{segment}", safe="")
        status, found = await engine_json(
            state, "GET", f"/{state.settings.indices.profiles}/_doc/{doc_id}"
        )
        source = found.get("_source") if status == 200 else None
        if not isinstance(source, dict) or not isinstance(source.get("priors"), dict):
            continue
        affinities = {
            str(attr): dict(top_values(values, boost.top_k))
            for attr, values in source["priors"].items()
            if isinstance(values, dict)
        }
        members = source.get("members")
        mass = float(members) if isinstance(members, int | float) and members > 0 else 1.0
        return segment, UserAffinity(
            user=f"{SEGMENT_PREFIX}{segment}", affinities=affinities, mass=mass
        )
    return None


async def catalog_item(state: ProxyState, index: str, item: str) -> dict[str, Any]:
    """The item's `_source`, or a 404 naming it."""
    status, found = await engine_json(state, "GET", f"/{index}/_doc/{quote(item, safe='')}")
    if status == 200 and found.get("found"):
        return found.get("_source") or {}
    if status in (200, 404) and not found.get("error"):
        raise ProxyError(
            404,
            "affinity_unknown_item",
            f"item {item!r} is not in index {index!r}; recommend for an item id of the catalog",
        )
    raise ProxyError(
        404 if status == 404 else 400,
        "affinity_unknown_index" if status == 404 else "affinity_bad_request",
        f"index {index!r} cannot be read: {str(found.get('error'))[:200]}",
    )


async def pair_neighbors(state: ProxyState, model: str, item: str) -> list[tuple[str, float, int]]:
    """The item's stored neighbours in `model`'s table; [] without a table or an entry."""
    name = table.alias(state.settings.indices.prefix)
    doc_id = quote(table.doc_id(model, item), safe="")
    status, found = await engine_json(state, "GET", f"/{name}/_doc/{doc_id}")
    return table.neighbors_of(found.get("_source")) if status == 200 else []


async def trending(state: ProxyState) -> list[tuple[str, float]]:
    """Items by how much their events rose in the log's last day over the week before (the
    last day ends at the log's newest event, or now if that is later than the clock)."""
    events = state.settings.indices.events
    status, found = await engine_json(
        state, "POST", f"/{events}/_search", models.latest_event_body()
    )
    latest = found.get("aggregations", {}).get("latest", {}).get("value") if status == 200 else None
    if not isinstance(latest, int | float) or not math.isfinite(latest):
        return []
    until = min(float(latest), time.time())
    status, found = await engine_json(
        state, "POST", f"/{events}/_search", models.trending_aggs(until)
    )
    return models.trending_from(found) if status == 200 else []
