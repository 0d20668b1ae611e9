"""Segment priors for cold start: `affinity segments build`.

A user's segments come from the context of their most recent event: `device=<device>` and
`geo=<geo>` (the `context.device` / `context.geo` event fields). For each segment, the prior
is the mean normalized affinity per attribute value over the segment's profiles
(`profiles.segment_priors`: a member without a value counts 0), top `top_k` values kept.

Where they live: in the profiles index, one document per segment with doc id
`segment:<dimension>=<value>` (e.g. `segment:device=mobile`; pseudonyms are 32 hex digits, so
ids never collide), `user` set to the same string and `kind: "segment_prior"`. The rewriter
reads a prior exactly like a profile: one realtime GET by id through the proxy's profile
store (and its cache), and the proxy already refuses to expose the profiles index. A
dedicated index would need its own template, alias and bootstrap step for a handful of
documents. Scans over profiles skip these documents (their `user` starts with `segment:`).

A build also writes each profile's `segments` field (partial update; a concurrent fold that
read the profile before it conflicts and retries, keeping the field) and deletes priors of
segments that no longer have members. Priors are averages over many users, so deleting one
user does not need a rebuild, but their contribution stays until the next build.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from opensearchpy import OpenSearch, helpers

from rewriter import config
from rewriter.boost.profile import BoostProfile
from rewriter.engine.client import buckets_by_key
from rewriter.profiles.doc import ProfileDoc, UnreadableProfile, profile_from_source
from rewriter.profiles.view import segment_priors, top_values

DIMENSIONS: tuple[str, ...] = ("device", "geo")
SEGMENT_PREFIX = "segment:"
KIND = "segment_prior"
PAGE = 1000


def segment_id(segment: str) -> str:
    """The profiles-index doc id of a segment's prior: `segment:device=mobile`."""
    return f"{SEGMENT_PREFIX}{segment}"


def segments_of(context: Mapping[str, Any] | None) -> list[str]:
    """`dimension=value` for each dimension present in an event context."""
    context = context or {}
    return [f"{d}={context[d]}" for d in DIMENSIONS if isinstance(context.get(d), str)]


@dataclass
class _Sums:
    """Running sums of per-page means, weighted by members, to average over all pages."""

    members: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    sums: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)

    def add(
        self, priors: Mapping[str, Mapping[str, Mapping[str, float]]], members: Mapping[str, int]
    ) -> None:
        for segment, attrs in priors.items():
            n = members[segment]
            self.members[segment] += n
            target = self.sums.setdefault(segment, {})
            for attribute, values in attrs.items():
                bucket = target.setdefault(attribute, {})
                for value, mean in values.items():
                    bucket[value] = bucket.get(value, 0.0) + mean * n

    def means(self, top_k: int) -> dict[str, dict[str, dict[str, float]]]:
        return {
            s: {
                a: dict(top_values({v: x / self.members[s] for v, x in vs.items()}, top_k))
                for a, vs in attrs.items()
            }
            for s, attrs in self.sums.items()
        }


@dataclass
class SegmentsResult:
    profiles: int = 0
    with_segment: int = 0
    priors: dict[str, int] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    """Why each profile left out was unreadable (UnreadableProfile: what to run)."""


def profile_pages(
    es: OpenSearch,
    settings: config.Settings,
    page: int = PAGE,
    unreadable: list[str] | None = None,
) -> Iterator[list[ProfileDoc]]:
    """Every user profile (not segment priors, not opted-out tombstones), `page` at a time.
    A profile this code cannot read is left out, and why is added to `unreadable`."""
    query = {
        "query": {
            "bool": {
                "must_not": [{"prefix": {"user": SEGMENT_PREFIX}}, {"term": {"opt_out": True}}]
            }
        }
    }
    batch: list[ProfileDoc] = []
    for hit in helpers.scan(es, index=settings.indices.profiles, query=query, size=page):
        try:
            batch.append(profile_from_source(hit["_source"]))
        except UnreadableProfile as exc:
            if unreadable is not None:
                unreadable.append(str(exc))
            continue
        if len(batch) >= page:
            yield batch
            batch = []
    if batch:
        yield batch


