"""The change feed: which profiles were just written, for every proxy's profile cache.

Writers (`ChangeLog.publish`: every fold, erasure, opt-out, opt-in and rebuild) add one
document per batch of users to the `affinity-changes` index: `{"users": [...], "at": t}`.
The index refreshes every 50 ms (index_templates/changes.json), and each proxy's `ChangeFeed`
searches it every POLL_S for documents newer than the newest it has seen (less MARGIN_S, for
documents indexed late; each is applied once, by id) and drops those users from its cache.
Freshness across processes: fold + refresh + poll, about 50 + 50 ms at worst, plus the
engine's indexing time.

When the feed cannot be read (an engine outage, a cluster bootstrapped before the feed
existed), the cache does not trust itself: `healthy` turns False and the store reads through
(profiles/store.py); on recovery the cache is cleared, since changes were missed. Writers'
clocks must agree within MARGIN_S (the cursor is the newest `at` seen). Each publisher
deletes documents older than KEEP_S now and then.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from opensearchpy import OpenSearch

from rewriter.engine.http_pool import EngineError, EngineHTTP

log = logging.getLogger("affinity.profiles")

POLL_S = 0.05
MARGIN_S = 1.0
KEEP_S = 600.0
PRUNE_EVERY_S = 60.0
USERS_PER_DOC = 5_000
PAGE = 1_000
SEEN_IDS = 50_000
FEED_PARAMS = {"filter_path": "hits.hits._id,hits.hits._source,hits.hits.sort"}
"""Polled 20 times a second by every proxy: only what it reads comes back."""


class ChangeLog:
    """Publishes written profiles' users (sync: writers run in threads or the CLI)."""

    def __init__(self, es: OpenSearch, index: str) -> None:
        self.es = es
        self.index = index
        self._next_prune = time.monotonic() + PRUNE_EVERY_S
        self._warned = False

    def publish(self, users: Iterable[str]) -> None:
        """One document per USERS_PER_DOC users; never raises (a change not published is
        logged: other proxies then see it when the entry is evicted or the feed restarts)."""
        batch = sorted(set(users))
        if not batch:
            return
        now = time.time()
        body = bytearray()
        for n in range(0, len(batch), USERS_PER_DOC):
            body += orjson.dumps({"create": {"_index": self.index}}) + b"\n"
            at = now + n / USERS_PER_DOC * 1e-6  # one `at` per chunk: the feed pages on it
            body += orjson.dumps({"users": batch[n : n + USERS_PER_DOC], "at": at}) + b"\n"
        try:
            result = self.es.bulk(body=bytes(body), params={"require_alias": "true"})
            if result.get("errors"):
                raise RuntimeError(_first_error(result))
        except Exception as exc:
            if not self._warned:  # once per process: a cluster without the feed says it once
                self._warned = True
                log.warning(
                    "the change feed %s was not written (%s): other proxies' profile caches "
                    "learn of profile changes only by reading through; run `affinity bootstrap`",
                    self.index,
                    exc,
                )
            return
        self._maybe_prune()

    def _maybe_prune(self) -> None:
        if time.monotonic() < self._next_prune:
            return
        self._next_prune = time.monotonic() + PRUNE_EVERY_S
        try:
            self.es.delete_by_query(
                index=self.index,
                body={"query": {"range": {"at": {"lt": time.time() - KEEP_S}}}},
                # waited for (a small index: milliseconds): a background task would leave
                # its result in the engine's `.tasks` index
                params={"conflicts": "proceed"},
            )
        except Exception as exc:
            log.info("pruning the change feed %s failed: %s", self.index, exc)


def _first_error(result: dict[str, Any]) -> str:
    for item in result.get("items", []):
        info = next(iter(item.values()))
        if "error" in info:
            return str(info["error"])
    return "unknown error"


class ChangeFeed:
    """Polls the change feed and hands the users of each new document to `on_change`;
    `on_lost` runs when reading resumes after a failure (changes may have been missed)."""

    def __init__(
        self,
        http: EngineHTTP,
        index: str,
        on_change: Callable[[list[str]], None],
        on_lost: Callable[[], None],
        poll_s: float = POLL_S,
    ) -> None:
        self.http = http
        self.index = index
        self.on_change = on_change
        self.on_lost = on_lost
        self.poll_s = poll_s
        self.cursor: float | None = None
        self.healthy = False
        self.last_ok = 0.0
        self.applied = 0
        self.lag_s: float | None = None
        """Seconds from a change's publication to this proxy applying it (the latest)."""
        self._seen: OrderedDict[str, None] = OrderedDict()

    @property
    def trusted(self) -> bool:
        """The cache may serve entries: the feed was read within the last few polls."""
        return self.healthy and time.monotonic() - self.last_ok < max(1.0, 5 * self.poll_s)

    async def run(self) -> None:
        while True:
            await self.poll_once()
            await asyncio.sleep(self.poll_s)

    async def poll_once(self) -> None:
        try:
            if self.cursor is None:
                self.cursor = await self._newest()
            await self._read_new()
        except (EngineError, ValueError, KeyError, TypeError) as exc:
            if self.healthy:
                log.warning(
                    "change feed %s unreadable (%s): reading profiles through", self.index, exc
                )
            self.healthy = False
            return
        if not self.healthy:
            self.on_lost()  # whatever changed meanwhile is unknown: forget everything
            self.healthy = True
        self.last_ok = time.monotonic()

    async def _search(self, body: dict[str, Any]) -> dict[str, Any]:
        response = await self.http.request(
            "POST",
            f"/{self.index}/_search",
            params=FEED_PARAMS,
            content=orjson.dumps({**body, "track_total_hits": False}),
            timeout=2.0,
        )
        if response.status != 200:
            raise ValueError(f"HTTP {response.status}: {response.content[:200]!r}")
        found = orjson.loads(response.content)
        found.setdefault("hits", {}).setdefault("hits", [])  # filter_path drops an empty list
        return found

    async def _newest(self) -> float:
        found = await self._search(
            {"size": 1, "sort": [{"at": "desc"}], "_source": ["at"], "query": {"match_all": {}}}
        )
        hits = found["hits"]["hits"]
        return float(hits[0]["_source"]["at"]) if hits else 0.0

    async def _read_new(self) -> None:
        """Every document newer than cursor - MARGIN_S, page by page (search_after on `at`:
        each chunk of a publication has its own)."""
        assert self.cursor is not None
        body: dict[str, Any] = {
            "size": PAGE,
            "sort": [{"at": "asc"}],
            "query": {"range": {"at": {"gt": self.cursor - MARGIN_S}}},
        }
        while True:
            hits = (await self._search(body))["hits"]["hits"]
            self._apply(hits, time.time())
            if len(hits) < PAGE:
                break
            body["search_after"] = hits[-1]["sort"]
        while len(self._seen) > SEEN_IDS:
            self._seen.popitem(last=False)

    def _apply(self, hits: list[dict[str, Any]], now: float) -> None:
        assert self.cursor is not None
        for hit in hits:
            if hit["_id"] in self._seen:
                continue
            self._seen[hit["_id"]] = None
            source = hit["_source"]
            at = float(source["at"])
            self.on_change([str(u) for u in source.get("users", [])])
            self.applied += 1
            self.lag_s = max(0.0, now - at)
            self.cursor = max(self.cursor, at)
