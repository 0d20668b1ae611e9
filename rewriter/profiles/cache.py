"""The proxy's memory of profiles: an LRU bounded by bytes, told of changes, never stale.

Generic over what it holds: a value (a decoded profile, or None for "this user has none") and
its size in bytes (the stored JSON's, as read from the engine). Entries stay until evicted or
invalidated; correctness comes from invalidation (the fold in this process, the change feed
for the others: profiles/changes.py), not from a TTL.

One race is closed here: a read that started before an invalidation of its key and ended
after it carries the old document, and must not be cached. `begin()` gives the read a ticket
(the invalidation counter at its start); `put()` drops the value when the key was invalidated
since. Invalidations are remembered per key in a bounded map; keys that fell out of it are
covered by `_floor` (the newest forgotten invalidation): a read older than that is not
cached either.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

V = TypeVar("V")

ENTRY_OVERHEAD = 200
"""Bytes counted per entry beyond its value (the key, the bookkeeping), so that a cache of
users without a profile (value None, 0 bytes) is bounded too."""
REMEMBERED_INVALIDATIONS = 100_000


@dataclass(frozen=True)
class CacheStats:
    hits: int
    misses: int
    entries: int
    bytes: int
    capacity_bytes: int
    evictions: int
    invalidations: int

    @property
    def hit_rate(self) -> float | None:
        total = self.hits + self.misses
        return self.hits / total if total else None

    def as_dict(self) -> dict[str, float | int | None]:
        rate = self.hit_rate
        return {
            "hits": self.hits,
            "misses": self.misses,
            "hit_rate": None if rate is None else round(rate, 4),
            "entries": self.entries,
            "bytes": self.bytes,
            "capacity_bytes": self.capacity_bytes,
            "evictions": self.evictions,
            "invalidations": self.invalidations,
        }


class ProfileCache(Generic[V]):
    """LRU by bytes; thread-safe (the fold thread invalidates, the event loop reads)."""

    def __init__(self, capacity_bytes: int) -> None:
        self.capacity_bytes = max(0, capacity_bytes)
        self._entries: OrderedDict[str, tuple[V, int]] = OrderedDict()
        self._bytes = 0
        self._tick = 0
        self._invalidated: OrderedDict[str, int] = OrderedDict()
        self._floor = 0
        self._lock = threading.Lock()
        self.hits = self.misses = self.evictions = self.invalidations = 0

    def get(self, key: str) -> tuple[bool, V | None]:
        """(True, value) on a hit; (False, None) on a miss (counted either way)."""
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                self.misses += 1
                return False, None
            self._entries.move_to_end(key)
            self.hits += 1
            return True, found[0]

    def begin(self) -> int:
        """A ticket for a read about to start (pass it to `put`)."""
        with self._lock:
            return self._tick

    def put(self, key: str, value: V, size: int, ticket: int) -> bool:
        """Keep `value` unless `key` was invalidated after `ticket` was taken, or it alone
        exceeds the capacity; evicts the least recently used entries to fit."""
        cost = size + ENTRY_OVERHEAD
        with self._lock:
            if ticket < self._floor or self._invalidated.get(key, -1) > ticket:
                return False
            if cost > self.capacity_bytes:
                return False
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            self._entries[key] = (value, cost)
            self._bytes += cost
            while self._bytes > self.capacity_bytes:
                _, (_, dropped) = self._entries.popitem(last=False)
                self._bytes -= dropped
                self.evictions += 1
            return True

    def invalidate(self, keys: str | Iterable[str]) -> None:
        """Drop `keys` (one key, or an iterable of keys) and fence off reads in flight."""
        batch = [keys] if isinstance(keys, str) else list(keys)
        with self._lock:
            for key in batch:
                self._tick += 1
                self._invalidated[key] = self._tick
                self._invalidated.move_to_end(key)
                old = self._entries.pop(key, None)
                if old is not None:
                    self._bytes -= old[1]
                    self.invalidations += 1
            while len(self._invalidated) > REMEMBERED_INVALIDATIONS:
                _, tick = self._invalidated.popitem(last=False)
                self._floor = max(self._floor, tick)

    def clear(self) -> None:
        """Drop everything, and every read in flight (the change feed lost track)."""
        with self._lock:
            self._tick += 1
            self._floor = self._tick
            self._invalidated.clear()
            self._entries.clear()
            self._bytes = 0

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(
                self.hits,
                self.misses,
                len(self._entries),
                self._bytes,
                self.capacity_bytes,
                self.evictions,
                self.invalidations,
            )
