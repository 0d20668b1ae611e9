"""The audit log (`affinity-audit`): every change, publish, rollback, key and privacy
operation with who, when, what (a diff) and why.

Append-only: entries are created with `op_type=create` under fresh ids and nothing in affinity
updates or deletes them (an admin may, with OpenSearch's own credentials). Never a raw user id:
a privacy operation records the user's pseudonym, never the raw id it was asked about.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from opensearchpy import OpenSearch

from rewriter.auth.index import ensure_index

MAPPINGS = {
    "dynamic": False,
    "properties": {
        "at": {"type": "date", "format": "epoch_millis"},
        "actor": {"type": "keyword"},
        "action": {"type": "keyword"},
        "target": {"type": "keyword"},
    },
}


@dataclass(frozen=True)
class Entry:
    at: float
    actor: str
    action: str
    target: str
    reason: str = ""
    diff: str = ""

    @classmethod
    def from_source(cls, src: dict[str, Any]) -> Entry:
        return cls(
            float(src.get("at") or 0) / 1000.0,
            str(src.get("actor") or ""),
            str(src.get("action") or ""),
            str(src.get("target") or ""),
            str(src.get("reason") or ""),
            str(src.get("diff") or ""),
        )


class AuditLog:
    def __init__(self, es: OpenSearch, index: str) -> None:
        self.es = es
        self.index = index

    def ensure(self) -> None:
        ensure_index(self.es, self.index, MAPPINGS)

    def record(
        self, actor: str, action: str, target: str, reason: str = "", diff: str = ""
    ) -> Entry:
        self.ensure()
        entry = Entry(time.time(), actor, action, target, reason, diff)
        src = {
            "at": int(entry.at * 1000),
            "actor": actor,
            "action": action,
            "target": target,
            "reason": reason,
            "diff": diff[:20_000],
        }
        self.es.create(index=self.index, id=uuid.uuid4().hex, body=src, refresh="wait_for")
        return entry

    def entries(self, size: int = 200) -> list[Entry]:
        if not self.es.indices.exists(index=self.index):
            return []
        body = {"size": size, "sort": [{"at": "desc"}], "query": {"match_all": {}}}
        hits = self.es.search(index=self.index, body=body)["hits"]["hits"]
        return [Entry.from_source(h["_source"]) for h in hits]
