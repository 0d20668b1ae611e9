"""The pair tables' index: its alias, mapping and documents (pure; recommend/build.py writes
them, serve/recommend.py reads one per request).

One index behind the alias `<prefix>affinity-cooccurrence` holds both tables:

- `<model>:<item>` (model `related` or `bought_together`): the item's `neighbors` ready to
  serve ([{id, score, co_sessions}], best first), and the counts a later build adds to:
  `sessions` (the item's) and `co` (neighbour -> shared sessions, the largest KEEP_COUNTS).
- `_build`: the counts' totals per model (`sessions`), the `watermark` (the largest
  `ingested_at` of the events counted: the next build reads only later events), when it was
  built and how many events and sessions it read.

Stored objects are `enabled: false` (kept, not indexed: no mapping growth from item ids).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rewriter.cooccurrence.pairs import Neighbor, PairCounts

ALIAS_SUFFIX = "affinity-cooccurrence"
BUILD_DOC = "_build"
KEEP_COUNTS = 200

MAPPING: dict[str, Any] = {
    "dynamic": False,
    "properties": {
        "model": {"type": "keyword"},
        "item": {"type": "keyword"},
        "sessions": {"type": "object", "enabled": False},
        "neighbors": {"type": "object", "enabled": False},
        "co": {"type": "object", "enabled": False},
        "watermark": {"type": "double"},
        "built_at": {"type": "double"},
    },
}


def alias(prefix: str) -> str:
    return f"{prefix}{ALIAS_SUFFIX}"


def doc_id(model: str, item: str) -> str:
    return f"{model}:{item}"


def item_doc(model: str, item: str, counts: PairCounts, found: list[Neighbor]) -> dict[str, Any]:
    return {
        "model": model,
        "item": item,
        "sessions": counts.item_sessions.get(item, 0),
        "neighbors": [
            {"id": n.id, "score": round(n.score, 6), "co_sessions": n.co_sessions} for n in found
        ],
        "co": dict(counts.co.get(item, {})),
    }


def add_item_doc(counts: PairCounts, source: Mapping[str, Any]) -> None:
    """Put a stored item document's counts back into `counts` (before new sessions are added)."""
    item = str(source["item"])
    counts.item_sessions[item] += int(source.get("sessions") or 0)
    for other, n in (source.get("co") or {}).items():
        counts.co[item][str(other)] = counts.co[item].get(str(other), 0) + int(n)


def neighbors_of(source: Mapping[str, Any] | None) -> list[tuple[str, float, int]]:
    """(id, score, co_sessions) of a stored item document; [] without one."""
    if not source:
        return []
    out = []
    for n in source.get("neighbors") or []:
        if isinstance(n, dict) and isinstance(n.get("id"), str):
            out.append((n["id"], float(n.get("score") or 0.0), int(n.get("co_sessions") or 0)))
    return out
