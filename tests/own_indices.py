"""A test module's own indices: settings under its own prefix, bootstrapped, with a catalog.

The engine-backed modules that write events each need a shop of their own, so that their
profiles, logs and journals never meet another module's."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from opensearchpy import OpenSearch, helpers

from rewriter import config
from rewriter.engine.bootstrap import bootstrap_cluster


def own_shop(
    es: OpenSearch,
    base: config.Settings,
    prefix: str,
    items: Iterable[Mapping[str, Any]],
    **changes: Any,
) -> config.Settings:
    """`base` under `prefix` (appended to base's own prefix unless changes give `indices`),
    with the repository's boost profiles and no fold profile pinned, bootstrapped, and
    `items` (catalog records with an `id`) indexed and refreshed."""
    settings = replace(
        base,
        indices=config.Indices(prefix=f"{base.indices.prefix}{prefix}"),
        boost_dir=config.ROOT / "profiles",
        fold_profile=None,
    )
    settings = replace(settings, **changes)
    bootstrap_cluster(es, settings)
    docs = ({"_index": settings.indices.catalog, "_id": i["id"], "_source": i} for i in items)
    helpers.bulk(es, docs, refresh=True)
    return settings
