"""Events into the log, the log into profiles: the I/O around events/event.py and profiles/fold.py.

One batch goes through these steps (the batch import and `POST /events` share them):

1. pseudonymize users; find the opted-out ones among them (one search); drop their events
   (reported, never stored); an event with `opt_out` erases the user and leaves a tombstone;
2. enrich with the item's attribute values from the catalog (unknown items are accepted and
   reported: they carry no attributes, so the profile learns nothing from them until the
   item is in the catalog and the profile is rebuilt: `Rebuilder` enriches them then);
3. `_bulk` create into the events index, doc id = event id: a re-sent event is a 409 there,
   reported as a duplicate, and never folded again;
4. fold the newly created events per user and write each profile with optimistic concurrency
   (profiles/writer.py: if_seq_no/if_primary_term; a conflict re-reads and retries). Every
   batch has an id, recorded in a journal (pending → done) and on each of its events; a
   profile keeps the ids of the batches folded into it (`recent_batches`), so a batch is
   never folded twice into one profile, even when two processes, or a recovery after a
   crash, race for it;
5. mark the batch `done` in the journal: one write per batch, not one per event.
   `recover()` folds the events of batches a crash left `pending`.

`ingest` runs all five for one batch. `write` (steps 1-3) and `fold_batches` (4-5) apart
let `POST /events` acknowledge once the events are durable and fold many written batches
at once, so a busy user's profile is rewritten once per fold rather than once per request.

Delivery is at-least-once, the effect exactly-once.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from opensearchpy import OpenSearch, helpers
from opensearchpy.exceptions import RequestError, TransportError

from rewriter import config, privacy
from rewriter.boost.profile import BoostProfile
from rewriter.engine.client import mget_docs
from rewriter.events.catalog import item_attributes
from rewriter.events.event import Event
from rewriter.events.fields import Rejection
from rewriter.profiles.doc import ProfileDoc, to_source
from rewriter.profiles.fold import FoldConfig, fold_config, opted_out
from rewriter.profiles.writer import SENDERS, Found, ProfileWriter, bulk, line

log = logging.getLogger("affinity.pipeline")

RECOVERY_AGE_S = 30.0
"""Unfolded events younger than this belong to a fold in flight; recovery leaves them."""

JOURNAL_KEEP_S = 86_400.0
"""`done` journal entries older than this are deleted (`prune_journal`): recovery never
reads them, and a ring id the journal no longer has is dropped like a done one. Without
pruning the journal grows by one document per batch (per request, on a quiet server)."""

APPEND_CHUNK = 5_000
"""Events per `_bulk` request. A larger batch is sent in chunks, SENDERS at a time: one is
built while the engine indexes another."""


class RecoveryRound(NamedTuple):
    """One recovery round: events folded, and young pending batches left for a later round
    because some of their events were not stored yet."""

    folded: int
    unsettled: int


@dataclass
class BatchResult:
    """What happened to each event of a batch."""

    accepted: int = 0
    duplicates: int = 0
    refused: list[tuple[str, str]] = field(default_factory=list)
    """(stored event id, why it was not stored: refused, or unavailable), in response order."""
    notes: list[str] = field(default_factory=list)
    folded: int = 0
    unknown_items: set[str] = field(default_factory=set)
    ignored_attributes: set[str] = field(default_factory=set)
    """Stored ids of events whose client-sent attributes were not used (client_attributes)."""
    outcomes: dict[str, str] = field(default_factory=dict)
    """Stored event id (after pseudonymization) → accepted | duplicate | rejected |
    unavailable (the engine could not store it now: send it again) | not_stored (opted out);
    the first outcome of an id sent twice in one batch wins."""
    created: list[Event] = field(default_factory=list)
    """The events newly written to the log, as stored: pseudonymized and enriched."""
    batch_id: str = ""
    written_at: float = 0.0
    profiles: dict[str, tuple[ProfileDoc, int, int] | None] | None = field(default=None, repr=False)
    """The touched profiles as `write(prefetch=True)` read them, for the fold's first round."""

    @property
    def rejected(self) -> list[str]:
        """The refusals as messages: `event ID: REASON` (`OpenSearch refused it: ...`)."""
        return [f"event {sid}: {why}" for sid, why in self.refused]

    @property
    def created_of_known_items(self) -> list[Event]:
        """The newly written events whose item is in the catalog (what popularity counts)."""
        unknown = self.unknown_items
        return [e for e in self.created if e.item_id not in unknown] if unknown else self.created

    @property
    def users(self) -> set[str]:
        """The users whose events were newly written (the profiles a fold touches)."""
        return {e.user_id for e in self.created}


