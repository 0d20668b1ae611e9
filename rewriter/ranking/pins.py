"""Pinned items: put given item ids at given positions of the result list.

OpenSearch core has no `pinned` query (opensearch-project/OpenSearch#72), and even
Elasticsearch's only puts pinned items *above* the organic results, not at position 3 or 7.
A score cannot know its rank, so affinity places pins after the engine ranked (docs/
decisions.md, "Pins are spliced into the engine's ranking"):

1. the rewritten (organic) query excludes the pinned ids with a `post_filter` (so
   aggregations still count them) and asks for `from - n .. from + size` (n = pins of the
   request, clamped at 0), enough whatever pins turn out to exist;
2. a second body fetches the pinned items by id, minus hidden ones (hide wins over pin);
3. both go in one `_msearch` round trip, and `merge` lays out the page: a pin takes its
   position, organic hits fill the other slots in engine order. A pin past the end of the
   results moves up to follow them (so every pin shows exactly once across pages), and a
   pinned item that does not exist or is hidden leaves no gap.

The order of organic hits is the engine's: Python only decides which slots pins take.
Pure: bodies and responses in, bodies and responses out.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from rewriter.ranking.resolve import ActiveFilter, ActivePin

T = TypeVar("T")
Body = dict[str, Any]
FETCH_KEYS = (
    "_source",
    "fields",
    "docvalue_fields",
    "stored_fields",
    "script_fields",
    "version",
    "seq_no_primary_term",
)


@dataclass(frozen=True)
class PinPlan:
    """How one request's pins are fetched and laid out."""

    pins: tuple[ActivePin, ...]  # by position
    start: int  # the app's from
    size: int  # the app's size
    organic_from: int  # the from sent with the organic query
    fetch: Body  # the body that fetches the pinned items

    @property
    def ids(self) -> list[str]:
        return [p.item for p in self.pins]


def apply(
    body: Body, pins: Sequence[ActivePin], hides: Sequence[ActiveFilter], start: int, size: int
) -> PinPlan:
    """Change the organic body in place (post_filter, from, size) and plan the fetch."""
    ids = [p.item for p in pins]
    exclude: dict[str, Any] = {"ids": {"values": ids}}
    existing = body.get("post_filter")
    body["post_filter"] = (
        {"bool": {"filter": [existing], "must_not": [exclude]}}
        if existing is not None
        else {"bool": {"must_not": [exclude]}}
    )
    organic_from = max(0, start - len(pins))
    body["from"] = organic_from
    body["size"] = start + size - organic_from
    fetch_query: dict[str, Any] = {"bool": {"filter": [{"ids": {"values": ids}}]}}
    if hides:
        fetch_query["bool"]["must_not"] = [copy.deepcopy(h.filter) for h in hides]
    fetch: Body = {"query": fetch_query, "size": len(ids)}
    fetch.update({k: copy.deepcopy(body[k]) for k in FETCH_KEYS if k in body})
    return PinPlan(tuple(pins), start, size, organic_from, fetch)


def layout(
    pinned: Sequence[tuple[int, T]],
    organic: Sequence[T],
    organic_from: int,
    start: int,
    size: int,
    total: int | None,
) -> list[tuple[T, int | None]]:
    """The page [start, start + size) as (entry, position if pinned else None).

    pinned: (position, entry) of the pins that exist, by position; organic: the organic
    entries from index organic_from on; total: how many organic entries there are (None if
    unknown), so pins past the end move up to follow them."""
    placed: dict[int, T] = {}
    for i, (position, entry) in enumerate(pinned):
        effective = position if total is None else min(position, total + i + 1)
        placed[effective] = entry
    slots = sorted(placed)
    page: list[tuple[T, int | None]] = []
    for index in range(start, start + size):
        if index + 1 in placed:
            page.append((placed[index + 1], index + 1))
            continue
        before = sum(1 for s in slots if s - 1 < index)
        k = index - before - organic_from
        if not 0 <= k < len(organic):
            break
        page.append((organic[k], None))
    return page


def msearch_lines(index: str, organic: Body, plan: PinPlan) -> list[Body]:
    """The _msearch header/body lines: the organic search, then the pinned fetch."""
    return [{"index": index}, organic, {"index": index}, plan.fetch]


def merge(organic: Mapping[str, Any], fetched: Mapping[str, Any], plan: PinPlan) -> Body:
    """One search response from the organic and the pinned responses of an _msearch."""
    response: Body = copy.deepcopy(dict(organic))
    response.pop("status", None)
    by_id = {h["_id"]: h for h in fetched.get("hits", {}).get("hits", [])}
    available = [p for p in plan.pins if p.item in by_id]
    hits = response.setdefault("hits", {})
    total = hits.get("total")
    count = total.get("value") if isinstance(total, dict) else total
    exact = isinstance(total, int) or (isinstance(total, dict) and total.get("relation") == "eq")
    pinned = [(p.position, (p, by_id[p.item])) for p in available]
    organic_hits = [(None, h) for h in hits.get("hits", [])]
    page = layout(
        pinned,
        organic_hits,
        plan.organic_from,
        plan.start,
        plan.size,
        int(count) if exact and count is not None else None,
    )
    hits["hits"] = [_mark(entry, position) for entry, position in page]
    if isinstance(total, dict):
        total["value"] = int(total.get("value", 0)) + len(available)
    elif isinstance(total, int):
        hits["total"] = total + len(available)
    response["took"] = max(int(organic.get("took", 0)), int(fetched.get("took", 0)))
    return response


def _mark(entry: tuple[ActivePin | None, Body], position: int | None) -> Body:
    pin, hit = entry
    if pin is None or position is None:
        return hit
    marked = dict(hit)
    marked["_pinned"] = {"position": position, "rule": pin.rule}
    return marked


# URL parameters of a search that _msearch takes per search (header line) or for all.
HEADER_PARAMS = (
    "routing",
    "preference",
    "request_cache",
    "search_type",
    "allow_partial_search_results",
    "ignore_unavailable",
    "allow_no_indices",
    "expand_wildcards",
)


def msearch_request(
    index: str, organic: Body, plan: PinPlan, params: Mapping[str, str]
) -> tuple[list[Body], dict[str, str]]:
    """The _msearch lines and URL parameters for a pinned search. Search parameters that
    _msearch takes per search go into the header lines; the rest stay URL parameters (and
    OpenSearch rejects those _msearch does not know, rather than affinity dropping them)."""
    header: Body = {"index": index} if index else {}
    header.update({k: v for k, v in params.items() if k in HEADER_PARAMS})
    rest = {k: v for k, v in params.items() if k not in HEADER_PARAMS}
    return [header, organic, dict(header), plan.fetch], rest


def from_msearch(payload: Mapping[str, Any], plan: PinPlan) -> tuple[int, Body]:
    """(status, body) of the pinned search from its _msearch response: the merged response,
    or the first error as OpenSearch would have answered the search."""
    organic, fetched = payload["responses"][:2]
    for part in (organic, fetched):
        if "error" in part:
            status = int(part.get("status", 500))
            return status, {"error": part["error"], "status": status}
    return 200, merge(organic, fetched, plan)
