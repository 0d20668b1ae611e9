"""`affinity recommendations build`: the co-view and co-purchase tables, incrementally, into a
new index behind the alias (recommend/table.py), swapped in at once.

A build reads the last build's counts from the index the alias names, then only the events
ingested since its watermark (scanned in user, time order; opted-out events are left out),
cuts them into sessions (cooccurrence/pairs.py `sessions`), counts them per table
(`related`: every interaction; `bought_together`: purchases), adds the counts, scores every
item's neighbours, writes everything into a fresh index and moves the alias to it in one
request. The recommend endpoint reads through the alias, so it serves the old tables until
the swap and the new ones after; the old index is then deleted.

A session that straddles a watermark is counted as two (its items before and after the
build): the price of reading only new events.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from opensearchpy import NotFoundError, OpenSearch, helpers

from rewriter import config
from rewriter.cooccurrence.pairs import (
    PAIR_WINDOW,
    SESSION_GAP_SECONDS,
    PairCounts,
    SessionRow,
    neighbors,
    prune,
    sessions,
)
from rewriter.recommend import table
from rewriter.recommend.models import ITEM_MODELS, PAIR_EVENT_TYPES


@dataclass
class BuildResult:
    index: str = ""
    previous: str | None = None
    events: int = 0
    new_sessions: dict[str, int] = field(default_factory=dict)
    sessions: dict[str, int] = field(default_factory=dict)
    items: dict[str, int] = field(default_factory=dict)
    with_neighbors: dict[str, int] = field(default_factory=dict)
    watermark: float | None = None


def current_index(es: OpenSearch, name: str) -> str | None:
    try:
        found = es.indices.get_alias(name=name)
    except NotFoundError:
        return None
    return next(iter(found), None)


def _load(es: OpenSearch, index: str | None) -> tuple[dict[str, PairCounts], float | None]:
    counts = {m: PairCounts() for m in ITEM_MODELS}
    if index is None:
        return counts, None
    state = es.get(index=index, id=table.BUILD_DOC, ignore=[404])
    source = state.get("_source") or {}
    for model, n in (source.get("sessions") or {}).items():
        if model in counts:
            counts[model].sessions = int(n)
    for hit in helpers.scan(es, index=index, query={"query": {"terms": {"model": ITEM_MODELS}}}):
        doc = hit["_source"]
        table.add_item_doc(counts[doc["model"]], doc)
    watermark = source.get("watermark")
    return counts, float(watermark) if isinstance(watermark, int | float) else None


def _new_events(
    es: OpenSearch, events: str, watermark: float | None, types: tuple[str, ...]
) -> Iterator[dict[str, Any]]:
    filters: list[dict[str, Any]] = [{"terms": {"type": list(types)}}]
    if watermark is not None:
        filters.append({"range": {"ingested_at": {"gt": watermark}}})
    query = {
        "query": {"bool": {"filter": filters, "must_not": [{"term": {"opt_out": True}}]}},
        "sort": [{"user_id": "asc"}, {"timestamp": "asc"}],
    }
    fields = ["user_id", "session_id", "timestamp", "item_id", "type", "ingested_at"]
    yield from helpers.scan(
        es, index=events, query=query, preserve_order=True, size=5000, _source=fields
    )


def _rows(docs: list[Mapping[str, Any]], types: tuple[str, ...]) -> Iterator[SessionRow]:
    for d in docs:
        if d.get("type") in types and d.get("item_id") is not None:
            yield SessionRow(
                str(d.get("user_id")),
                d.get("session_id"),
                float(d.get("timestamp") or 0.0),
                str(d["item_id"]),
            )


def build(
    es: OpenSearch,
    settings: config.Settings,
    window: int | None = PAIR_WINDOW,
    gap: float = SESSION_GAP_SECONDS,
    full: bool = False,
    progress: Callable[[str], None] = lambda m: None,
) -> BuildResult:
    """Build both tables (from scratch when `full` or when there is no table yet)."""
    name = table.alias(settings.indices.prefix)
    result = BuildResult(previous=current_index(es, name))
    counts, watermark = _load(es, None if full else result.previous)
    es.indices.refresh(index=settings.indices.events, ignore_unavailable=True)
    every_type = tuple(sorted({t for ts in PAIR_EVENT_TYPES.values() for t in ts}))
    docs = [h["_source"] for h in _new_events(es, settings.indices.events, watermark, every_type)]
    result.events = len(docs)
    progress(f"{len(docs)} new events since watermark {watermark}")
    stamps = [
        float(d["ingested_at"]) for d in docs if isinstance(d.get("ingested_at"), int | float)
    ]
    result.watermark = max([*stamps, *([watermark] if watermark is not None else [])], default=None)
    for model in ITEM_MODELS:
        fresh = PairCounts()
        for items in sessions(_rows(docs, PAIR_EVENT_TYPES[model]), gap):
            fresh.add_session(items, window)
        result.new_sessions[model] = fresh.sessions
        counts[model].merge(fresh)
        prune(counts[model], table.KEEP_COUNTS)
    result.index = f"{name}-{int(time.time() * 1000)}"
    es.indices.create(
        index=result.index,
        body={
            "settings": {"number_of_shards": 1, **_replicas(settings)},
            "mappings": table.MAPPING,
        },
    )
    helpers.bulk(es, _documents(result, counts), chunk_size=500, refresh="wait_for")
    _swap(es, name, result.index, result.previous)
    return result


def _replicas(settings: config.Settings) -> dict[str, int]:
    return {"number_of_replicas": settings.replicas or 0}


def _documents(result: BuildResult, counts: Mapping[str, PairCounts]) -> Iterator[dict[str, Any]]:
    for model, c in counts.items():
        result.sessions[model] = c.sessions
        result.items[model] = len(c.item_sessions)
        result.with_neighbors[model] = 0
        for item in c.items():
            found = neighbors(c, item)
            result.with_neighbors[model] += bool(found)
            yield {
                "_index": result.index,
                "_id": table.doc_id(model, item),
                "_source": table.item_doc(model, item, c, found),
            }
    yield {
        "_index": result.index,
        "_id": table.BUILD_DOC,
        "_source": {
            "model": table.BUILD_DOC,
            "sessions": dict(result.sessions),
            "watermark": result.watermark,
            "built_at": time.time(),
            "events": result.events,
        },
    }


def _swap(es: OpenSearch, name: str, new: str, old: str | None) -> None:
    """Move the alias to `new` in one request. The remove names every table index (a pattern),
    so a build that ran alongside and swapped first does not make this one fail: the last swap
    wins (run one build at a time; a concurrent build's tables are left as an orphan index)."""
    actions: list[dict[str, Any]] = [{"add": {"index": new, "alias": name}}]
    if old is not None:
        actions.insert(0, {"remove": {"index": f"{name}-*", "alias": name}})
    es.indices.update_aliases(body={"actions": actions})
    if old is not None:
        es.indices.delete(index=old, ignore_unavailable=True)
