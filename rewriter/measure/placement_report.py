"""`affinity placements report` and `affinity recommendations report`: what each placement or
carousel model was shown, clicked and bought, per segment and experiment variant, with 95%
intervals (measure/stats.py `proportion_ci`, Wilson, as the experiment report's rates).

The proxy logs each decision (`d-...`, serve/placements.py) and each carousel (`r-...`,
serve/recommend.py) as an impression whose doc id is that id; events carry it back
(`decision_id` / `recommendation_id`, stored as `query_id`). Per decision:

- shown: an `impression` event carries its id; when no event of the report carries an
  impression (the storefront does not send them), every decision served counts as shown;
- clicked: a `click` event carries its id; converted: a `purchase` event carries its id.

CTR = clicked / shown and conversion = converted / shown, over decisions. A decision in
several segments counts in each segment's row; `all` counts it once.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from opensearchpy import OpenSearch, helpers

from rewriter import config
from rewriter.measure import stats

KINDS: Mapping[str, tuple[str, str]] = {
    "placements": ("d-", "placement"),
    "recommendations": ("r-", "model"),
}


@dataclass(frozen=True)
class Decision:
    id: str
    name: str  # the placement id or the model
    segments: tuple[str, ...]
    variant: str | None


@dataclass(frozen=True)
class Row:
    name: str
    group: str  # all | segment:<name> | variant:<experiment>/<variant>
    decisions: int
    shown: int
    clicks: int
    ctr: float
    ctr_low: float
    ctr_high: float
    conversions: int
    conversion: float
    conversion_low: float
    conversion_high: float


def decision_of(source: Mapping[str, Any], kind: str) -> Decision:
    ids = source.get("item_ids") or [None]
    name = source.get("model") if kind == "recommendations" else ids[0]
    variant = source.get("variant")
    exp = source.get("experiment")
    return Decision(
        id=str(source.get("query_id")),
        name=str(name),
        segments=tuple(str(s) for s in source.get("segments") or ()),
        variant=f"{exp}/{variant}" if variant else None,
    )


def rows(decisions: Sequence[Decision], events: Iterable[Mapping[str, Any]]) -> list[Row]:
    """The report's rows (pure): per name, `all`, each segment, each variant."""
    by_type: dict[str, set[str]] = defaultdict(set)
    for e in events:
        by_type[str(e.get("type"))].add(str(e.get("query_id")))
    impressions = by_type.get("impression", set())
    groups: dict[tuple[str, str], list[Decision]] = defaultdict(list)
    for d in decisions:
        keys = ["all", *(f"segment:{s}" for s in d.segments)]
        keys += [f"variant:{d.variant}"] if d.variant else []
        for key in keys:
            groups[(d.name, key)].append(d)
    out = []
    for (name, group), members in sorted(groups.items()):
        shown = [d for d in members if d.id in impressions] if impressions else members
        clicks = sum(d.id in by_type.get("click", ()) for d in shown)
        bought = sum(d.id in by_type.get("purchase", ()) for d in shown)
        ctr = stats.proportion_ci(clicks, len(shown)) if shown else (0.0, 0.0, 0.0)
        conv = stats.proportion_ci(bought, len(shown)) if shown else (0.0, 0.0, 0.0)
        out.append(Row(name, group, len(members), len(shown), clicks, *ctr, bought, *conv))
    return out


def fetch(es: OpenSearch, settings: config.Settings, kind: str) -> list[Row]:
    prefix, _ = KINDS[kind]
    es.indices.refresh(index=f"{settings.indices.impressions},{settings.indices.events}")
    query = {"query": {"prefix": {"query_id": prefix}}}
    decisions = [
        decision_of(h["_source"], kind)
        for h in helpers.scan(es, index=settings.indices.impressions, query=query)
    ]
    events = (
        h["_source"]
        for h in helpers.scan(
            es, index=settings.indices.events, query=query, _source=["query_id", "type"]
        )
    )
    return rows(decisions, events)


def render(report: Sequence[Row], kind: str) -> str:
    title = KINDS[kind][1]
    head = (
        f"{title:<24} {'group':<26} {'served':>6} {'shown':>6} {'clicks':>6} {'CTR [95% CI]':>24} "
        f"{'conv':>5} {'conversion [95% CI]':>24}"
    )
    lines = [head, "-" * len(head)]
    for r in report:
        lines.append(
            f"{r.name[:24]:<24} {r.group[:26]:<26} {r.decisions:>6} {r.shown:>6} {r.clicks:>6} "
            f"{_pct(r.shown, r.ctr, r.ctr_low, r.ctr_high):>24} {r.conversions:>5} "
            f"{_pct(r.shown, r.conversion, r.conversion_low, r.conversion_high):>24}"
        )
    if not report:
        lines.append(f"(no {kind} served yet)")
    return "\n".join(lines)


def _pct(n: int, p: float, low: float, high: float) -> str:
    if n == 0:
        return "-"
    return f"{100 * p:.1f}% [{100 * low:.1f}, {100 * high:.1f}]"


def to_json(report: Sequence[Row]) -> list[dict[str, Any]]:
    return [asdict(r) for r in report]
