"""Boost profile drafts and published versions (`affinity-boost-versions`), publish and
rollback.

YAML stays the format: a draft is YAML text, every published version is kept with its content
hash (boost/profile.py `content_version`, the version the proxy names in responses), and
publishing writes the version's YAML over the profile's file in the profiles directory
(atomically: a temporary file renamed over the old one). The proxy's hot reload
(boost/reload.py) serves it within a second. Other proxies of the deployment, with their own
profiles directory, follow through `sync_live` (run every SYNC_INTERVAL_S by `affinity serve`):
each writes the live version recorded here into its own directory.

Validation is boost/profile.py's `parse_boost_profile`, the parser `affinity boost check` uses:
an invalid draft is kept (so no work is lost) and shown with its errors, and cannot be
published.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opensearchpy import OpenSearch
from opensearchpy.exceptions import NotFoundError

from rewriter.auth.index import ensure_index
from rewriter.boost.profile import (
    BoostProfile,
    BoostProfileError,
    content_version,
    parse_boost_profile,
)

SYNC_INTERVAL_S = 2.0

MAPPINGS = {
    "dynamic": False,
    "properties": {
        "kind": {"type": "keyword"},
        "profile": {"type": "keyword"},
        "version": {"type": "keyword"},
        "at": {"type": "date", "format": "epoch_millis"},
        "by": {"type": "keyword"},
    },
}


class PublishError(ValueError):
    """A draft that cannot be published; the message says why and what to do."""


@dataclass(frozen=True)
class Stored:
    """A draft, a published version or the live pointer of one boost profile."""

    kind: str  # draft | version | live
    profile: str
    yaml: str
    version: str
    at: float
    by: str
    reason: str = ""

    @classmethod
    def from_source(cls, src: dict[str, Any]) -> Stored:
        return cls(
            str(src["kind"]),
            str(src["profile"]),
            str(src["yaml"]),
            str(src["version"]),
            float(src.get("at") or 0) / 1000.0,
            str(src.get("by") or ""),
            str(src.get("reason") or ""),
        )

    def source(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "profile": self.profile,
            "yaml": self.yaml,
            "version": self.version,
            "at": int(self.at * 1000),
            "by": self.by,
            "reason": self.reason,
        }


def check(yaml_text: str, source: str = "draft.yaml") -> BoostProfile | BoostProfileError:
    """The parsed profile, or every problem at line:column (as `affinity boost check`)."""
    try:
        return parse_boost_profile(yaml_text.encode(), source=source)
    except BoostProfileError as exc:
        return exc


class VersionStore:
    def __init__(self, es: OpenSearch, index: str) -> None:
        self.es = es
        self.index = index

    def ensure(self) -> None:
        ensure_index(self.es, self.index, MAPPINGS)

    def _get(self, doc_id: str) -> Stored | None:
        try:
            return Stored.from_source(self.es.get(index=self.index, id=doc_id)["_source"])
        except NotFoundError:
            return None

    def _put(self, doc_id: str, stored: Stored) -> None:
        self.ensure()
        self.es.index(index=self.index, id=doc_id, body=stored.source(), refresh="wait_for")

    def _search(self, query: dict[str, Any], size: int = 500) -> list[Stored]:
        if not self.es.indices.exists(index=self.index):
            return []
        body = {"query": query, "size": size, "sort": [{"at": "desc"}]}
        hits = self.es.search(index=self.index, body=body)["hits"]["hits"]
        return [Stored.from_source(h["_source"]) for h in hits]

    # --- drafts ------------------------------------------------------------------------------

    def draft(self, profile: str) -> Stored | None:
        return self._get(f"draft:{profile}")

    def drafts(self) -> dict[str, Stored]:
        return {d.profile: d for d in self._search({"term": {"kind": "draft"}})}

    def save_draft(self, profile: str, yaml_text: str, by: str) -> Stored:
        stored = Stored("draft", profile, yaml_text, content_version(yaml_text.encode()), 0, by)
        stored = Stored(**{**stored.__dict__, "at": time.time()})
        self._put(f"draft:{profile}", stored)
        return stored

    def discard_draft(self, profile: str) -> None:
        with contextlib.suppress(NotFoundError):
            self.es.delete(index=self.index, id=f"draft:{profile}", refresh="wait_for")

    # --- versions ----------------------------------------------------------------------------

    def versions(self, profile: str) -> list[Stored]:
        query = {
            "bool": {"filter": [{"term": {"kind": "version"}}, {"term": {"profile": profile}}]}
        }
        return self._search(query)

    def version(self, profile: str, version: str) -> Stored | None:
        return self._get(f"version:{profile}:{version}")

    def live(self, profile: str) -> Stored | None:
        return self._get(f"live:{profile}")

    def lives(self) -> list[Stored]:
        return self._search({"term": {"kind": "live"}})

    def publish(
        self, profile: str, yaml_text: str, by: str, reason: str, served: BoostProfile | None
    ) -> Stored:
        """Record `yaml_text` as a version of `profile` and make it the live one. `served` is
        what the proxy serves now (kept as a version first, so rollback can return to it)."""
        if not reason.strip():
            raise PublishError("a publish needs a reason: say why this version goes live")
        parsed = check(yaml_text, f"{profile}.yaml")
        if isinstance(parsed, BoostProfileError):
            raise PublishError(f"the draft is invalid:\n{parsed}")
        if parsed.name != profile:
            raise PublishError(
                f"the YAML names profile {parsed.name!r}, not {profile!r}: keep `name: {profile}`"
            )
        if served is not None and self.version(profile, served.version) is None:
            try:
                before = Path(served.source).read_text(encoding="utf-8")
            except OSError:
                before = None
            if before is not None and content_version(before.encode()) == served.version:
                note = f"as served from {served.source} before the first publish"
                initial = Stored("version", profile, before, served.version, time.time(), "-", note)
                self._put(f"version:{profile}:{served.version}", initial)
        now = time.time()
        version = Stored("version", profile, yaml_text, parsed.version, now, by, reason)
        if self.version(profile, parsed.version) is None:  # a rollback keeps the first record
            self._put(f"version:{profile}:{parsed.version}", version)
        self._put(f"live:{profile}", Stored(**{**version.__dict__, "kind": "live"}))
        return version


def write_profile_file(directory: Path, profile: str, yaml_text: str, current: str | None) -> Path:
    """Write `yaml_text` over the profile's file (`current`, its served source, if it lives in
    `directory`; else `<profile>.yaml`) atomically, so the hot reload never reads half a file."""
    target = Path(current) if current and Path(current).parent == directory else None
    target = target or directory / f"{profile}.yaml"
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{profile}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(yaml_text)
    os.replace(tmp, target)
    return target


def sync_live(store: VersionStore, directory: Path, served: dict[str, BoostProfile]) -> list[str]:
    """Write each live version that this proxy does not serve into `directory`; the names."""
    written = []
    for live in store.lives():
        now = served.get(live.profile)
        if now is not None and now.version == live.version:
            continue
        source = now.source if now is not None else None
        if source and Path(source).exists():
            on_disk = Path(source).read_bytes()
            if content_version(on_disk) == live.version:
                continue  # written, the reload has not picked it up yet
        write_profile_file(directory, live.profile, live.yaml, source)
        written.append(live.profile)
    return written