def latest_contexts(
    es: OpenSearch, settings: config.Settings, users: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """pseudonym → context of their most recent event (by timestamp)."""
    last = {"top_hits": {"size": 1, "sort": [{"timestamp": "desc"}], "_source": ["context"]}}
    buckets = buckets_by_key(es, settings.indices.events, "user_id", users, {"last": last})
    out = {}
    for user, bucket in buckets.items():
        hits = bucket["last"]["hits"]["hits"]
        out[user] = (hits[0]["_source"].get("context") or {}) if hits else {}
    return out


def _page_priors(
    docs: Sequence[ProfileDoc], segments: Mapping[str, list[str]], sums: _Sums
) -> None:
    for dimension in DIMENSIONS:

        def segment_of(doc: ProfileDoc, d: str = dimension) -> str | None:
            return next((s for s in segments[doc["user"]] if s.startswith(f"{d}=")), None)

        members: dict[str, int] = defaultdict(int)
        for doc in docs:
            found = segment_of(doc)
            if found is not None:
                members[found] += 1
        sums.add(segment_priors(docs, segment_of), members)


def _segment_updates(
    index: str, docs: Sequence[ProfileDoc], segments: Mapping[str, list[str]]
) -> Iterator[dict[str, Any]]:
    for doc in docs:
        wanted = segments[doc["user"]]
        if list(doc["segments"]) != wanted:
            yield {
                "_op_type": "update",
                "_index": index,
                "_id": doc["user"],
                "retry_on_conflict": 5,
                "doc": {"segments": wanted},
            }


def build(
    es: OpenSearch,
    settings: config.Settings,
    boost: BoostProfile,
    progress: Callable[[int], None] = lambda n: None,
) -> SegmentsResult:
    """Compute and store every segment prior; set each profile's `segments`."""
    result, sums = SegmentsResult(), _Sums()
    es.indices.refresh(index=f"{settings.indices.profiles},{settings.indices.events}")
    for docs in profile_pages(es, settings, unreadable=result.unreadable):
        contexts = latest_contexts(es, settings, [d["user"] for d in docs])
        segments = {d["user"]: segments_of(contexts.get(d["user"])) for d in docs}
        _page_priors(docs, segments, sums)
        helpers.bulk(
            es, _segment_updates(settings.indices.profiles, docs, segments), raise_on_error=False
        )
        result.profiles += len(docs)
        result.with_segment += sum(1 for s in segments.values() if s)
        progress(len(docs))
    priors = sums.means(boost.top_k)
    _store(es, settings, boost, priors, sums.members)
    result.priors = {s: sums.members[s] for s in priors}
    result.removed = _remove_stale(es, settings, set(priors))
    return result


def _store(
    es: OpenSearch,
    settings: config.Settings,
    boost: BoostProfile,
    priors: Mapping[str, dict[str, dict[str, float]]],
    members: Mapping[str, int],
) -> None:
    now = time.time()
    actions = (
        {
            "_op_type": "index",
            "_index": settings.indices.profiles,
            "_id": segment_id(s),
            "_source": {
                "kind": KIND,
                "user": segment_id(s),
                "segment": s,
                "members": members[s],
                "priors": attrs,
                "boost_profile": boost.name,
                "built_at": now,
            },
        }
        for s, attrs in priors.items()
    )
    helpers.bulk(es, actions, refresh="wait_for")


def _remove_stale(es: OpenSearch, settings: config.Settings, keep: set[str]) -> list[str]:
    query = {"query": {"prefix": {"user": SEGMENT_PREFIX}}}
    stored = [
        h["_id"]
        for h in helpers.scan(es, index=settings.indices.profiles, query=query, _source=False)
    ]
    stale = [i for i in stored if i.removeprefix(SEGMENT_PREFIX) not in keep]
    if stale:
        helpers.bulk(
            es,
            ({"_op_type": "delete", "_index": settings.indices.profiles, "_id": i} for i in stale),
            refresh="wait_for",
            raise_on_error=False,
        )
    return stale


def read_prior(es: OpenSearch, settings: config.Settings, segment: str) -> dict[str, Any] | None:
    """The stored prior document of `segment` (`device=mobile`), or None."""
    found = es.get(index=settings.indices.profiles, id=segment_id(segment), ignore=[404])
    return found.get("_source") if found.get("found") else None
