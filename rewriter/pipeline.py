"""Events into the log, the log into profiles: the I/O around events.py and profiles.py.

One batch goes through these steps (the batch import and `POST /events` share them):

1. pseudonymize users; read their profiles (one mget); drop events of opted-out users
   (reported, never stored); an event with `opt_out` erases the user and leaves a tombstone;
2. enrich with the item's attribute values from the catalog (unknown items are accepted and
   reported: they carry no attributes, so the profile learns nothing from them);
3. `_bulk` create into the events index, doc id = event id: a re-sent event is a 409 there,
   reported as a duplicate, and never folded again;
4. fold the newly created events per user and write each profile with optimistic concurrency
   (if_seq_no/if_primary_term; a conflict re-reads and retries). Every batch has an id,
   recorded in a journal (pending → done) and on each of its events; a profile keeps the ids
   of the batches folded into it (`recent_batches`), so a batch is never folded twice into
   one profile, even when two processes, or a recovery after a crash, race for it;
5. mark the batch `done` in the journal: one write per batch, not one per event.
   `recover()` folds the events of batches a crash left `pending`.

Delivery is at-least-once, the effect exactly-once.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import orjson
from opensearchpy import OpenSearch, helpers

from rewriter import config, privacy
from rewriter.boost_profiles import BoostProfile
from rewriter.events import Event, Rejection
from rewriter.profiles import FoldConfig, ProfileDoc, fold, opted_out, store_k_for

RECENT_BATCHES = 64
"""Batch ids remembered per profile. Only batches still pending in the journal (a crash, or
a fold in flight) need to be recognized, and those are the newest few."""

RECOVERY_AGE_S = 30.0
"""Unfolded events younger than this belong to a fold in flight; recovery leaves them."""

APPEND_CHUNK = 5_000
"""Events per `_bulk` request. A larger batch (the batch import folds windows of 100,000
events) is sent in chunks, `SENDERS` at a time: one is built while the engine indexes
another."""
SENDERS = 2
MGET_CHUNK = 1_000
"""Profiles per `_mget` request."""
PROFILE_CHUNK = 500
"""Profiles per `_bulk` request."""


def fold_config(boost: BoostProfile) -> FoldConfig:
    """What folding needs from a boost profile."""
    purchase = tuple(t for t in boost.event_weights if t == "purchase")
    return FoldConfig(
        event_weights=dict(boost.event_weights),
        half_life_s=boost.half_life_days * 86_400.0,
        attributes=tuple(boost.attributes),
        store_k=store_k_for(boost.top_k),
        purchase_types=purchase or ("purchase",),
    )


@dataclass
class BatchResult:
    """What happened to each event of a batch."""

    accepted: int = 0
    duplicates: int = 0
    rejected: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    users: set[str] = field(default_factory=set)
    folded: int = 0
    unknown_items: set[str] = field(default_factory=set)
    outcomes: dict[str, str] = field(default_factory=dict)
    """Stored event id (after pseudonymization) → accepted | duplicate | rejected |
    not_stored (opted out); the first outcome of an id sent twice in one batch wins."""
    created: list[Event] = field(default_factory=list)
    """The events newly written to the log, as stored: pseudonymized and enriched."""

    def merge(self, other: BatchResult) -> None:
        self.accepted += other.accepted
        self.duplicates += other.duplicates
        self.rejected += other.rejected
        self.notes += other.notes
        self.users |= other.users
        self.folded += other.folded
        self.unknown_items |= other.unknown_items
        self.outcomes = {**other.outcomes, **self.outcomes}
        self.created += other.created


def attributes_from_source(source: Mapping[str, Any], names: Iterable[str]) -> dict:
    """The item's keyword values for the configured attributes, as events capture them."""
    out: dict[str, tuple[str, ...]] = {}
    for name in names:
        raw = source.get(name)
        values = raw if isinstance(raw, list) else [] if raw is None else [raw]
        kept = tuple(str(v) for v in values if v is not None and v != "")
        if kept:
            out[name] = kept
    return out


