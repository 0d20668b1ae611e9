"""The one way the dashboard's own indices (accounts and keys, the audit log, boost profile
versions) come to exist: created on first use with one shard and their mappings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opensearchpy import OpenSearch


def ensure_index(es: OpenSearch, index: str, mappings: Mapping[str, Any]) -> None:
    """Create `index` unless it exists; a create lost to another process is fine."""
    if es.indices.exists(index=index):
        return
    body = {"settings": {"number_of_shards": 1}, "mappings": mappings}
    try:
        es.indices.create(index=index, body=body)
    except Exception:  # created meanwhile by another process
        if not es.indices.exists(index=index):
            raise
