"""`affinity audit exposure`: does personalization narrow what people see?

For a sample of users (the first `users` profiles, in pseudonym order) and a set of queries,
each query is ranked for each user with the boost profile at each alpha (0 is the generic
ranking), exactly as the proxy would (ranking/rewrite.py, sent to OpenSearch). Every slot of
the top `k` is one unit of exposure; per attribute (the boost profile's), the report gives
each value's share of all exposure and the Gini coefficient of the shares over the values
seen at any alpha (0: every value shown equally, towards 1: a few values take it all).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from opensearchpy import OpenSearch

from rewriter import config
from rewriter.boost.profile import BoostProfile
from rewriter.profiles.doc import UnreadableProfile, profile_from_source
from rewriter.profiles.view import affinity_view
from rewriter.ranking.rewrite import RequestContext, rewrite

DEFAULT_QUERIES: tuple[str, ...] = ("man", "love", "war", "night", "day")


def gini(shares: Sequence[float]) -> float:
    """The Gini coefficient of non-negative amounts (0 when all equal or none)."""
    values = sorted(float(x) for x in shares)
    n, total = len(values), sum(values)
    if n == 0 or total <= 0:
        return 0.0
    weighted = sum((i + 1) * v for i, v in enumerate(values))
    return (2 * weighted) / (n * total) - (n + 1) / n


@dataclass(frozen=True)
class Exposure:
    alpha: float
    attribute: str
    gini: float
    distinct: int
    top: tuple[tuple[str, float], ...]  # the largest shares


def exposures(counts: Mapping[float, Mapping[str, Counter[str]]], show: int = 5) -> list[Exposure]:
    """Per alpha and attribute: Gini over every value seen at any alpha, the top shares."""
    out = []
    attributes = sorted({a for per in counts.values() for a in per})
    for attribute in attributes:
        universe = set().union(*(per.get(attribute, Counter()) for per in counts.values()))
        for alpha, per in sorted(counts.items()):
            c = per.get(attribute, Counter())
            total = sum(c.values()) or 1
            shares = [c.get(v, 0) / total for v in universe]
            top = tuple((v, n / total) for v, n in c.most_common(show))
            out.append(Exposure(alpha, attribute, gini(shares), len(c), top))
    return out


def _users(es: OpenSearch, settings: config.Settings, n: int) -> Iterable[dict[str, Any]]:
    query = {
        "query": {"bool": {"must_not": [{"prefix": {"user": "segment:"}}]}},
        "sort": [{"_id": "asc"}],
        "size": n,
    }
    for hit in es.search(index=settings.indices.profiles, body=query)["hits"]["hits"]:
        yield hit["_source"]


def audit(
    es: OpenSearch,
    settings: config.Settings,
    boost: BoostProfile,
    alphas: Sequence[float],
    users: int = 50,
    queries: Sequence[str] = DEFAULT_QUERIES,
    k: int = 10,
    index: str | None = None,
) -> list[Exposure]:
    index = index or settings.indices.catalog
    counts: dict[float, dict[str, Counter[str]]] = {a: {} for a in alphas}
    attrs = [a for a, w in boost.attributes.items() if w > 0]
    for source in _users(es, settings, users):
        try:
            view = affinity_view(profile_from_source(source), time.time(), boost.top_k)
        except UnreadableProfile:
            continue
        for text in queries:
            body = {"query": {"match": {"title": text}}, "size": k, "_source": attrs}
            for alpha in alphas:
                result = rewrite(body, view, replace(boost, alpha=alpha), RequestContext())
                hits = es.search(index=index, body=result.body)["hits"]["hits"]
                for hit in hits:
                    for attr in attrs:
                        raw = hit["_source"].get(attr)
                        for v in raw if isinstance(raw, list) else [raw]:
                            if v is not None:
                                counts[alpha].setdefault(attr, Counter())[str(v)] += 1
    return exposures(counts)


def render(rows: Sequence[Exposure]) -> str:
    lines = [
        "| attribute | alpha | Gini | values shown | largest shares |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        top = ", ".join(f"{v} {100 * s:.1f}%" for v, s in r.top)
        lines.append(f"| {r.attribute} | {r.alpha:g} | {r.gini:.3f} | {r.distinct} | {top} |")
    return "\n".join(lines)
