"""Helpers the engine-vs-reference tests share: scratch indices and the score tolerance."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opensearchpy import OpenSearch, helpers


def close(got: float, want: float) -> bool:
    """Engine scores are float32: 1e-4 relative (and a floor for scores near 0)."""
    return math.isclose(got, want, rel_tol=1e-4, abs_tol=1e-5)


@contextmanager
def scratch_index(
    es: OpenSearch, name: str, mapping: Mapping[str, Any], docs: list[dict[str, Any]]
) -> Iterator[str]:
    """A fresh one-shard index `name-<random>` holding `docs` (ids "0", "1", ...), deleted
    afterwards. One shard, because the rescore window applies per shard."""
    index = f"{name}-{uuid.uuid4().hex[:8]}"
    body = {"settings": {"number_of_shards": 1, "number_of_replicas": 0}, "mappings": mapping}
    es.indices.create(index=index, body=body)
    try:
        actions = [{"_index": index, "_id": str(i), "_source": d} for i, d in enumerate(docs)]
        helpers.bulk(es, actions, refresh="wait_for")
        yield index
    finally:
        es.indices.delete(index=index, ignore_unavailable=True)
