"""`affinity facets report` (issue 11, item 9): per segment and facet, how often the facet
was shown, how often a value of it was selected, and the selection rate, with plain notes on
what to hide or reweight where a segment never (or rarely) uses a facet.

Shown: the impressions (one per search through the proxy) whose `facets` list the facet's
attribute, once per segment the user was in (`(no segment)` when none) and once under
`(all)`. Selected: `facet_select` events joined to their search by `query_id`, counted under
that search's segments; selections without a known search are counted apart (`unjoined`).
`facet_report` is pure; `load` reads both logs from OpenSearch.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from opensearchpy import OpenSearch, helpers

from rewriter import config
from rewriter.events.facet_select import FACET_SELECT, facet_of

ALL = "(all)"
NO_SEGMENT = "(no segment)"
DEFAULT_MIN_SHOWN = 20
"""A facet shown fewer times to a segment gets no note: too few to say anything."""
LOW_RATE_SHARE = 0.5
"""A segment whose rate is under this share of (all)'s is called out as reduced engagement."""


@dataclass(frozen=True)
class FacetRow:
    segment: str
    facet: str
    shown: int
    selected: int

    @property
    def rate(self) -> float:
        return self.selected / self.shown if self.shown else 0.0

    def as_json(self) -> dict[str, Any]:
        return {**self.__dict__, "rate": self.rate}


@dataclass(frozen=True)
class FacetReport:
    rows: tuple[FacetRow, ...]
    notes: tuple[str, ...]
    impressions: int
    selections: int
    unjoined: int

    def as_json(self) -> dict[str, Any]:
        return {
            "rows": [r.as_json() for r in self.rows],
            "notes": list(self.notes),
            "impressions": self.impressions,
            "selections": self.selections,
            "unjoined": self.unjoined,
        }


def facet_report(
    impressions: Iterable[Mapping[str, Any]],
    selections: Iterable[Mapping[str, Any]],
    min_shown: int = DEFAULT_MIN_SHOWN,
) -> FacetReport:
    """The report from impression documents and facet_select event documents (module doc)."""
    shown: Counter[tuple[str, str]] = Counter()
    segments_of: dict[str, list[str]] = {}
    n_impressions = 0
    for imp in impressions:
        n_impressions += 1
        segments = _segments(imp)
        if isinstance(imp.get("query_id"), str):
            segments_of[imp["query_id"]] = segments
        for facet in imp.get("facets") or []:
            for segment in segments:
                shown[(segment, str(facet))] += 1
    selected: Counter[tuple[str, str]] = Counter()
    n_selections = unjoined = 0
    for event in selections:
        facet = facet_of(str(event.get("item_id", "")))
        if facet is None:
            continue
        n_selections += 1
        segments = segments_of.get(str(event.get("query_id")))
        if segments is None:
            unjoined += 1
            continue
        for segment in segments:
            selected[(segment, facet[0])] += 1
    keys = sorted(set(shown) | set(selected), key=lambda k: (k[0] != ALL, k))
    rows = tuple(FacetRow(s, f, shown[(s, f)], selected[(s, f)]) for s, f in keys)
    return FacetReport(rows, _notes(rows, min_shown), n_impressions, n_selections, unjoined)


def _segments(impression: Mapping[str, Any]) -> list[str]:
    given = [s for s in impression.get("segments") or [] if isinstance(s, str)]
    return [ALL, *(given or [NO_SEGMENT])]


def _notes(rows: Iterable[FacetRow], min_shown: int) -> tuple[str, ...]:
    rows = list(rows)
    overall = {r.facet: r.rate for r in rows if r.segment == ALL}
    notes = []
    for r in rows:
        if r.segment == ALL or r.shown < min_shown:
            continue
        if r.selected == 0:
            notes.append(
                f"segment {r.segment} never selects a {r.facet} value (shown {r.shown} times): "
                f"hide it for them (boost profile facets rule: segment: {r.segment}, "
                f"group: {r.facet}, hide: all) or render it lower"
            )
        elif r.rate < LOW_RATE_SHARE * overall.get(r.facet, 0.0):
            notes.append(
                f"segment {r.segment} selects {r.facet} at {r.rate:.1%}, under half of the "
                f"{overall[r.facet]:.1%} of all users: lower its weight for them or try "
                f"max_favored 1 (a facets rule for segment {r.segment})"
            )
    return tuple(notes)


def render(report: FacetReport) -> str:
    """The report as a table, then the notes."""
    lines = [
        f"{report.impressions} searches with facets, {report.selections} facet selections "
        f"({report.unjoined} without a known search)",
        "",
        f"{'segment':<20} {'facet':<16} {'shown':>8} {'selected':>9} {'rate':>7}",
    ]
    for r in report.rows:
        lines.append(f"{r.segment:<20} {r.facet:<16} {r.shown:>8} {r.selected:>9} {r.rate:>7.1%}")
    if not report.rows:
        lines.append("(no searches with facets and no facet selections in this period)")
    lines += ["", *(f"note: {n}" for n in report.notes)] if report.notes else []
    return "\n".join(lines)


def load(
    es: OpenSearch, settings: config.Settings, since_s: float, now: float | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Impressions with facets and facet_select events of the last `since_s` seconds."""
    start = (time.time() if now is None else now) - since_s
    impressions = _scan(
        es,
        settings.indices.impressions,
        {"range": {"timestamp": {"gte": start}}},
        ["query_id", "segments", "facets"],
    )
    events = _scan(
        es,
        settings.indices.events,
        {
            "bool": {
                "filter": [
                    {"term": {"type": FACET_SELECT}},
                    {"range": {"timestamp": {"gte": start}}},
                ]
            }
        },
        ["item_id", "query_id"],
    )
    return [i for i in impressions if i.get("facets")], events


def _scan(
    es: OpenSearch, index: str, query: dict[str, Any], fields: list[str]
) -> list[dict[str, Any]]:
    body = {"query": query, "_source": fields}
    return [h["_source"] for h in helpers.scan(es, index=index, query=body, size=1000)]
