"""How the first-pass relevance and the affinity term combine, measured offline.

BM25 scores differ by query, so a fixed alpha is a different strength on each query. The
engine adds `alpha_eff · Affinity` to the first-pass score (`additive`, ranking/reference.py).
Two other shapes, computed here from the reference scorer's parts (the same window, terms and
alpha_eff) for `affinity evaluate --tune` to compare, each at its own best alpha:

- `normalized`: relevance divided by the query's best first-pass score, plus the term: the
  same order as `relevance + alpha_eff · max_relevance · Affinity`, so alpha is a share of the
  query's top score;
- `multiplicative`: `relevance · (1 + alpha_eff · Affinity)`: alpha is a relative lift.

Only the ranking is computed, for measurement; the engine renders `additive` alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rewriter.ranking.reference import ScoredHit

SHAPES = ("additive", "normalized", "multiplicative")


def combine(relevance: np.ndarray, lift: np.ndarray, shape: str) -> np.ndarray:
    """Final scores: `lift` is alpha_eff · Affinity where the rescore reached, else 0."""
    if shape == "additive":
        return relevance + lift
    if shape == "normalized":
        return relevance + lift * max(float(relevance.max(initial=0.0)), 0.0)
    if shape == "multiplicative":
        return relevance * (1.0 + lift)
    raise ValueError(f"unknown relevance shape {shape!r}; use one of {', '.join(SHAPES)}")


def rerank(scored: Sequence[ScoredHit], shape: str) -> list[str]:
    """Hit ids in the order `shape` ranks them (ties keep the first-pass order); `scored` is
    reference.score's output for a query without rules."""
    if shape == "additive" or not scored:
        combine(np.zeros(0), np.zeros(0), shape)  # names an unknown shape
        return [h.id for h in scored]
    relevance = np.array([h.relevance for h in scored])
    first = np.argsort(-relevance, kind="stable")
    lift = np.array([h.weight * h.term if h.rescored else 0.0 for h in scored])
    final = combine(relevance, lift, shape)
    order = first[np.argsort(-final[first], kind="stable")]
    return [scored[i].id for i in order]
