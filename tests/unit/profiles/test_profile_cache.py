"""The proxy's profile cache (profiles/cache.py): LRU by bytes, invalidation, the read race."""

from __future__ import annotations

from rewriter.profiles.cache import ENTRY_OVERHEAD, REMEMBERED_INVALIDATIONS, ProfileCache


def _put(cache: ProfileCache[str | None], key: str, size: int = 100) -> bool:
    return cache.put(key, f"doc-{key}", size, cache.begin())


def test_hit_miss_and_hit_rate() -> None:
    cache: ProfileCache[str | None] = ProfileCache(10_000)
    assert cache.get("u1") == (False, None)
    _put(cache, "u1")
    assert cache.get("u1") == (True, "doc-u1")
    cache.put("nobody", None, 0, cache.begin())  # a user without a profile is cached too
    assert cache.get("nobody") == (True, None)
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.entries) == (2, 1, 2)
    assert stats.hit_rate == 2 / 3
    assert stats.as_dict()["hit_rate"] == round(2 / 3, 4)


def test_bounded_by_bytes_least_recently_used_goes_first() -> None:
    entry = 1_000 + ENTRY_OVERHEAD
    cache: ProfileCache[str | None] = ProfileCache(3 * entry)
    for key in ("a", "b", "c"):
        _put(cache, key, 1_000)
    cache.get("a")  # a is now the most recently used
    _put(cache, "d", 1_000)
    assert cache.get("b") == (False, None)
    assert cache.get("a")[0] and cache.get("c")[0] and cache.get("d")[0]
    stats = cache.stats()
    assert stats.bytes == 3 * entry <= stats.capacity_bytes
    assert stats.evictions == 1


def test_an_entry_larger_than_the_cache_is_not_kept() -> None:
    cache: ProfileCache[str | None] = ProfileCache(500)
    assert not _put(cache, "huge", 10_000)
    assert cache.stats().entries == 0


def test_invalidate_drops_one_or_many() -> None:
    cache: ProfileCache[str | None] = ProfileCache(10_000)
    for key in ("a", "b", "c"):
        _put(cache, key)
    cache.invalidate("a")
    cache.invalidate(["b", "zzz"])
    assert [cache.get(k)[0] for k in ("a", "b", "c")] == [False, False, True]
    assert cache.stats().bytes == 100 + ENTRY_OVERHEAD


def test_a_read_that_started_before_an_invalidation_is_not_cached() -> None:
    cache: ProfileCache[str | None] = ProfileCache(10_000)
    ticket = cache.begin()  # GET sent ...
    cache.invalidate("u1")  # ... the profile changes and the feed says so ...
    assert not cache.put("u1", "old", 100, ticket)  # ... the old answer arrives: dropped
    assert cache.get("u1") == (False, None)
    assert cache.put("u1", "new", 100, cache.begin())  # the next read is kept
    assert cache.get("u1") == (True, "new")


def test_an_invalidation_of_another_user_does_not_block_a_read() -> None:
    cache: ProfileCache[str | None] = ProfileCache(10_000)
    ticket = cache.begin()
    cache.invalidate("someone-else")
    assert cache.put("u1", "doc", 100, ticket)


def test_forgotten_invalidations_still_fence_old_reads() -> None:
    cache: ProfileCache[str | None] = ProfileCache(10_000)
    ticket = cache.begin()
    cache.invalidate("u1")
    cache.invalidate(f"other-{n}" for n in range(REMEMBERED_INVALIDATIONS))  # u1 forgotten
    assert not cache.put("u1", "old", 100, ticket)
    assert cache.put("u1", "new", 100, cache.begin())


def test_clear_forgets_everything_and_reads_in_flight() -> None:
    cache: ProfileCache[str | None] = ProfileCache(10_000)
    _put(cache, "a")
    ticket = cache.begin()
    cache.clear()
    assert cache.get("a") == (False, None)
    assert not cache.put("b", "doc", 100, ticket)
    assert cache.stats().bytes == 0
