"""`affinity suggestions show`: one user's suggestions and one facet, generic beside
personalized, through an in-process proxy (the demo's view of issue 11)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import httpx

from rewriter import config
from rewriter.measure.serve_thread import serve_in_thread
from rewriter.serve.app import create_app

WIDTH = 44


def side_by_side(
    s: config.Settings, index: str, user: str, prefix: str, boost: str, facet: str, size: int = 8
) -> str:
    personal = {"X-User-Id": user, "X-Boost-Profile": boost}
    generic = {**personal, "X-Personalization": "off"}
    params = {"index": index, "q": prefix, "size": str(size)}
    body = {
        "query": {"match_bool_prefix": {"title": prefix}},
        "size": 1,
        "aggs": {facet: {"terms": {"field": facet, "size": size}}},
    }
    quiet = replace(s, impressions=False)  # the demo's own searches are no user's history
    with serve_in_thread(create_app(quiet)) as url, httpx.Client(base_url=url, timeout=30) as c:
        found = [
            c.get("/_affinity/suggest", params=params, headers=h).json()
            for h in (generic, personal)
        ]
        facets = [
            c.post(f"/{index}/_search", json=body, headers=h).json() for h in (generic, personal)
        ]
    lines = [f"suggestions for {prefix!r}, user {user}, boost profile {boost}"]
    generic_list, personal_list = (
        [_suggestion(x) for x in f.get("suggestions", [])] for f in found
    )
    lines += _columns(generic_list, personal_list)
    lines += ["", f"facet {facet} for the search {prefix!r}"]
    lines += _columns(_buckets(facets[0], facet), _buckets(facets[1], facet))
    return "\n".join(lines)


def _suggestion(item: dict[str, Any]) -> str:
    mark = "↺ " if item.get("kind") == "recent" else ""
    return f"{mark}{item.get('text')} ({item.get('kind')})"[:WIDTH]


def _buckets(response: dict[str, Any], facet: str) -> list[str]:
    agg = (response.get("aggregations") or {}).get(facet) or {}
    out = []
    for b in agg.get("buckets", []):
        star = f" ★ {b['affinity']:.2f}" if b.get("favored") else ""
        out.append(f"{b['key']} ({b['doc_count']}){star}"[:WIDTH])
    return out


def _columns(left: list[str], right: list[str]) -> list[str]:
    rows = [f"   {'GENERIC':<{WIDTH}} PERSONALIZED"]
    for n in range(max(len(left), len(right))):
        a = left[n] if n < len(left) else ""
        b = right[n] if n < len(right) else ""
        rows.append(f"{n + 1:>2} {a:<{WIDTH}} {b}")
    return rows
