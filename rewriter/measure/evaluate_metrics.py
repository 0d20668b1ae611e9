"""Ranking metrics of the offline replay (measure/evaluate.py): per-case scores, the summary table,
the recommended alpha with paired bootstrap intervals against both baselines, and NDCG@10 per
segment of the cases (seen / never seen, history length) with intervals over users.

One relevant item per case, so NDCG@10 = 1 / log2(1 + rank) within the top 10, reciprocal
rank counts within the top DEPTH, and coverage is the share of the catalog that appears in
any top 10.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

K = 10
DEPTH = 100
RESAMPLES = 2000


@dataclass
class Scores:
    """Per-case metrics of one method, in case order."""

    ndcg: list[float] = field(default_factory=list)
    rr: list[float] = field(default_factory=list)
    hit: list[float] = field(default_factory=list)
    shown: set[str] = field(default_factory=set)
    personalized: int = 0

    def add(self, target: str, ids: Sequence[str], seen: frozenset[str], applied: bool) -> None:
        ranked = [i for i in ids if i not in seen][:DEPTH]
        rank = ranked.index(target) + 1 if target in ranked else None
        self.ndcg.append(1 / math.log2(1 + rank) if rank and rank <= K else 0.0)
        self.rr.append(1 / rank if rank else 0.0)
        self.hit.append(1.0 if rank and rank <= K else 0.0)
        self.shown.update(ranked[:K])
        self.personalized += applied


@dataclass(frozen=True)
class Row:
    method: str
    ndcg: float
    mrr: float
    hit: float
    coverage: float
    warm_ndcg: float
    personalized: float


def summarize(
    scores: Mapping[str, Scores], warm_flags: Sequence[bool], catalog_size: int
) -> list[Row]:
    """One row per method; `warm_flags` marks the cases whose user has a profile."""
    cases = warm_flags
    warm = np.array(warm_flags, bool)
    rows = []
    for name, s in scores.items():
        ndcg = np.array(s.ndcg)
        rows.append(
            Row(
                name,
                float(ndcg.mean()),
                float(np.mean(s.rr)),
                float(np.mean(s.hit)),
                len(s.shown) / max(catalog_size, 1),
                float(ndcg[warm].mean()) if warm.any() else math.nan,
                s.personalized / max(len(cases), 1),
            )
        )
    return rows


def bootstrap_ci(
    values: Sequence[float], groups: Sequence[str] | None = None, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of `values` with a 95% percentile bootstrap interval, resampling whole `groups`
    (users: their cases are not independent) or, without groups, single values."""
    v = np.asarray(values, float)
    if len(v) == 0:
        return math.nan, math.nan, math.nan
    if groups is None:
        sums, counts = v, np.ones(len(v))
    else:
        _, inverse = np.unique(np.asarray(groups), return_inverse=True)
        sums, counts = np.bincount(inverse, v), np.bincount(inverse).astype(float)
    idx = np.random.default_rng(seed).integers(0, len(sums), (RESAMPLES, len(sums)))
    means = sums[idx].sum(axis=1) / counts[idx].sum(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    return float(v.mean()), float(low), float(high)


def paired_ci(a: Sequence[float], b: Sequence[float], seed: int = 0) -> tuple[float, float, float]:
    """Mean of a − b over cases with a 95% percentile bootstrap interval (paired)."""
    return bootstrap_ci(np.asarray(a) - np.asarray(b), None, seed)


@dataclass(frozen=True)
class SegmentRow:
    """NDCG@10 of one method in one segment of the cases, with a 95% interval over users."""

    method: str
    segment: str
    cases: int
    ndcg: float
    low: float
    high: float


def segments(
    scores: Mapping[str, Scores],
    users: Sequence[str],
    members: Mapping[str, Sequence[bool]],
    seed: int = 0,
) -> list[SegmentRow]:
    """Every method's NDCG@10 in every segment (`members`: segment -> which cases)."""
    rows = []
    user_ids = np.asarray(users)
    for name, s in scores.items():
        ndcg = np.asarray(s.ndcg)
        for segment, flags in members.items():
            mask = np.asarray(flags, bool)
            mean, low, high = bootstrap_ci(ndcg[mask], user_ids[mask], seed)
            rows.append(SegmentRow(name, segment, int(mask.sum()), mean, low, high))
    return rows


def render_segments(rows: Sequence[SegmentRow]) -> str:
    """NDCG@10 [95% CI, bootstrap over users] per method (rows) and segment (columns)."""
    names = list(dict.fromkeys(r.segment for r in rows))
    methods = list(dict.fromkeys(r.method for r in rows))
    at = {(r.method, r.segment): r for r in rows}
    width = 24
    lines = [
        "NDCG@10 by segment [95% CI, bootstrap over users]; seen = the chosen item was one the "
        "user interacted with before the cutoff; history = the user's training events",
        "",
        f"{'segment':<14}" + "".join(f"{n:>{width}}" for n in names),
        f"{'cases':<14}" + "".join(f"{at[(methods[0], n)].cases:>{width}}" for n in names),
    ]
    for m in methods:
        cells = (_cell(at[(m, n)]) for n in names)
        lines.append(f"{m:<14}" + "".join(f"{c:>{width}}" for c in cells))
    return "\n".join(lines)


def _cell(r: SegmentRow) -> str:
    if r.cases == 0:
        return "n/a"
    if math.isnan(r.low):
        return f"{r.ndcg:.4f}"
    return f"{r.ndcg:.4f} [{r.low:.3f}, {r.high:.3f}]"


def recommend(rows: Sequence[Row], scores: Mapping[str, Scores]) -> tuple[float | None, str]:
    """The alpha with the best NDCG@10 (the smaller on ties), against both baselines."""
    alphas = [r for r in rows if r.method.startswith("alpha=")]
    if not alphas:
        return None, "no alpha evaluated"
    best = max(alphas, key=lambda r: (round(r.ndcg, 6), -float(r.method[6:])))
    parts = []
    for base in ("generic", "popularity"):
        diff, low, high = paired_ci(scores[best.method].ndcg, scores[base].ndcg)
        parts.append(f"vs {base} {diff:+.4f} [{low:+.4f}, {high:+.4f}]")
    text = f"recommended {best.method} (NDCG@10 {best.ndcg:.4f}; {'; '.join(parts)}, 95% CI)"
    positive = [r.ndcg for r in alphas if float(r.method[6:]) > 0]
    if len(positive) > 1 and max(positive) - min(positive) < 1e-12:
        text += (
            "\nnote: every alpha > 0 ranks alike: relevance is the same for all candidates of "
            "these queries, so only the affinity order counts, not its weight"
        )
    return float(best.method[6:]), text


def render(rows: Sequence[Row], header: str, recommendation: str) -> str:
    lines = [
        header,
        "",
        f"{'method':<14}{'NDCG@10':>9}{'MRR@100':>9}{'Hit@10':>9}{'coverage':>10}"
        f"{'NDCG@10 warm':>14}{'personalized':>14}",
    ]
    for r in rows:
        warm = "n/a" if math.isnan(r.warm_ndcg) else f"{r.warm_ndcg:.4f}"
        lines.append(
            f"{r.method:<14}{r.ndcg:>9.4f}{r.mrr:>9.4f}{r.hit:>9.4f}{r.coverage:>10.1%}"
            f"{warm:>14}{r.personalized:>14.1%}"
        )
    return "\n".join([*lines, "", recommendation])
