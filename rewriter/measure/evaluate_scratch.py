"""The scratch indices of `affinity evaluate`: a catalog and profiles built from training events
only, under their own index prefix, so production data is never read or written.

Built with the production code paths: `engine.bootstrap` (templates, stored script),
`ingest.load_catalog`, and `event_files.ingest_events` over `Pipeline.ingest` (events log,
profile folds, catalog popularity). A marker in the scratch catalog's mapping `_meta` records
what the indices were built from, so `--reuse` can skip a rebuild that would be identical.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from opensearchpy import OpenSearch

from rewriter import config, privacy
from rewriter.boost.profile import BoostProfile
from rewriter.engine.bootstrap import bootstrap_cluster
from rewriter.engine.client import mget_docs
from rewriter.events.event import Event
from rewriter.ingest import catalog_files, event_files
from rewriter.ingest.pipeline import Pipeline
from rewriter.profiles.doc import decode

Log = Callable[[str], None]


class ScratchError(RuntimeError):
    """The scratch prefix would touch production indices, or the build failed."""


def scratch_settings(settings: config.Settings, prefix: str) -> config.Settings:
    """`settings` with the scratch prefix; refuses a prefix that is production's."""
    if not prefix or prefix == settings.indices.prefix:
        raise ScratchError(
            f"scratch prefix {prefix!r} is the production prefix "
            f"({settings.indices.prefix!r}); pass another with --prefix (e.g. eval-)"
        )
    return replace(settings, indices=config.Indices(prefix=prefix))


def fingerprint(
    catalog: Path, train: Sequence[Event], boost: BoostProfile, secret: bytes = b""
) -> str:
    """What the scratch indices were built from: catalog bytes, training events, profile, and
    the pseudonymization key (profiles stored under another key are nobody's)."""
    h = hashlib.sha256(catalog.read_bytes())
    h.update(hashlib.sha256(secret).digest())
    h.update(boost.version.encode())
    for e in train:
        h.update(f"{e.event_id}|{e.user_id}|{e.type}|{e.item_id}|{e.timestamp}\n".encode())
    return h.hexdigest()[:16]


def owned_indices(es: OpenSearch, s: config.Settings) -> list[str]:
    """The concrete indices affinity owns under `s`'s prefix (catalog and affinity-*)."""
    prefix = s.indices.prefix
    found = es.indices.get(index=f"{prefix}*", ignore_unavailable=True, allow_no_indices=True)
    return sorted(
        name for name in found if name.startswith((f"{s.indices.catalog}-v", f"{prefix}affinity-"))
    )


def current_marker(es: OpenSearch, s: config.Settings) -> str | None:
    if not es.indices.exists(index=s.indices.catalog):
        return None
    mapping = es.indices.get_mapping(index=s.indices.catalog)
    meta = next(iter(mapping.values()))["mappings"].get("_meta", {})
    return meta.get("affinity_evaluate")


def build(
    es: OpenSearch,
    s: config.Settings,
    catalog: Path,
    train: Sequence[Event],
    boost: BoostProfile,
    reuse: bool = False,
    log: Log = lambda m: None,
) -> bool:
    """(Re)build the scratch indices; False when `reuse` found an identical build."""
    marker = fingerprint(catalog, train, boost, config.user_secret(s))
    if reuse and current_marker(es, s) == marker:
        log(f"reusing scratch indices under prefix {s.indices.prefix!r} (same inputs)")
        return False
    doomed = owned_indices(es, s)
    if doomed:
        log(f"deleting old scratch indices: {', '.join(doomed)}")
        es.indices.delete(index=",".join(doomed))
    report = bootstrap_cluster(es, s)
    if report.needs_action:
        raise ScratchError("; ".join(report.needs_action))
    fmt = catalog_files.guess_format(catalog)
    loaded = catalog_files.load_catalog(
        es, s.indices.catalog, catalog_files.parse_catalog(catalog, fmt, None)
    )
    log(f"scratch catalog: {loaded.loaded} items ({len(loaded.rejected)} rejected)")
    pipeline = Pipeline(es, s, boost)
    result = event_files.ingest_events(pipeline, iter(enumerate(train, start=1)))
    es.indices.refresh(index=f"{s.indices.catalog},{s.indices.profiles}")
    log(
        f"scratch profiles: {result.accepted} training events folded for "
        f"{count(es, s.indices.profiles)} users with boost profile {boost.name}"
    )
    es.indices.put_mapping(index=s.indices.catalog, body={"_meta": {"affinity_evaluate": marker}})
    return True


def count(es: OpenSearch, index: str) -> int:
    return int(es.count(index=index)["count"])


def profiles(
    es: OpenSearch, s: config.Settings, raw_users: Sequence[str]
) -> dict[str, Mapping[str, Any]]:
    """Raw user id -> stored profile document (only users that have one)."""
    secret = config.user_secret(s)
    pseudo = {privacy.pseudonymize(u, secret): u for u in set(raw_users)}
    docs = mget_docs(es, s.indices.profiles, sorted(pseudo))
    return {pseudo[d["_id"]]: decode(d["_source"]) for d in docs if d.get("found")}


def items(es: OpenSearch, s: config.Settings, item_ids: Sequence[str]) -> dict[str, dict]:
    """Item id -> catalog source (title, category, brand), for queries."""
    fields = ["title", "category", "brand"]
    docs = mget_docs(es, s.indices.catalog, sorted(set(item_ids)), _source_includes=fields)
    return {d["_id"]: d["_source"] for d in docs if d.get("found")}
