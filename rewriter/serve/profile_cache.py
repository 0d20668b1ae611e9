"""The proxy's profile cache, wired: the store with its cache and change feed, the feed's
polling task in the app's lifespan, and the cache's numbers for `/_affinity/health`.

The parts are profiles/cache.py (the LRU by bytes), profiles/changes.py (the feed) and
profiles/store.py (reads). AFFINITY_PROFILE_CACHE_MB sizes the cache; 0 turns it off (every
search then reads its profile, cached 250 ms as before the feed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from rewriter import config
from rewriter.engine.http_pool import EngineHTTP
from rewriter.profiles.cache import ProfileCache
from rewriter.profiles.changes import ChangeFeed
from rewriter.profiles.doc import ProfileDoc
from rewriter.profiles.store import OpenSearchProfileStore

log = logging.getLogger("affinity.proxy")

Lifespan = Callable[[Any], contextlib.AbstractAsyncContextManager[None]]


def build_store(settings: config.Settings, http: EngineHTTP) -> OpenSearchProfileStore:
    """The proxy's profile store: cached and fed when AFFINITY_PROFILE_CACHE_MB > 0."""
    alias = settings.indices.profiles
    capacity = int(settings.profile_cache_mb * 1_000_000)
    if capacity <= 0:
        return OpenSearchProfileStore(http, alias)
    cache: ProfileCache[ProfileDoc | None] = ProfileCache(capacity)
    store = OpenSearchProfileStore(http, alias, cache=cache)
    store.feed = ChangeFeed(http, settings.indices.changes, store.invalidate_many, cache.clear)
    return store


def _feed_of(app: Any) -> ChangeFeed | None:
    store = getattr(getattr(app.state, "proxy", None), "profiles", None)
    feed = getattr(store, "feed", None)
    return feed if isinstance(feed, ChangeFeed) else None


def with_change_feed(inner: Lifespan) -> Lifespan:
    """An app lifespan that polls the change feed (when the store has one) while `inner`
    runs."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        feed = _feed_of(app)
        task = asyncio.create_task(feed.run(), name="affinity-change-feed") if feed else None
        try:
            async with inner(app):
                yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    return lifespan


def health(app: Any) -> dict[str, Any] | None:
    """The cache's hit rate, size and feed state for /_affinity/health (None: no cache)."""
    store = getattr(getattr(app.state, "proxy", None), "profiles", None)
    cache = getattr(store, "cache", None)
    if not isinstance(cache, ProfileCache):
        return None
    out: dict[str, Any] = cache.stats().as_dict()
    feed = _feed_of(app)
    if feed is not None:
        out["change_feed"] = {
            "trusted": feed.trusted,
            "applied": feed.applied,
            "last_lag_ms": None if feed.lag_s is None else round(feed.lag_s * 1000, 1),
        }
    return out
