"""Helpers the engine-vs-reference tests share: scratch indices and the score tolerance."""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opensearchpy import OpenSearch, helpers


def close(got: float, want: float) -> bool:
    """Engine scores are float32: 1e-4 relative (and a floor for scores near 0)."""
    return math.isclose(got, want, rel_tol=1e-4, abs_tol=1e-5)


def shard_of(hit: Mapping[str, Any]) -> int:
    """The shard number of a hit of a search with `"explain": true` (`_shard` "[index][2]")."""
    found = re.fullmatch(r"\[.*\]\[(\d+)\]", str(hit.get("_shard", "")))
    assert found, f"no _shard in {hit} (search with explain: true)"
    return int(found.group(1))


@contextmanager
def scratch_index(
    es: OpenSearch,
    name: str,
    mapping: Mapping[str, Any],
    docs: list[dict[str, Any]],
    shards: int = 1,
) -> Iterator[str]:
    """A fresh index `name-<random>` of `shards` shards holding `docs` (ids "0", "1", ...),
    deleted afterwards. Without replicas, so the plain and the rewritten query read the same
    copy of each shard (copies may differ in deleted documents, hence in BM25 statistics)."""
    index = f"{name}-{uuid.uuid4().hex[:8]}"
    settings = {"number_of_shards": shards, "number_of_replicas": 0}
    body = {"settings": settings, "mappings": mapping}
    es.indices.create(index=index, body=body)
    try:
        actions = [{"_index": index, "_id": str(i), "_source": d} for i, d in enumerate(docs)]
        helpers.bulk(es, actions, refresh="wait_for")
        yield index
    finally:
        es.indices.delete(index=index, ignore_unavailable=True)
