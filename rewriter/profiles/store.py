"""Reading profile documents for the proxy: realtime GET by id, kept in memory until changed.

The proxy's cache (profiles/cache.py, an LRU by bytes) keeps the hot path to one dict lookup
for every active user; invalidation by this process's fold and by the change feed
(profiles/changes.py) keeps freshness (event to ranking) within a few hundred milliseconds,
even when the event arrived through another process. Without a readable feed, entries live
250 ms, as before the feed. `MemoryProfileStore` is the in-memory twin for unit tests.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import Protocol

import orjson

from rewriter.engine.http_pool import EngineDown, EngineHTTP
from rewriter.profiles.cache import ProfileCache
from rewriter.profiles.changes import ChangeFeed
from rewriter.profiles.doc import ProfileDoc, profile_from_source

REALTIME = {"realtime": "true"}  # sees a profile written a moment ago, before any refresh


class ProfileStore(Protocol):
    async def get(self, pseudonym: str) -> ProfileDoc | None:
        """The decoded profile, None when the user has none; raises UnreadableProfile for a
        stored one this code cannot use."""
        ...

    def invalidate(self, pseudonym: str) -> None: ...


class MemoryProfileStore:
    """Profiles held in a dict (tests)."""

    def __init__(self, docs: dict[str, ProfileDoc] | None = None) -> None:
        self.docs = dict(docs or {})

    async def get(self, pseudonym: str) -> ProfileDoc | None:
        return self.docs.get(pseudonym)

    def invalidate(self, pseudonym: str) -> None:
        return None


class OpenSearchProfileStore:
    """Profiles from the profiles alias via realtime GET (sees writes before a refresh).

    With a `cache` and a `feed` (the proxy: serve/app.py), a user's profile is read once and
    then served from memory until it changes: the fold in this process invalidates it at
    once, the change feed (profiles/changes.py) within about 100 ms in any other. While the
    feed is not trusted (not read yet, or unreadable), entries are served for at most `ttl`
    seconds after they were read, as without a feed.
    """

    def __init__(
        self,
        http: EngineHTTP,
        alias: str,
        ttl: float = 0.25,
        capacity: int = 10_000,
        cache: ProfileCache[ProfileDoc | None] | None = None,
        feed: ChangeFeed | None = None,
    ) -> None:
        self.http = http
        self.alias = alias
        self.ttl = ttl
        self.capacity = capacity
        self.cache = cache
        self.feed = feed
        self._recent: OrderedDict[str, tuple[float, ProfileDoc | None]] = OrderedDict()

    async def get(self, pseudonym: str) -> ProfileDoc | None:
        cache = self.cache
        if cache is not None and self.feed is not None and self.feed.trusted:
            hit, doc = cache.get(pseudonym)
            if hit:
                return doc
            ticket = cache.begin()
            doc, size = await self._read(pseudonym)
            cache.put(pseudonym, doc, size, ticket)
            return doc
        return await self._get_ttl(pseudonym)

    async def _get_ttl(self, pseudonym: str) -> ProfileDoc | None:
        """Without a trusted feed: entries live `ttl` seconds (bounded by `capacity`)."""
        now = time.monotonic()
        hit = self._recent.get(pseudonym)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        doc, _ = await self._read(pseudonym)
        self._recent[pseudonym] = (now, doc)
        self._recent.move_to_end(pseudonym)
        while len(self._recent) > self.capacity:
            self._recent.popitem(last=False)
        return doc

    async def _read(self, pseudonym: str) -> tuple[ProfileDoc | None, int]:
        """The decoded profile (None without one) and the size of its stored JSON."""
        # The whole _source: excluding the rings (recent_batches, recent_sessions) costs the
        # engine more than sending them (GET p50 1.09 vs 0.75 ms for a 7.7 KB profile).
        response = await self.http.get(f"/{self.alias}/_doc/{pseudonym}", params=REALTIME)
        if response.status == 404:
            return None, 0
        if response.status != 200:
            raise EngineDown(f"reading profile {pseudonym} failed with HTTP {response.status}")
        source = orjson.loads(response.content).get("_source")
        size = len(response.content)
        return (None if source is None else profile_from_source(source)), size

    def invalidate(self, pseudonym: str) -> None:
        self._recent.pop(pseudonym, None)
        if self.cache is not None:
            self.cache.invalidate(pseudonym)

    def invalidate_many(self, pseudonyms: Iterable[str]) -> None:
        """Drop many users at once (a change-feed document, a fold)."""
        users = list(pseudonyms)
        for user in users:
            self._recent.pop(user, None)
        if self.cache is not None:
            self.cache.invalidate(users)
