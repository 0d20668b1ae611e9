"""The change feed's reader and the store's trust in its cache (profiles/changes.py,
profiles/store.py), with a stand-in for the engine's HTTP answers: what is under test is
what the proxy does with them (the real feed is tested in
tests/integration/test_profile_cache_across_proxies.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from rewriter.engine.http_pool import EngineDown, EngineResponse
from rewriter.profiles.cache import ProfileCache
from rewriter.profiles.changes import ChangeFeed
from rewriter.profiles.store import OpenSearchProfileStore


class FakeHTTP:
    """Answers feed searches from `feed` (None: the engine is down) and profile GETs from
    `profiles`, counting the GETs."""

    def __init__(self) -> None:
        self.feed: list[dict[str, Any]] | None = []
        self.profiles: dict[str, dict[str, Any]] = {}
        self.gets = 0

    async def request(self, method: str, path: str, **kwargs: Any) -> EngineResponse:
        if self.feed is None:
            raise EngineDown("down")
        body = orjson.loads(kwargs["content"])
        since = body["query"].get("range", {}).get("at", {}).get("gt", float("-inf"))
        hits = [h for h in self.feed if h["_source"]["at"] > since]
        hits.sort(key=lambda h: h["_source"]["at"], reverse=body["sort"][0]["at"] == "desc")
        hits = [{**h, "sort": [h["_source"]["at"]]} for h in hits[: body["size"]]]
        return EngineResponse(200, orjson.dumps({"hits": {"hits": hits}}), "application/json")

    async def get(self, path: str, **_: Any) -> EngineResponse:
        self.gets += 1
        user = path.rsplit("/", 1)[1]
        if user not in self.profiles:
            return EngineResponse(404, b"{}", "application/json")
        return EngineResponse(200, orjson.dumps({"_source": self.profiles[user]}), "x")


def _store(http: FakeHTTP) -> tuple[OpenSearchProfileStore, ChangeFeed]:
    cache: ProfileCache = ProfileCache(1_000_000)
    store = OpenSearchProfileStore(http, "profiles", cache=cache, ttl=0.0)  # type: ignore[arg-type]
    feed = ChangeFeed(http, "changes", store.invalidate_many, cache.clear)  # type: ignore[arg-type]
    store.feed = feed
    return store, feed


def test_entries_are_served_while_the_feed_is_read_and_dropped_when_it_names_them() -> None:
    async def go() -> None:
        http = FakeHTTP()
        store, feed = _store(http)
        http.feed = [
            {"_id": "history", "_source": {"users": ["u1"], "at": 10.0}},
            {"_id": "recent", "_source": {"users": ["u2"], "at": 100.0}},
        ]
        await feed.poll_once()  # starts at the newest document less the margin
        assert feed.trusted and feed.applied == 1
        assert await store.get("u1") is None and await store.get("u1") is None
        assert http.gets == 1  # the second read came from memory
        http.feed.append({"_id": "new", "_source": {"users": ["u1", "u9"], "at": 101.0}})
        await feed.poll_once()
        await feed.poll_once()  # seen again inside the margin: applied once
        assert feed.applied == 2
        await store.get("u1")
        assert http.gets == 2

    asyncio.run(go())


def test_without_a_readable_feed_every_read_goes_to_the_engine_and_recovery_clears() -> None:
    async def go() -> None:
        http = FakeHTTP()
        store, feed = _store(http)
        http.feed = None
        await feed.poll_once()
        assert not feed.trusted
        await store.get("u1")
        await store.get("u1")
        assert http.gets == 2  # ttl 0: nothing served from memory
        http.feed = []
        await feed.poll_once()
        assert feed.trusted
        await store.get("u1")
        await store.get("u1")
        assert http.gets == 3
        http.feed = None  # down again: changes may be missed ...
        await feed.poll_once()
        http.feed = []
        await feed.poll_once()  # ... so the cache starts empty when the feed is back
        await store.get("u1")
        assert http.gets == 4

    asyncio.run(go())