def catalog_attributes(
    es: OpenSearch, catalog: str, item_ids: Iterable[str], names: Sequence[str]
) -> dict[str, dict[str, tuple[str, ...]]]:
    """The attribute values of the items that are in the catalog (realtime mget), by id."""
    return {
        d["_id"]: item_attributes(d.get("_source") or {}, names)
        for d in mget_docs(es, catalog, item_ids, _source_includes=list(names))
        if d.get("found")
    }


class RecoveryFailed(RuntimeError):
    """Every pending batch failed to fold in one recovery round."""


class Pipeline:
    """Writes batches of validated events and folds them into profiles (synchronous).

    `source` says how the events arrive (boost.profile.EVENT_SOURCES: `api` for POST /events,
    else the import format): item attributes sent with events are kept for items not in the
    catalog only when the boost profile's `client_attributes` allows that source."""

    def __init__(
        self,
        es: OpenSearch,
        settings: config.Settings,
        boost: BoostProfile,
        source: str = "api",
    ) -> None:
        self.es = es
        self.settings = settings
        self.boost = boost
        self.source = source
        self.client_attributes = boost.client_attributes.allows(source)
        self.cfg = fold_config(boost)
        self.secret = config.user_secret(settings)
        self._catalog_cache: dict[str, dict | None] = {}
        self._attrs_cache: dict[str, dict[str, tuple[str, ...]]] = {}
        self._pseudonyms: dict[str, str] = {}
        self.profiles = ProfileWriter(es, settings, self.cfg)
        self._read_pool: ThreadPoolExecutor | None = None

    @property
    def profile_cache(self) -> int:
        """How many profiles this pipeline remembers as it last wrote them, with their
        seq_no, so the next fold of those users needs no read (profiles/writer.py)."""
        return self.profiles.cache_size

    @profile_cache.setter
    def profile_cache(self, size: int) -> None:
        self.profiles.cache_size = size

    def close(self) -> None:
        """End the thread that reads opt-outs beside each write (a new one starts if the
        pipeline is used again)."""
        pool, self._read_pool = self._read_pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    # ------------------------------------------------------------------ reads
    def _reader(self) -> ThreadPoolExecutor:
        if self._read_pool is None:
            self._read_pool = ThreadPoolExecutor(1, thread_name_prefix="affinity-read")
        return self._read_pool

    def _items(self, item_ids: Iterable[str]) -> dict[str, dict | None]:
        wanted = set(item_ids)
        missing = [i for i in wanted if i not in self._catalog_cache]
        if missing:
            catalog, names = self.settings.indices.catalog, list(self.cfg.attributes)
            for doc in mget_docs(self.es, catalog, missing, _source_includes=names):
                self._catalog_cache[doc["_id"]] = doc["_source"] if doc.get("found") else None
            if len(self._catalog_cache) > 200_000:
                self.forget_catalog()
        return {i: self._catalog_cache.get(i) for i in wanted}

    def forget_catalog(self) -> None:
        """Drop cached catalog lookups (long-running servers: items added or changed later)."""
        self._catalog_cache.clear()
        self._attrs_cache.clear()

    def pseudonym(self, raw: str) -> str:
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
        result = self.write(events, now, chunk_size, progress, prefetch=True)
        result.folded = self.fold_batches([result], now)
        return result

    def write(
        self,
        events: Sequence[Event],
        now: float | None = None,
        chunk_size: int = APPEND_CHUNK,
        progress: Callable[[int], None] | None = None,
        prefetch: bool = False,
    ) -> BatchResult:
        """Steps 1-3: the batch is in the log (durable) and `pending` in the journal.

        `fold_batches` folds it later. `prefetch` reads the touched profiles whole (kept in
        the result for the fold's first round); otherwise a search finds the opted-out users
        among them, while the items are looked up."""
        now = time.time() if now is None else now
        result = BatchResult(batch_id=uuid.uuid4().hex, written_at=now)
        pseudo = [e.with_user(self.pseudonym(e.user_id)) for e in events]
        touched = sorted({e.user_id for e in pseudo})
        tombstone: tuple[ProfileDoc, int, int] = ({"opt_out": True}, 0, 0)  # type: ignore[assignment]
        if prefetch:
            profiles = self.profiles.read(touched)
            items = self._items(e.item_id for e in pseudo)
        else:  # two reads at once: opted-out users (a search) and the items (mostly cached)
            opted_out = self._reader().submit(self.profiles.opted_out, touched)
            items = self._items(e.item_id for e in pseudo)
            profiles = dict.fromkeys(opted_out.result(), tombstone)
        kept: list[Event] = []
        for event in pseudo:
            current = profiles.get(event.user_id)
            if event.opt_out:
                self.opt_out(event.user_id)
                profiles[event.user_id] = tombstone
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
        enriched = self._enrich(kept, items, result)
        entry = _journal_entry(result.batch_id, "pending", now, len(enriched))
        if len(enriched) > chunk_size:  # chunks in flight at once: the journal entry first
            self._journal(result.batch_id, "pending", now, len(enriched))
        created = self._append(
            enriched, now, result, result.batch_id, chunk_size, progress,
            journal=None if len(enriched) > chunk_size else entry,
        )  # fmt: skip
        result.created = created
        result.profiles = profiles if prefetch else None
        return result

    def _enrich(
        self, kept: list[Event], items: Mapping[str, dict | None], result: BatchResult
    ) -> list[tuple[Event, bool]]:
        """Each event with its item's attribute values (`items`: catalog sources by id),
        and whether the item is known. Attributes the client sent are replaced by the
        catalog's, and dropped for an item not in the catalog unless `client_attributes`
        allows this pipeline's source."""
        enriched = []
        for event in kept:
            source = items.get(event.item_id)
            if event.attributes and (source is not None or not self.client_attributes):
                result.ignored_attributes.add(event.event_id)
                result.notes.append(
                    f"event {event.event_id}: the attributes sent with it are ignored: item "
                    "attributes come from the catalog (boost profile key client_attributes "
                    f"can allow them for source {self.source!r} and items not in the catalog)"
                )
            if source is None:
                result.unknown_items.add(event.item_id)
                result.notes.append(
                    f"event {event.event_id}: item {event.item_id} is not in the "
                    "catalog; stored, and the profile learns from it once the item is in "
                    "the catalog and the profile is rebuilt (affinity profile rebuild)"
                )
                if event.attributes and not self.client_attributes:
                    event = event.with_attributes({})
                enriched.append((event, False))
            else:
                attrs = self._attrs_cache.get(event.item_id)
                if attrs is None:
                    attrs = item_attributes(source, self.cfg.attributes)
                    self._attrs_cache[event.item_id] = attrs
                enriched.append((event.with_attributes(attrs), True))
        return enriched

    def fold_batches(self, written: Sequence[BatchResult], now: float | None = None) -> int:
        """Steps 4-5 for batches `write` put in the log: their new events folded together
        (each touched profile read and written once), then each batch marked `done`.

        Returns the events folded. If this raises, the batches stay `pending` and
        `recover()` folds them (nothing is folded twice: see the module docstring)."""
        now = time.time() if now is None else now
        pairs = [(e, b.batch_id) for b in written for e in b.created]
        prefetched = written[0].profiles if len(written) == 1 else None
        folded = self.fold_into_profiles(pairs, now, prefetched=prefetched) if pairs else 0
        for batch in written:
            batch.profiles = None
        self._journal_done(written)
        return folded

    def _journal_done(self, written: Sequence[BatchResult]) -> None:
        """Mark folded batches `done` (one `_bulk` for many). An entry left `pending` by a
        failed write only makes `recover` look at a batch whose profiles already hold it.
        The ids marked done are told to the profile writer, which then drops them from the
        `recent_batches` rings it writes: recovery never folds a `done` batch again."""
        if len(written) == 1:
            b = written[0]
            try:
                self._journal(b.batch_id, "done", b.written_at, len(b.created))
            except Exception as exc:  # the profiles hold the batch: recovery will skip it
                log.warning("batch %s: its journal entry stays pending: %s", b.batch_id, exc)
            else:
                self.profiles.done([b.batch_id])
            return
        body = bytearray()
        for b in written:
            body += line({"index": {"_index": self.settings.indices.journal, "_id": b.batch_id}})
            body += line(_journal_entry(b.batch_id, "done", b.written_at, len(b.created)))
        items = bulk(self.es, bytes(body)) if written else []
        infos = [next(iter(i.values())) for i in items]
        self.profiles.done(str(i["_id"]) for i in infos if 200 <= int(i.get("status", 500)) < 300)
        failed = [i for i in infos if int(i.get("status", 500)) >= 300]
        if failed:
            log.warning("%d journal entries stay pending: %s", len(failed), failed[0])

    def _journal(self, batch: str, state: str, now: float, events: int) -> None:
        body = _journal_entry(batch, state, now, events)
        self.es.index(index=self.settings.indices.journal, id=batch, body=body)

    def _append(
        self,
        enriched: list[tuple[Event, bool]],
        now: float,
        result: BatchResult,
        batch: str,
        chunk_size: int = APPEND_CHUNK,
        progress: Callable[[int], None] | None = None,
        journal: dict[str, Any] | None = None,
    ) -> list[Event]:
        """Create the events in the log, `chunk_size` per `_bulk`; the ones newly created.

        `journal`: the batch's `pending` journal entry, written in the same `_bulk` as a
        single chunk (one round trip and one fsync less per `POST /events` batch)."""
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
                record(self._append_chunk(chunk, now, batch, journal))
            return created
        with ThreadPoolExecutor(SENDERS, thread_name_prefix="affinity-bulk") as pool:
            for sent in pool.map(lambda c: self._append_chunk(c, now, batch), chunks):
                record(sent)
        return created

    def _append_chunk(
        self,
        enriched: Sequence[tuple[Event, bool]],
        now: float,
        batch: str,
        journal: dict[str, Any] | None = None,
    ) -> list[Sent]:
        """One `_bulk` of creates, with the journal entry if given: per event, what happened.

        One member never fails the others: an event that cannot be encoded as JSON is refused
        before anything is sent, and a `_bulk` the engine refuses as a whole (400, for one
        malformed member: an id over 512 bytes, say) is split until the event at fault is
        alone, and only that one is refused, with the engine's reason."""
        index = self.settings.indices.events
        out: list[Sent] = []
        pending: dict[str, tuple[Event, bytes]] = {}
        for event, known in enriched:
            try:
                doc = line(_log_doc(event, known, batch, now, self.source))
            except TypeError as exc:  # orjson: an integer beyond 64 bits, say
                out.append(_refusal(event.event_id, f"it cannot be encoded as JSON ({exc})"))
                continue
            pending[event.event_id] = (
                event,
                line({"create": {"_index": index, "_id": event.event_id}}) + doc,
            )
        entry = None
        if journal is not None:
            target = {"index": {"_index": self.settings.indices.journal, "_id": batch}}
            entry = line(target) + line(journal)
        sent, journal_ok = self._create(pending, entry)
        out += sent
        if not journal_ok and journal is not None:  # rare: events in, journal not; once more
            try:
                self.es.index(index=self.settings.indices.journal, id=batch, body=journal)
            except Exception as exc:  # the events are stored: fold them, don't fail the batch
                log.error(
                    "batch %s: its journal entry could not be written (%s); its events are "
                    "in the log and are folded now, but a crash before that fold would leave "
                    "them out of the profiles until `affinity profile rebuild`",
                    batch,
                    exc,
                )
        return out

    def _create(
        self, pending: dict[str, tuple[Event, bytes]], journal: bytes | None
    ) -> tuple[list[Sent], bool]:
        """`_bulk` the creates of `pending` (event id → the event and its NDJSON lines) and
        the journal entry's lines, resending 429s with back-off; (what happened to each
        event, whether the journal entry was written). A request refused as a whole is
        split (`_split`)."""
        out: list[Sent] = []
        journal_ok = journal is None
        for attempt in range(4):  # 429 (the node's write queue is full): back off, resend those
            if not pending:
                break
            if attempt:
                time.sleep(0.5 * 2**attempt)
            body = bytearray() if journal_ok or journal is None else bytearray(journal)
            for _, lines in pending.values():
                body += lines
            try:
                response = self.es.bulk(
                    body=bytes(body),
                    request_timeout=120,
                    filter_path="items.*._id,items.*.status,items.*.error",
                )
            except RequestError as exc:  # 400 for the whole request: one member is at fault
                sent, ok = self._split(pending, None if journal_ok else journal, exc)
                return out + sent, journal_ok or ok
            retry = {}
            for item in response["items"]:
                if "index" in item:  # the journal entry
                    journal_ok = 200 <= int(item["index"].get("status", 500)) < 300
                    continue
                info = item["create"]
                event_id, status = str(info["_id"]), int(info.get("status", 500))
                if status == 429 and attempt < 3:
                    retry[event_id] = pending[event_id]
                    continue
                event = pending[event_id][0] if 200 <= status < 300 else None
                out.append((event, info, status))
            pending = retry
        return out, journal_ok

    def _split(
        self, pending: dict[str, tuple[Event, bytes]], journal: bytes | None, exc: RequestError
    ) -> tuple[list[Sent], bool]:
        """`pending` sent in two halves, each split again while the engine refuses it whole;
        an event refused alone is refused with the engine's reason. A refusal only ever writes
        nothing, so no event is sent twice."""
        if len(pending) <= 1:
            if not pending:
                raise exc
            return [_refusal(next(iter(pending)), _reason(exc), opensearch=True)], False
        ids = list(pending)
        half = len(ids) // 2
        first, journal_ok = self._create({i: pending[i] for i in ids[:half]}, journal)
        second, _ = self._create({i: pending[i] for i in ids[half:]}, None)
        return first + second, journal_ok

    @staticmethod
    def _record(result: BatchResult, info: Mapping[str, Any], status: int) -> None:
        event_id = str(info.get("_id"))
        if 200 <= status < 300:
            result.outcomes.setdefault(event_id, "accepted")
            result.accepted += 1
            return
        if status == 409:
            result.outcomes.setdefault(event_id, "duplicate")
            result.duplicates += 1
            return
        error = info.get("error", {})
        reason = _error_text(error)
        if status >= 500 or status == 429:  # the engine could not store it now: not its fault
            result.outcomes.setdefault(event_id, "unavailable")
            result.refused.append(
                (
                    event_id,
                    f"OpenSearch could not store it now ({reason}); sending it again is safe",
                )
            )
            return
        result.outcomes.setdefault(event_id, "rejected")
        ours = isinstance(error, dict) and error.get("by") == "affinity"
        result.refused.append((event_id, reason if ours else f"OpenSearch refused it: {reason}"))

    def fold_into_profiles(
        self,
        events: Sequence[tuple[Event, str]],
        now: float,
        prefetched: Mapping[str, Found | None] | None = None,
    ) -> int:
        """Fold (event, batch id) pairs, already in the log, into their users' profiles
        (`ProfileWriter.fold`)."""
        return self.profiles.fold(events, now, prefetched)

    # ------------------------------------------------------------------ recovery and users
    def recover(self, now: float | None = None, min_age_s: float = RECOVERY_AGE_S) -> int:
        """Fold the events of batches a crash left pending (older than min_age_s); how many
        were folded (`recover_round`)."""
        return self.recover_round(now, min_age_s).folded

    def recover_round(
        self, now: float | None = None, min_age_s: float = RECOVERY_AGE_S
    ) -> RecoveryRound:
        """Fold the events of batches a crash left pending, older than min_age_s.

        A pending batch younger than RECOVERY_AGE_S may still be landing: the `_bulk` of a
        process killed mid-write runs on inside the engine. Folding it then, and marking it
        done, would leave its late events in the log and in no profile. So a young batch is
        folded only when all its events are stored; otherwise it stays pending (counted as
        `unsettled`) for a later round."""
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
        total, failed, unsettled = 0, 0, 0
        for entry in stale:  # one batch failing (a refused write) does not hold up the rest
            try:
                folded = self._recover_batch(entry, now)
            except Exception as exc:
                failed += 1
                batch = entry.get("batch_id")
                log.warning("recovery of batch %s failed (%s); retried next round", batch, exc)
                continue
            if folded is None:
                unsettled += 1
            else:
                total += folded
        if failed and failed == len(stale):
            raise RecoveryFailed(f"recovery failed for all {failed} pending batches")
        return RecoveryRound(total, unsettled)

    def _recover_batch(self, entry: Mapping[str, Any], now: float) -> int | None:
        """Fold one pending batch and mark it done; None when it is young and not all of
        its events are stored yet (`recover_round`)."""
        batch = entry["batch_id"]
        sources = helpers.scan(
            self.es,
            index=self.settings.indices.events,
            query={"query": {"term": {"batch_id": batch}}},
        )
        events = [event_from_doc(h["_source"]) for h in sources]
        created = float(entry.get("created", now))
        if now - created < RECOVERY_AGE_S and len(events) < int(entry.get("events", 0)):
            return None
        pairs = [(e, batch) for e in events if not isinstance(e, Rejection)]
        folded = self.fold_into_profiles(pairs, now) if pairs else 0
        self._journal(batch, "done", created, len(pairs))
        return folded

    def prune_journal(self, now: float | None = None, keep_s: float = JOURNAL_KEEP_S) -> int:
        """Delete `done` journal entries older than keep_s; how many were deleted. `pending`
        entries are never deleted: recovery needs them."""
        now = time.time() if now is None else now
        query = {
            "bool": {
                "filter": [
                    {"term": {"state": "done"}},
                    {"range": {"created": {"lt": now - keep_s}}},
                ]
            }
        }
        found = self.es.delete_by_query(
            index=self.settings.indices.journal,
            body={"query": query},
            conflicts="proceed",
            refresh=True,
        )
        return int(found.get("deleted", 0))

    def opt_out(self, pseudonym: str) -> None:
        """Erase the user's events and leave a tombstone profile (opt_out: true)."""
        self.profiles.forget([pseudonym])
        self.erase(pseudonym)
        tomb = to_source(opted_out(_empty(pseudonym, self.cfg), time.time()))
        self.es.index(
            index=self.settings.indices.profiles, id=pseudonym, body=tomb, refresh="wait_for"
        )
        self.profiles.changes.publish([pseudonym])  # every proxy drops its cached profile

    def erase(self, pseudonym: str) -> dict[str, int]:
        """Delete the user's profile and every event; counts of what was deleted."""
        self.profiles.forget([pseudonym])
        # delete_by_query deletes what a search sees: refresh, or a profile or event written
        # within the last second (refresh_interval) outlives the erasure
        self.es.indices.refresh(
            index=[self.settings.indices.events, self.settings.indices.profiles]
        )
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
        self.profiles.changes.publish([pseudonym])  # every proxy drops its cached profile
        return {
            "events": events,
            "profiles": profile,
            "impressions": self._erase_where(self.settings.indices.impressions, pseudonym),
            "retired": self._erase_where(self.settings.indices.retired, pseudonym),
        }

    def _erase_where(self, index: str, pseudonym: str) -> int:
        """Delete the user's documents (`user_id`) from `index`: search impressions, retired
        totals (ingest/retention.py); 0 where there is no such index."""
        self.es.indices.refresh(index=index, ignore_unavailable=True)
        found = self.es.delete_by_query(
            index=index,
            body={"query": {"term": {"user_id": pseudonym}}},
            refresh=True,
            conflicts="proceed",
            ignore=[404],
        )
        return int(found.get("deleted", 0))


