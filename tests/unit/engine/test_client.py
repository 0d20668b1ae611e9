"""The engine client: a per-document `_mget` error is not an answer, and what the client says
when the engine does not come up.

These use a small fault-injecting stand-in for the client (`FlakyMget`): what is under test is
how `mget_docs` reads `{"_id": ..., "error": {...}}` entries, which the real engine answers
while a shard is recovering (tests/integration/test_write_faults.py gets them from the real
engine: an index whose only shard cannot be allocated).
"""

from __future__ import annotations

from typing import Any

import pytest
from opensearchpy import OpenSearch

from rewriter.engine import client
from rewriter.engine.client import EngineUnavailable, mget_docs, wait_for_health
from rewriter.measure.serve_thread import free_port

RECOVERING = {
    "type": "no_shard_available_action_exception",
    "reason": "No shard available for [MultiGetShardRequest]",
}


class FlakyMget:
    """Answers `_mget` with per-document errors for the first `failures` calls, then with
    every id found (ids starting with "gone" not found). Records the ids of each call."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: list[list[str]] = []

    def mget(self, index: str, body: dict[str, Any], **params: Any) -> dict[str, Any]:
        ids = list(body["ids"])
        self.calls.append(ids)
        if len(self.calls) <= self.failures:
            return {"docs": [{"_index": index, "_id": i, "error": RECOVERING} for i in ids]}
        return {
            "docs": [
                {"_index": index, "_id": i, "found": False}
                if i.startswith("gone")
                else {"_index": index, "_id": i, "found": True, "_source": {"brand": i}}
                for i in ids
            ]
        }


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client, "MGET_BACKOFF_S", 0.0, raising=False)


def test_documents_that_came_back_as_errors_are_read_again() -> None:
    es = FlakyMget(failures=2)
    docs = list(mget_docs(es, "catalog", ["a", "gone-b", "c"]))  # type: ignore[arg-type]
    assert [(d["_id"], d["found"]) for d in docs] == [("a", True), ("gone-b", False), ("c", True)]
    assert not any("error" in d for d in docs)
    assert len(es.calls) == 3


def test_errors_that_persist_raise_instead_of_reading_as_not_found() -> None:
    """Yielding the error entries made callers take them for "not found": catalog items for
    unknown items, journal entries for done batches, profiles for absent ones."""
    es = FlakyMget(failures=1_000)
    with pytest.raises(EngineUnavailable) as caught:
        list(mget_docs(es, "shop-catalog", ["a", "b"]))  # type: ignore[arg-type]
    message = str(caught.value)
    assert "shop-catalog" in message and "no_shard_available_action_exception" in message
    assert "2 of 2" in message and "_cluster/health" in message
    assert 1 < len(es.calls) <= 10  # retried, boundedly


def test_health_timeout_names_the_url_and_never_the_password() -> None:
    port = free_port()
    es = OpenSearch([f"https://admin:s3cret-pw@127.0.0.1:{port}/search"])
    with pytest.raises(EngineUnavailable) as info:
        wait_for_health(es, "yellow", timeout=0.5)
    message = str(info.value)
    assert message.startswith(f"OpenSearch at https://127.0.0.1:{port}/search did not reach")
    assert "s3cret-pw" not in message
    assert "affinity engine start" in message
