"""`affinity boost diff`: two versions of a boost profile over many users and queries.

Users are sampled from the profiles index (fixed seed; opted-out users and segment priors
left out), queries come from a file (one per line; an empty line browses: match_all) or are
words sampled from catalog titles. Both versions rank every (user, query) pair; the report
counts pairs whose top 10 changed and items that entered a top 10, the mean and largest rank
shifts of the new top-10 items (an item absent from the old top 50 counts as rank 51), and
how often each rule fired and each segment matched under either version.
`DiffReport.as_json()` is the `--json` output.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from opensearchpy import OpenSearch

from rewriter import config
from rewriter.boost.profile import BoostProfile
from rewriter.measure.boost_compare import DEPTH, TOP, Hit, run_many, search_body
from rewriter.profiles.doc import ProfileError, profile_from_source
from rewriter.profiles.view import UserAffinity, affinity_view
from rewriter.ranking.rewrite import RequestContext, rewrite
from rewriter.serve.api import Personalizer


def _ids(response: Hit) -> list[str]:
    return [h["_id"] for h in response.get("hits", {}).get("hits", [])]


# --- diff ------------------------------------------------------------------------------------


@dataclass
class Side:
    name: str
    version: str
    source: str
    rules: Counter[str] = field(default_factory=Counter)
    segments: Counter[str] = field(default_factory=Counter)


@dataclass
class DiffReport:
    old: Side
    new: Side
    users: int
    queries: list[str]
    pairs: int = 0
    changed: int = 0
    entered: int = 0
    shifts: list[int] = field(default_factory=list)  # |rank change| of each new top-10 item
    largest: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        moved = [s for s in self.shifts if s]
        return {
            "old": _side_json(self.old, self.pairs),
            "new": _side_json(self.new, self.pairs),
            "users": self.users,
            "queries": self.queries,
            "pairs": self.pairs,
            "top10_changed": self.changed,
            "top10_changed_share": self.changed / self.pairs if self.pairs else 0.0,
            "items_entered_top10": self.entered,
            "mean_rank_shift": sum(self.shifts) / len(self.shifts) if self.shifts else 0.0,
            "mean_rank_shift_of_moved": sum(moved) / len(moved) if moved else 0.0,
            "largest_rank_shift": self.largest,
        }


def _side_json(side: Side, pairs: int) -> dict[str, Any]:
    return {
        "name": side.name,
        "version": side.version,
        "source": side.source,
        "rules_fired": {r: {"pairs": n, "share": n / pairs} for r, n in side.rules.most_common()},
        "segments": {s: n for s, n in side.segments.most_common()},
    }


def diff(
    es: OpenSearch,
    settings: config.Settings,
    index: str,
    old: BoostProfile,
    new: BoostProfile,
    *,
    users: int = 50,
    queries: Sequence[str] | None = None,
    context: RequestContext | None = None,
    seed: int = 42,
) -> DiffReport:
    """Rank every sampled (user, query) pair under both profiles and compare the top 10."""
    p = Personalizer(es, settings, {"old": old, "new": new})
    sides = [p.boost("old"), p.boost("new")]
    sample = sample_users(es, settings, users, seed, max(b.top_k for b in sides))
    words = list(queries) if queries is not None else sample_queries(es, index, 10, seed)
    report = DiffReport(*(Side(b.name, b.version, b.source) for b in sides), len(sample), words)
    ctx = replace(context or RequestContext(), now=time.time())
    for pseudonym, user in sample:
        for query in words:
            body = search_body(query, DEPTH)
            results = [rewrite(body, user, b, replace(ctx, user=pseudonym)) for b in sides]
            for side, result in zip((report.old, report.new), results, strict=True):
                side.rules.update(set(result.rules.fired))
                side.segments.update(result.rules.segments)
            old_r, new_r = run_many(es, index, results)
            _compare(report, _ids(old_r), _ids(new_r), pseudonym, query)
    return report


def _compare(report: DiffReport, old: list[str], new: list[str], user: str, query: str) -> None:
    report.pairs += 1
    report.changed += old[:TOP] != new[:TOP]
    report.entered += len(set(new[:TOP]) - set(old[:TOP]))
    old_rank = {item: i + 1 for i, item in enumerate(old)}
    for i, item in enumerate(new[:TOP]):
        before = old_rank.get(item, DEPTH + 1)
        shift = abs(before - (i + 1))
        report.shifts.append(shift)
        if shift > report.largest.get("shift", 0):
            report.largest = {
                "shift": shift,
                "user": user,
                "query": query,
                "item": item,
                "old_rank": before if before <= DEPTH else None,
                "new_rank": i + 1,
            }


def sample_users(
    es: OpenSearch, settings: config.Settings, n: int, seed: int, top_k: int
) -> list[tuple[str, UserAffinity]]:
    """(pseudonym, profile) of `n` users drawn with a fixed seed; opted-out users and
    segment priors are left out."""
    query = {
        "function_score": {
            "query": {
                "bool": {
                    "must_not": [{"term": {"opt_out": True}}, {"prefix": {"user": "segment:"}}]
                }
            },
            "random_score": {"seed": seed, "field": "_seq_no"},
        }
    }
    hits = es.search(index=settings.indices.profiles, body={"size": n, "query": query})
    now = time.time()
    out: list[tuple[str, UserAffinity]] = []
    for hit in hits["hits"]["hits"]:
        try:
            out.append((hit["_id"], affinity_view(profile_from_source(hit["_source"]), now, top_k)))
        except ProfileError:
            continue
    return out


def sample_queries(es: OpenSearch, index: str, n: int, seed: int) -> list[str]:
    """One word (4+ letters) from each of some randomly drawn catalog titles, and "" (browse)."""
    query = {
        "function_score": {
            "query": {"match_all": {}},
            "random_score": {"seed": seed, "field": "_seq_no"},
        }
    }
    body = {"size": n * 4, "query": query, "_source": ["title"]}
    words: list[str] = [""]
    for hit in es.search(index=index, body=body)["hits"]["hits"]:
        title = str((hit.get("_source") or {}).get("title") or "")
        found = [w.lower() for w in re.findall(r"[A-Za-z]{4,}", title) if w.lower() != "the"]
        if found and found[0] not in words:
            words.append(found[0])
        if len(words) >= n:
            break
    return words


def format_diff(report: DiffReport) -> str:
    data = report.as_json()
    largest = data["largest_rank_shift"]
    lines = [
        f"old: {report.old.name} {report.old.version} ({report.old.source})",
        f"new: {report.new.name} {report.new.version} ({report.new.source})",
        f"{data['users']} users x {len(report.queries)} queries = {data['pairs']} pairs "
        f"(queries: {', '.join(repr(q) for q in report.queries)})",
        f"top 10 changed: {data['top10_changed']} of {data['pairs']} pairs "
        f"({100 * data['top10_changed_share']:.1f}%); {data['items_entered_top10']} items "
        "entered a top 10",
        f"rank shift of new top-10 items: mean {data['mean_rank_shift']:.2f}, mean of moved "
        f"{data['mean_rank_shift_of_moved']:.2f}, largest {largest.get('shift', 0)}"
        + (
            f" (user {largest['user'][:8]}.., query {largest['query']!r}, item "
            f"{largest['item']}: #{largest['old_rank'] or f'>{DEPTH}'} -> #{largest['new_rank']})"
            if largest
            else ""
        ),
    ]
    for label, side in (("old", report.old), ("new", report.new)):
        fired = ", ".join(f"{r} {n}/{report.pairs}" for r, n in side.rules.most_common())
        seg = ", ".join(f"{s} {n}/{report.pairs}" for s, n in side.segments.most_common())
        lines.append(f"rules fired ({label}): {fired or '-'}")
        lines.append(f"segments matched ({label}): {seg or '-'}")
    return "\n".join(lines)