Sent = tuple[Event | None, Mapping[str, Any], int]
"""One event's fate in a `_bulk`: the event if it was newly created, its response item, status."""


def _refusal(event_id: str, reason: str, opensearch: bool = False) -> Sent:
    """A refused event as a `_bulk` response item (status 400); `reason` is the engine's, or,
    without `opensearch`, ours (the event was never sent)."""
    error = {"reason": reason} if opensearch else {"reason": reason, "by": "affinity"}
    return None, {"_id": event_id, "status": 400, "error": error}, 400


def _reason(exc: TransportError) -> str:
    """The engine's reason for refusing a request, from its error response."""
    info = exc.info if isinstance(exc.info, dict) else {}
    return _error_text(info.get("error") or exc.error)


def _error_text(error: object) -> str:
    """An engine error object as one line: its reason, and its cause's when it has one
    ("failed to parse field [quantity] ... (Numeric value (3000000000) out of range ...)")."""
    if not isinstance(error, Mapping):
        return str(error)
    reason = str(error.get("reason", error))
    cause = error.get("caused_by")
    if isinstance(cause, Mapping) and cause.get("reason"):
        reason += f" ({str(cause['reason']).splitlines()[0]})"
    return reason


def _log_doc(
    event: Event, known: bool, batch: str, now: float, source: str = "api"
) -> dict[str, Any]:
    """The events-index document: `Event.to_doc` plus what the pipeline adds (`source` is
    stored, not indexed: the rebuild reads it to apply `client_attributes`)."""
    doc = event.to_doc()
    doc["known_item"] = known
    doc["batch_id"] = batch
    doc["ingested_at"] = now
    doc["source"] = source
    return doc


def _journal_entry(batch: str, state: str, created: float, events: int) -> dict[str, Any]:
    return {"batch_id": batch, "state": state, "created": created, "events": events}


def _empty(user: str, cfg: FoldConfig) -> ProfileDoc:
    from rewriter.profiles.fold import empty_profile

    return empty_profile(user, cfg)


def event_from_doc(source: Mapping[str, Any]) -> Event | Rejection:
    """An Event read back from the events log (the shape Event.to_doc writes).

    Events stored before `value` and `quantity` were bounded are read with them capped at
    the bounds (MAX_VALUE, MAX_QUANTITY): they were accepted, so a rebuild keeps them, and
    the profile stays finite."""
    from rewriter.events.event import MAX_QUANTITY, MAX_VALUE, validate

    internal = ("known_item", "batch_id", "folded", "ingested_at", "source")
    raw = {k: v for k, v in source.items() if k not in internal}
    for name, cap in (("value", MAX_VALUE), ("quantity", MAX_QUANTITY)):
        number = raw.get(name)
        if isinstance(number, int | float) and not isinstance(number, bool) and number > cap:
            raw[name] = cap
    types = [str(source.get("type"))]
    return validate(raw, types)