class Pipeline:
    """Writes batches of validated events and folds them into profiles (synchronous)."""

    def __init__(self, es: OpenSearch, settings: config.Settings, boost: BoostProfile) -> None:
        self.es = es
        self.settings = settings
        self.boost = boost
        self.cfg = fold_config(boost)
        self.secret = config.user_secret(settings)
        self._catalog_cache: dict[str, dict | None] = {}
        self._attrs_cache: dict[str, dict[str, tuple[str, ...]]] = {}
        self._pseudonyms: dict[str, str] = {}

    # ------------------------------------------------------------------ reads
    def _profiles(self, users: Sequence[str]) -> dict[str, tuple[ProfileDoc, int, int] | None]:
        out: dict[str, tuple[ProfileDoc, int, int] | None] = {}
        for start in range(0, len(users), MGET_CHUNK):
            response = self.es.mget(
                index=self.settings.indices.profiles,
                body={"ids": list(users[start : start + MGET_CHUNK])},
                realtime=True,
            )
            for doc in response["docs"]:
                found = doc.get("found")
                out[doc["_id"]] = (
                    (doc["_source"], doc["_seq_no"], doc["_primary_term"]) if found else None
                )
        return out

    def _items(self, item_ids: Iterable[str]) -> dict[str, dict | None]:
        wanted = set(item_ids)
        missing = [i for i in wanted if i not in self._catalog_cache]
        if missing:
            response = self.es.mget(
                index=self.settings.indices.catalog,
                body={"ids": missing},
                _source_includes=list(self.cfg.attributes),
            )
            for doc in response["docs"]:
                self._catalog_cache[doc["_id"]] = doc["_source"] if doc.get("found") else None
            if len(self._catalog_cache) > 200_000:
                self.forget_catalog()
        return {i: self._catalog_cache.get(i) for i in wanted}

    def forget_catalog(self) -> None:
        """Drop cached catalog lookups (long-running servers: items added or changed later)."""
        self._catalog_cache.clear()
        self._attrs_cache.clear()

    def _pseudonym(self, raw: str) -> str:
        """privacy.pseudonymize, memoized: an HMAC per event is a tenth of an import's CPU."""
        found = self._pseudonyms.get(raw)
        if found is None:
            if len(self._pseudonyms) > 100_000:
                self._pseudonyms.clear()
            found = self._pseudonyms[raw] = privacy.pseudonymize(raw, self.secret)
        return found

    # ------------------------------------------------------------------ write path
    def ingest(
        self,
        events: Sequence[Event],
        now: float | None = None,
        chunk_size: int = APPEND_CHUNK,
        progress: Callable[[int], None] | None = None,
    ) -> BatchResult:
        """Steps 1-5 for one batch of validated events with raw user ids.

        The batch is written in `_bulk` requests of `chunk_size` events and folded once:
        each touched profile is read and written once per batch, so the batch import hands
        in large batches. `progress(n)` is told of every chunk written."""
        now = time.time() if now is None else now
        result = BatchResult()
        pseudo = [e.with_user(self._pseudonym(e.user_id)) for e in events]
        profiles = self._profiles(sorted({e.user_id for e in pseudo}))
        kept: list[Event] = []
        for event in pseudo:
            current = profiles.get(event.user_id)
            if event.opt_out:
                self.opt_out(event.user_id)
                profiles[event.user_id] = ({"opt_out": True}, 0, 0)  # type: ignore[assignment]
                result.outcomes.setdefault(event.event_id, "not_stored")
                result.notes.append(
                    f"event {event.event_id}: the user opted out; their "
                    "profile and events are erased"
                )
            elif current is not None and current[0].get("opt_out"):
                result.outcomes.setdefault(event.event_id, "not_stored")
                result.notes.append(f"event {event.event_id}: not stored, the user opted out")
            else:
                kept.append(event)
        opted = {e.user_id for e in pseudo if e.opt_out}  # erased: earlier events go too
        for event in (e for e in kept if e.user_id in opted):
            result.outcomes.setdefault(event.event_id, "not_stored")
        kept = [e for e in kept if e.user_id not in opted]
        items = self._items(e.item_id for e in kept)
        enriched = []
        for event in kept:
            source = items.get(event.item_id)
            if source is None:
                result.unknown_items.add(event.item_id)
                result.notes.append(
                    f"event {event.event_id}: item {event.item_id} is not in the "
                    "catalog; stored, but the profile learns nothing from it"
                )
                enriched.append((event, False))
            else:
                attrs = self._attrs_cache.get(event.item_id)
                if attrs is None:
                    attrs = attributes_from_source(source, self.cfg.attributes)
                    self._attrs_cache[event.item_id] = attrs
                enriched.append((event.with_attributes(attrs), True))
        batch = uuid.uuid4().hex
        self._journal(batch, "pending", now, len(enriched))
        created = self._append(enriched, now, result, batch, chunk_size, progress)
        if created:
            pairs = [(e, batch) for e in created]
            result.folded = self.fold_into_profiles(pairs, now, prefetched=profiles)
        self._journal(batch, "done", now, len(created))
        result.users = {e.user_id for e in created}
        result.created = created
        return result

    def _journal(self, batch: str, state: str, now: float, events: int) -> None:
        body = {"batch_id": batch, "state": state, "created": now, "events": events}
        self.es.index(index=self.settings.indices.journal, id=batch, body=body)

    def _append(
        self,
        enriched: list[tuple[Event, bool]],
        now: float,
        result: BatchResult,
        batch: str,
        chunk_size: int = APPEND_CHUNK,
        progress: Callable[[int], None] | None = None,
    ) -> list[Event]:
        """Create the events in the log, `chunk_size` per `_bulk`; the ones newly created."""
        step = max(1, chunk_size)
        chunks = [enriched[i : i + step] for i in range(0, len(enriched), step)]
        created: list[Event] = []

        def record(sent: list[tuple[Event | None, Mapping[str, Any], int]]) -> None:
            for event, info, status in sent:
                self._record(result, info, status)
                if event is not None:
                    created.append(event)
            if progress is not None:
                progress(len(sent))

        if len(chunks) <= 1:
            for chunk in chunks:
                record(self._append_chunk(chunk, now, batch))
            return created
        with ThreadPoolExecutor(SENDERS, thread_name_prefix="affinity-bulk") as pool:
            for sent in pool.map(lambda c: self._append_chunk(c, now, batch), chunks):
                record(sent)
        return created

    def _append_chunk(
        self, enriched: Sequence[tuple[Event, bool]], now: float, batch: str
    ) -> list[tuple[Event | None, Mapping[str, Any], int]]:
        """One `_bulk` of creates (429s resent with back-off): per event (the event if
        it was newly created, the item's response, its status)."""
        index = self.settings.indices.events
        pending = {
            event.event_id: (
                event,
                {**event.to_doc(), "known_item": known, "batch_id": batch, "ingested_at": now},
            )
            for event, known in enriched
        }
        out: list[tuple[Event | None, Mapping[str, Any], int]] = []
        for attempt in range(4):  # 429 (the node's write queue is full): back off, resend those
            if not pending:
                break
            if attempt:
                time.sleep(0.5 * 2**attempt)
            lines = []
            for event_id, (_, doc) in pending.items():
                lines.append(orjson.dumps({"create": {"_index": index, "_id": event_id}}))
                lines.append(orjson.dumps(doc))
            response = self.es.bulk(
                body=b"\n".join(lines) + b"\n",
                request_timeout=120,
                filter_path="items.*._id,items.*.status,items.*.error",
            )
            retry = {}
            for item in response["items"]:
                info = item["create"]
                event_id, status = str(info["_id"]), int(info.get("status", 500))
                if status == 429 and attempt < 3:
                    retry[event_id] = pending[event_id]
                    continue
                event = pending[event_id][0] if 200 <= status < 300 else None
                out.append((event, info, status))
            pending = retry
        return out

    @staticmethod
    def _record(result: BatchResult, info: Mapping[str, Any], status: int) -> None:
        event_id = str(info.get("_id"))
        if 200 <= status < 300:
            result.outcomes.setdefault(event_id, "accepted")
            result.accepted += 1
        elif status == 409:
            result.outcomes.setdefault(event_id, "duplicate")
            result.duplicates += 1
        else:
            result.outcomes.setdefault(event_id, "rejected")
            error = info.get("error", {})
            reason = error.get("reason", error) if isinstance(error, dict) else error
            result.rejected.append(f"event {event_id}: OpenSearch refused it: {reason}")

    def fold_into_profiles(
        self,
        events: Sequence[tuple[Event, str]],
        now: float,
        prefetched: Mapping[str, tuple[ProfileDoc, int, int] | None] | None = None,
    ) -> int:
        """Fold (event, batch id) pairs, already in the log, into their users' profiles.

        `prefetched`: the profiles as just read (with seq_no/primary_term), saving the first
        round a read; a profile that changed since makes its write conflict, and the retry
        reads it again."""
        by_user: dict[str, list[tuple[Event, str]]] = defaultdict(list)
        for event, batch in events:
            by_user[event.user_id].append((event, batch))
        pending = dict(by_user)
        folded: list[int] = []
        for _attempt in range(10):
            if not pending:
                break
            pending = self._fold_round(pending, now, folded, prefetched)
            prefetched = None
        if pending:
            raise RuntimeError(
                f"profiles of {len(pending)} users kept changing under us; "
                "their batch stays pending and `recover` will fold it"
            )
        return sum(folded)

    def _fold_round(
        self,
        by_user: dict[str, list[tuple[Event, str]]],
        now: float,
        folded: list[int],
        prefetched: Mapping[str, tuple[ProfileDoc, int, int] | None] | None = None,
    ) -> dict[str, list[tuple[Event, str]]]:
        if prefetched is not None and all(u in prefetched for u in by_user):
            current = prefetched
        else:
            current = self._profiles(sorted(by_user))
        planned: dict[str, int] = {}

        def bodies() -> Iterator[bytes]:  # folded lazily: the next while one is written
            lines: list[bytes] = []
            for user, pairs in by_user.items():
                write = self._fold_write(user, pairs, current.get(user), now)
                if write is None:
                    continue
                header, source, planned[user] = write
                lines += (orjson.dumps(header), orjson.dumps(source))
                if len(lines) >= 2 * PROFILE_CHUNK:
                    yield b"\n".join(lines) + b"\n"
                    lines = []
            if lines:
                yield b"\n".join(lines) + b"\n"

        retry: dict[str, list[tuple[Event, str]]] = {}
        for items in self._bulk_all(bodies()):
            for item in items:
                info = next(iter(item.values()))
                user, status = str(info["_id"]), int(info.get("status", 500))
                if 200 <= status < 300:
                    folded.append(planned[user])
                elif status == 409:
                    retry[user] = by_user[user]
                else:
                    raise RuntimeError(f"profile {user} could not be written: {info.get('error')}")
        return retry

    def _bulk_all(self, bodies: Iterator[bytes]) -> Iterator[list[dict[str, Any]]]:
        """Each `_bulk` body sent, SENDERS in flight; the response items of each, in order."""
        first = next(bodies, None)
        if first is None:
            return
        second = next(bodies, None)
        if second is None:  # one request (the usual `POST /events` batch): no threads
            yield self._bulk(first)
            return
        with ThreadPoolExecutor(SENDERS, thread_name_prefix="affinity-bulk") as pool:
            inflight = deque([pool.submit(self._bulk, first), pool.submit(self._bulk, second)])
            for body in bodies:
                yield inflight.popleft().result()
                inflight.append(pool.submit(self._bulk, body))
            while inflight:
                yield inflight.popleft().result()

    def _bulk(self, body: bytes) -> list[dict[str, Any]]:
        response = self.es.bulk(
            body=body,
            request_timeout=120,
            filter_path="items.*._id,items.*.status,items.*.error",
        )
        return list(response.get("items", []))

    def _fold_write(
        self,
        user: str,
        pairs: Sequence[tuple[Event, str]],
        found: tuple[ProfileDoc, int, int] | None,
        now: float,
    ) -> tuple[dict[str, Any], dict[str, Any], int] | None:
        """(`_bulk` header, profile, events folded) writing `user`'s profile with the events
        of batches it has not folded yet; None when there is nothing to write."""
        doc, seq, term = found if found else (None, None, None)
        if doc is not None and doc.get("opt_out"):
            return None
        ring = list((doc or {}).get("recent_batches", []))
        seen = set(ring)
        new = [(e, b) for e, b in pairs if b not in seen]
        if not new:
            return None
        updated = dict(fold(doc, [e for e, _ in new], self.cfg, now=now))
        updated.pop("recent_event_ids", None)  # superseded by recent_batches
        batches = list(dict.fromkeys(b for _, b in new))
        updated["recent_batches"] = [*batches, *ring][:RECENT_BATCHES]
        target: dict[str, Any] = {"_index": self.settings.indices.profiles, "_id": user}
        if doc is None:
            return {"create": target}, updated, len(new)
        target.update(if_seq_no=seq, if_primary_term=term)
        return {"index": target}, updated, len(new)

    # ------------------------------------------------------------------ recovery and users
    def recover(self, now: float | None = None, min_age_s: float = RECOVERY_AGE_S) -> int:
        """Fold the events of batches a crash left pending (older than min_age_s)."""
        now = time.time() if now is None else now
        journal = self.settings.indices.journal
        query = {
            "bool": {
                "filter": [
                    {"term": {"state": "pending"}},
                    {"range": {"created": {"lte": now - min_age_s}}},
                ]
            }
        }
        self.es.indices.refresh(index=[journal, self.settings.indices.events])
        stale = [h["_source"] for h in helpers.scan(self.es, index=journal, query={"query": query})]
        total = 0
        for entry in stale:
            batch = entry["batch_id"]
            sources = helpers.scan(
                self.es,
                index=self.settings.indices.events,
                query={"query": {"term": {"batch_id": batch}}},
            )
            events = [event_from_doc(h["_source"]) for h in sources]
            pairs = [(e, batch) for e in events if not isinstance(e, Rejection)]
            total += self.fold_into_profiles(pairs, now) if pairs else 0
            self._journal(batch, "done", float(entry.get("created", now)), len(pairs))
        return total

    def opt_out(self, pseudonym: str) -> None:
        """Erase the user's events and leave a tombstone profile (opt_out: true)."""
        self.erase(pseudonym)
        tomb = dict(opted_out(_empty(pseudonym, self.cfg), time.time()))
        self.es.index(
            index=self.settings.indices.profiles, id=pseudonym, body=tomb, refresh="wait_for"
        )

    def erase(self, pseudonym: str) -> dict[str, int]:
        """Delete the user's profile and every event; counts of what was deleted."""
        self.es.indices.refresh(index=self.settings.indices.events)  # see unrefreshed events too
        events = self.es.delete_by_query(
            index=self.settings.indices.events,
            body={"query": {"term": {"user_id": pseudonym}}},
            refresh=True,
            conflicts="proceed",
        )["deleted"]
        profile = self.es.delete_by_query(
            index=self.settings.indices.profiles,
            body={"query": {"ids": {"values": [pseudonym]}}},
            refresh=True,
            conflicts="proceed",
        )["deleted"]
        return {
            "events": events,
            "profiles": profile,
            "impressions": self._erase_impressions(pseudonym),
        }

    def _erase_impressions(self, pseudonym: str) -> int:
        """Delete the user's search impressions (experiments); 0 where there is no index."""
        index = self.settings.indices.impressions
        self.es.indices.refresh(index=index, ignore_unavailable=True)
        found = self.es.delete_by_query(
            index=index,
            body={"query": {"term": {"user_id": pseudonym}}},
            refresh=True,
            conflicts="proceed",
            ignore=[404],
        )
        return int(found.get("deleted", 0))


def _empty(user: str, cfg: FoldConfig) -> ProfileDoc:
    from rewriter.profiles import empty_profile

    return empty_profile(user, cfg)


def event_from_doc(source: Mapping[str, Any]) -> Event | Rejection:
    """An Event read back from the events log (the shape Event.to_doc writes)."""
    from rewriter.events import validate

    internal = ("known_item", "batch_id", "folded", "ingested_at")
    raw = {k: v for k, v in source.items() if k not in internal}
    types = [str(source.get("type"))]
    return validate(raw, types)
