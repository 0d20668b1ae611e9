"""Folding logged events into the profiles index: reads, optimistic writes, `_bulk` I/O.

`ProfileWriter.fold` takes (event, batch id) pairs that are already in the events log,
folds them per user (profiles.fold) and writes each touched profile once, whole, with
if_seq_no/if_primary_term: a profile changed by anyone else in between makes the write
conflict, and the next round reads it again. Each profile keeps the ids of the batches folded
into it (`recent_batches`), so a batch is never folded twice into one profile, even when two
processes, or a recovery after a crash, race for it (ingest/pipeline.py has the whole protocol).

With `cache_size` > 0 the writer remembers the profiles it last wrote, with their seq_no
(the `POST /events` folder does): folding into them again needs no realtime read, which
costs the engine as much as the write.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, defaultdict, deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
from opensearchpy import OpenSearch
from opensearchpy.exceptions import TransportError

from rewriter import config
from rewriter.engine.client import MGET_CHUNK, DocumentsUnavailable, mget_docs
from rewriter.events.event import Event
from rewriter.profiles.changes import ChangeLog
from rewriter.profiles.doc import ProfileDoc, UnreadableProfile, check_numbers, decode, to_source
from rewriter.profiles.fold import FoldConfig, HalfLifeMismatch, fold

log = logging.getLogger("affinity.profiles")

RING_LIMIT = 4096
"""Batch ids one profile may remember. Only batches still pending in the journal (a crash,
or a fold in flight) need to be recognized, and a writer drops every other id (`done` ones,
its own and others' it looks up in the journal, and ids the journal never had), so a ring
holds the batches in flight for that user: a few dozen when several importers share users.
Past this limit the oldest ids are dropped with a warning: recovering one of those batches
after a crash would fold it into this profile a second time."""
DONE_MEMORY = 100_000
"""Batch ids marked `done` that a writer remembers, to drop from the rings it writes."""
SENDERS = 2
BULK_429_RETRIES = 4  # ~4 s of back-off in all
"""`_bulk` requests in flight at once: one is built while the engine indexes another."""
PROFILE_CHUNK = 500
"""Profiles per `_bulk` request."""
MAX_ROUNDS = 10

Found = tuple[ProfileDoc, int, int]
"""A profile with its _seq_no and _primary_term."""
Pairs = list[tuple[Event, str]]
"""Events with the id of the batch each was written in."""


def line(obj: object) -> bytes:
    """One NDJSON line. Append it to a bytearray right away: keeping thousands of small
    orjson results alive to join them later measured 5x slower (allocator churn)."""
    return orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE)


def journal_states(es: OpenSearch, journal: str, batches: Iterable[str]) -> dict[str, str | None]:
    """batch id → its journal state (`pending`, `done`), or None when the journal has no
    entry for it (realtime mget)."""
    return {
        d["_id"]: (d.get("_source") or {}).get("state") if d.get("found") else None
        for d in mget_docs(es, journal, batches, _source_includes="state")
    }


def _all_shards_answered(response: Mapping[str, Any], index: str) -> None:
    """Raise DocumentsUnavailable when a search answered from only some shards: a shard
    still recovering after a restart is left out silently (`_shards` says so, not an error),
    and what it holds would be taken for absent."""
    shards = response.get("_shards") or {}
    total = int(shards.get("total", 0))
    answered = int(shards.get("successful", 0)) + int(shards.get("skipped", 0))
    if answered < total:
        raise DocumentsUnavailable(
            f"OpenSearch searched only {answered} of {total} shards of {index}; the others are "
            "probably starting or recovering. Nothing was decided from the partial answer: "
            "the operation can be retried once the cluster is healthy again (GET "
            "_cluster/health)."
        )


def read_profiles(es: OpenSearch, index: str, users: Iterable[str]) -> dict[str, Found | None]:
    """Profiles by user, decoded, with seq_no/primary_term (realtime mget); None where the
    user has none."""
    return {
        d["_id"]: (decode(d.get("_source", {})), d["_seq_no"], d["_primary_term"])  # type: ignore[misc]
        if d.get("found")
        else None
        for d in mget_docs(es, index, users, realtime=True)
    }


def cas_action(
    index: str, user: str, doc: Mapping[str, Any], found: Found | None
) -> dict[str, Any]:
    """A `helpers.bulk` action writing `doc` (stored form) as `user`'s document: `create`
    when `found` is None, else `index` only if it is still the version `found` read."""
    action: dict[str, Any] = {"_index": index, "_id": user, "_source": to_source(doc)}
    if found is None:
        action["_op_type"] = "create"
    else:
        action.update(_op_type="index", if_seq_no=found[1], if_primary_term=found[2])
    return action


def bulk(es: OpenSearch, body: bytes) -> list[dict[str, Any]]:
    """One `_bulk` request; its response items (id, status, error, seq_no, primary term).
    A request the engine refuses whole with 429 (its write queue is full: nothing of it was
    executed) is sent again after a back-off, BULK_429_RETRIES times."""
    for attempt in range(BULK_429_RETRIES + 1):
        try:
            response = es.bulk(
                body=body,
                request_timeout=120,
                filter_path="items.*._id,items.*.status,items.*.error,items.*._seq_no,"
                "items.*._primary_term",
            )
        except TransportError as exc:
            if exc.status_code != 429 or attempt == BULK_429_RETRIES:
                raise
            time.sleep(0.25 * 2**attempt)
            continue
        return list(response.get("items", []))
    raise AssertionError("the loop returns or raises")


def bulk_all(es: OpenSearch, bodies: Iterator[bytes]) -> Iterator[list[dict[str, Any]]]:
    """Each `_bulk` body sent, SENDERS in flight; the response items of each, in order."""
    first = next(bodies, None)
    if first is None:
        return
    second = next(bodies, None)
    if second is None:  # one request (the usual `POST /events` batch): no threads
        yield bulk(es, first)
        return
    with ThreadPoolExecutor(SENDERS, thread_name_prefix="affinity-bulk") as pool:
        inflight = deque([pool.submit(bulk, es, first), pool.submit(bulk, es, second)])
        for body in bodies:
            yield inflight.popleft().result()
            inflight.append(pool.submit(bulk, es, body))
        while inflight:
            yield inflight.popleft().result()


class ProfileWriter:
    """Reads and writes the profiles index for one fold configuration."""

    def __init__(
        self, es: OpenSearch, settings: config.Settings, cfg: FoldConfig, cache_size: int = 0
    ) -> None:
        self.es = es
        self.index = settings.indices.profiles
        self.journal = settings.indices.journal
        self.cfg = cfg
        self.cache_size = cache_size
        self._written: OrderedDict[str, Found] = OrderedDict()
        self._done: OrderedDict[str, None] = OrderedDict()
        self.mismatched: dict[str, int] = {}
        """Profiles built with another half-life: user → events not folded into it."""
        self.quarantined: dict[str, str] = {}
        """Profiles that cannot be folded (a stored number is unusable): user → what is
        wrong. A later successful write (after a rebuild) takes the user out."""
        self._lock = threading.Lock()
        self.changes = ChangeLog(es, settings.indices.changes)

    # ------------------------------------------------------------------ reads
    def read(self, users: Sequence[str]) -> dict[str, Found | None]:
        """Profiles by user, decoded, with seq_no/primary_term (realtime mget)."""
        return read_profiles(self.es, self.index, users)

    def opted_out(self, users: Sequence[str]) -> set[str]:
        """The users among `users` whose profile is an opt-out tombstone.

        A search, not a realtime read (a realtime GET of a profile just rewritten costs the
        engine far more). Tombstones are written, and removed, with refresh=wait_for, so an
        opt-out or opt-in that has returned is already visible here."""
        found: set[str] = set()
        for start in range(0, len(users), MGET_CHUNK):
            chunk = list(users[start : start + MGET_CHUNK])
            query = {"bool": {"filter": [{"ids": {"values": chunk}}, {"term": {"opt_out": True}}]}}
            response = self.es.search(
                index=self.index,
                body={"query": query, "size": len(chunk), "_source": False},
                filter_path="hits.hits._id,_shards",
            )
            _all_shards_answered(response, self.index)
            found.update(h["_id"] for h in response.get("hits", {}).get("hits", []))
        return found

    def current(self, users: Sequence[str]) -> dict[str, Found | None]:
        """Profiles to fold into: as this writer last wrote them where it remembers them
        (a write by anyone else since then changed their seq_no, so writing over them
        conflicts and the retry reads them afresh), else read (realtime)."""
        with self._lock:
            known = {u: self._written[u] for u in users if u in self._written}
        missing = [u for u in users if u not in known]
        return {**known, **(self.read(missing) if missing else {})}

    def forget(self, users: Iterable[str]) -> None:
        """Stop remembering these profiles (erased, opted out, or written by someone else)."""
        with self._lock:
            for user in users:
                self._written.pop(user, None)

    def done(self, batches: Iterable[str]) -> None:
        """These batches are `done` in the journal (durably): recovery will never fold them
        again, so the profiles written from now on need not remember them."""
        with self._lock:
            for batch in batches:
                self._done[batch] = None
            while len(self._done) > DONE_MEMORY:
                self._done.popitem(last=False)

    def _learn_done(self, found: Iterable[Found | None], folding: set[str]) -> None:
        """Look up, in the journal, the batches in these profiles' rings that this writer
        does not know to be done (other processes' batches); remember the ones recovery will
        never fold (done, or not in the journal), so the rings written next drop them and
        keep only batches still pending."""
        unknown = {
            b
            for entry in found
            if entry is not None
            for b in entry[0].get("recent_batches", ())
            if b not in self._done and b not in folding
        }
        if unknown:
            states = journal_states(self.es, self.journal, unknown)
            self.done(b for b, state in states.items() if state != "pending")

    def _mismatch(self, exc: HalfLifeMismatch, events: int) -> None:
        """Log a profile that cannot take events with these fold settings, once per user."""
        with self._lock:
            first = exc.user not in self.mismatched
            self.mismatched[exc.user] = self.mismatched.get(exc.user, 0) + events
            while len(self.mismatched) > DONE_MEMORY:
                self.mismatched.pop(next(iter(self.mismatched)))
        if first:
            log.error(
                "%s. Its %d new events stay in the events log, not in the profile, until "
                "then; this process skips the user's later events the same way (logged once).",
                exc,
                events,
            )

    def _quarantine(self, user: str, problem: str, events: int) -> None:
        """Leave a profile that cannot be folded as it is, log it once (the batch's other
        profiles are folded, and the batch is done: nothing retries it forever)."""
        with self._lock:
            first = user not in self.quarantined
            self.quarantined[user] = problem
            while len(self.quarantined) > DONE_MEMORY:
                self.quarantined.pop(next(iter(self.quarantined)))
        if first:
            log.error(
                "profile %s cannot be folded: %s. It is quarantined: its %d new events stay in "
                "the events log, not in the profile (this process skips the user's later "
                "events the same way, logged once), the other profiles are folded, and searches "
                "for this user are served without personalization. Repair it from the events "
                "log: affinity profile rebuild --pseudonym %s",
                user,
                problem,
                events,
                user,
            )

    def _remember(self, user: str, doc: ProfileDoc, seq_no: object, term: object) -> None:
        if not self.cache_size or not isinstance(seq_no, int) or not isinstance(term, int):
            return
        with self._lock:
            self._written[user] = (doc, seq_no, term)
            self._written.move_to_end(user)
            while len(self._written) > self.cache_size:
                self._written.popitem(last=False)

    # ------------------------------------------------------------------ writes
    def fold(
        self,
        events: Sequence[tuple[Event, str]],
        now: float,
        prefetched: Mapping[str, Found | None] | None = None,
    ) -> int:
        """Fold (event, batch id) pairs, already in the log, into their users' profiles;
        returns how many events were folded (events of batches a profile already holds,
        and of opted-out users, are not).

        `prefetched`: the profiles as just read (with seq_no/primary_term), saving the first
        round a read; a profile that changed since makes its write conflict, and the retry
        reads it again."""
        by_user: dict[str, Pairs] = defaultdict(list)
        for event, batch in events:
            by_user[event.user_id].append((event, batch))
        pending = dict(by_user)
        folded: list[int] = []
        for _round in range(MAX_ROUNDS):
            if not pending:
                break
            pending = self._round(pending, now, folded, prefetched)
            prefetched = None
        self.changes.publish(u for u in by_user if u not in pending)  # proxies' caches
        if pending:
            raise RuntimeError(
                f"profiles of {len(pending)} users kept changing under us; "
                "their batch stays pending and `recover` will fold it"
            )
        return sum(folded)

    def _round(
        self,
        by_user: dict[str, Pairs],
        now: float,
        folded: list[int],
        prefetched: Mapping[str, Found | None] | None = None,
    ) -> dict[str, Pairs]:
        """One read-fold-write pass; the users whose write conflicted (for the next)."""
        if prefetched is not None and all(u in prefetched for u in by_user):
            current = prefetched
        else:
            current = self.current(sorted(by_user))
        self._learn_done(current.values(), {b for pairs in by_user.values() for _, b in pairs})
        planned: dict[str, int] = {}
        sources: dict[str, ProfileDoc] = {}

        def bodies() -> Iterator[bytes]:  # folded lazily: the next while one is written
            body, count = bytearray(), 0
            for user, pairs in by_user.items():
                write = self._write(user, pairs, current.get(user), now)
                if write is None:
                    continue
                header, source, planned[user] = write
                if self.cache_size:
                    sources[user] = source  # type: ignore[assignment]
                body += line(header)
                body += line(to_source(source))
                count += 1
                if count >= PROFILE_CHUNK:
                    yield bytes(body)
                    body, count = bytearray(), 0
            if count:
                yield bytes(body)

        retry: dict[str, Pairs] = {}
        for items in bulk_all(self.es, bodies()):
            for item in items:
                info = next(iter(item.values()))
                user, status = str(info["_id"]), int(info.get("status", 500))
                if 200 <= status < 300:
                    folded.append(planned[user])
                    if self.quarantined:
                        with self._lock:
                            self.quarantined.pop(user, None)
                    if user in sources:
                        seq, term = info.get("_seq_no"), info.get("_primary_term")
                        self._remember(user, sources[user], seq, term)
                elif status == 409:
                    self.forget([user])
                    retry[user] = by_user[user]
                else:
                    self.forget([user])
                    raise RuntimeError(f"profile {user} could not be written: {info.get('error')}")
        return retry

    def _write(
        self, user: str, pairs: Sequence[tuple[Event, str]], found: Found | None, now: float
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
        done = self._done
        ring = [b for b in ring if b not in done]  # a `done` batch is never folded again
        try:
            updated = dict(fold(doc, [e for e, _ in new], self.cfg, now=now))
            check_numbers(updated)  # never write what the next fold or search cannot read
        except HalfLifeMismatch as exc:  # this profile only: the batch's other users fold
            self._mismatch(exc, len(new))
            return None
        except UnreadableProfile as exc:  # likewise
            self._quarantine(user, exc.problem, len(new))
            return None
        except (ValueError, TypeError, KeyError, ArithmeticError) as exc:  # a shape fold
            self._quarantine(user, f"{exc.__class__.__name__}: {exc}", len(new))  # can't read
            return None
        updated.pop("recent_event_ids", None)  # superseded by recent_batches
        batches = list(dict.fromkeys(b for _, b in new))
        ring = [*batches, *ring]
        if len(ring) > RING_LIMIT:
            log.warning(
                "profile %s has %d batches pending at once; it forgets the oldest %d, and a "
                "recovery of one of those would fold it twice into this profile",
                user,
                len(ring),
                len(ring) - RING_LIMIT,
            )
        updated["recent_batches"] = ring[:RING_LIMIT]
        target: dict[str, Any] = {"_index": self.index, "_id": user}
        if doc is None:
            return {"create": target}, updated, len(new)
        target.update(if_seq_no=seq, if_primary_term=term)
        return {"index": target}, updated, len(new)
