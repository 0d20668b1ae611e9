"""The events writer behind `POST /events`: group commit, then folding apart from the ack.

Requests do not write. They enqueue their validated events (`submit`) and await a future.
Writer threads (WRITERS) take the oldest waiting request, linger LINGER_S for others (no
linger when requests already queued up meanwhile) and write all of them with one
`Pipeline.write`: one `_bulk` create into the events index. `_bulk` answers after OpenSearch
has fsynced its translog (`index.translog.durability: request`), so the future resolves, and
the request answers 202, only once its events survive a crash of this process or of the node.

One folder thread folds what the writers wrote (`Pipeline.fold_batches`): every batch written
while the previous fold ran, up to MAX_FOLD_BATCHES, in one read and one write per touched
profile. Under load, folds cover more batches and a busy user's profile is rewritten once per
fold instead of once per request; when idle, a batch is folded as soon as it is written
(milliseconds). A request can ask to be answered only after the fold (`wait_for_profiles`).
A crash between write and fold leaves the batches `pending` in the journal; a recovery thread
runs `Pipeline.recover()` at start and every RECOVER_EVERY_S (exactly-once: ingest/pipeline.py).

Back-pressure: more than `max_pending` events waiting to be written, or more than
`max_unfolded` written but not yet folded, and `submit` raises Overloaded (429): nothing of
that request is stored.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from opensearchpy.exceptions import TransportError

from rewriter.engine.client import EngineUnavailable
from rewriter.events.event import TRACKING_EVENT_TYPES, Event
from rewriter.ingest.event_files import PopularityBuffer, stored_ids
from rewriter.ingest.pipeline import BatchResult, Pipeline

log = logging.getLogger("affinity.events")

LINGER_S = 0.005
MAX_BATCH_EVENTS = 5_000
MAX_PENDING_EVENTS = 50_000
MAX_UNFOLDED_EVENTS = 200_000
MAX_FOLD_BATCHES = 32
"""Batches per fold: each becomes an id in the ring of every profile it touches until it is done
(profile_writes.RING_LIMIT)."""
PROFILE_CACHE = 10_000
"""Profiles the folder remembers as it last wrote them (its next fold of those users reads
nothing; profile_writes.ProfileWriter.current). Up to ~100 MB with 4 KB profiles."""
RECOVER_EVERY_S = 30.0
PRUNE_EVERY_S = 600.0
"""How often the recovery thread deletes old `done` journal entries (Pipeline.prune_journal),
and runs retention when the server was given it (AFFINITY_RETENTION_SERVE)."""
WRITERS = 2
POPULARITY_EVERY_S = 30.0
RETRY_AFTER_S = 1


class Overloaded(Exception):
    """The write queue is full; the request was not enqueued."""


class WriteFailed(Exception):
    """The batch holding a request's events could not be written; nothing is acknowledged."""


@dataclass
class JobResult:
    """Per event of one request: its stored id and outcome; rejection reasons by stored id."""

    ids: list[str]
    outcomes: list[str]
    reasons: dict[str, str] = field(default_factory=dict)
    unknown_items: set[str] = field(default_factory=set)
    ignored_attributes: set[str] = field(default_factory=set)
    """Stored ids of its events whose client-sent attributes were not used."""
    folded: bool = False
    """The events are in the profiles (the request waited for the fold)."""


@dataclass
class _Job:
    events: list[Event]
    ids: list[str]
    future: Future[JobResult]
    wait_for_profiles: bool = False
    enqueued: float = field(default_factory=time.monotonic)


@dataclass
class _Written:
    """A written batch on its way to the folder, with the requests waiting for its fold."""

    batch: BatchResult
    waiting: list[tuple[_Job, JobResult]]


class GroupCommitter:
    """Writer threads, one folder thread and one recovery thread (see the module docstring).

    Each writer has its own pipeline (`make_pipeline()`), so its catalog cache, forgotten
    every `recover_every_s`, is never cleared under another writer; two batches touching one
    user stay exact (the fold's optimistic concurrency retries). `on_folded(users)` runs after
    each fold (the proxy drops those users' cached profiles). `retention()` runs after each
    pruning of the journal (ingest/retention.py).
    """

    def __init__(
        self,
        make_pipeline: Callable[[], Pipeline],
        *,
        writers: int = WRITERS,
        linger_s: float = LINGER_S,
        max_batch: int = MAX_BATCH_EVENTS,
        max_pending: int = MAX_PENDING_EVENTS,
        max_unfolded: int = MAX_UNFOLDED_EVENTS,
        recover_every_s: float = RECOVER_EVERY_S,
        on_folded: Callable[[set[str]], None] | None = None,
        retention: Callable[[], None] | None = None,
    ) -> None:
        self.make_pipeline = make_pipeline
        self.retention = retention
        self.pipeline = make_pipeline()
        self.writers = max(1, writers)
        self.linger_s = linger_s
        self.max_batch = max_batch
        self.max_pending = max_pending
        self.max_unfolded = max_unfolded
        self.recover_every_s = recover_every_s
        self.on_folded = on_folded
        self.batches = 0
        self.folds = 0
        self.recovered = 0
        self._queue: deque[_Job] = deque()
        self._pending = 0
        self._to_fold: deque[_Written] = deque()
        self._unfolded = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._writers_done = False
        self._threads: list[threading.Thread] = []
        self._folder: threading.Thread | None = None
        self._recovery_stop = threading.Event()
        self._next_popularity = time.monotonic() + POPULARITY_EVERY_S
        self._pop_buffer = PopularityBuffer(self.pipeline.cfg)

    @property
    def known_types(self) -> tuple[str, ...]:
        weighted = tuple(self.pipeline.boost.event_weights)
        return weighted + tuple(t for t in TRACKING_EVENT_TYPES if t not in weighted)

    @property
    def pending_events(self) -> int:
        """Events accepted and waiting to be written (for /_affinity/metrics)."""
        return self._pending

    @property
    def unfolded_events(self) -> int:
        """Events written to the log and not yet folded into profiles: the fold lag."""
        return self._unfolded

    @property
    def running(self) -> bool:
        return bool(self._threads) and not self._stopping

    def start(self) -> None:
        with self._cond:
            if self._threads:
                return
            self._stopping = self._writers_done = False
            self._recovery_stop.clear()
            pipelines = [self.pipeline, *(self.make_pipeline() for _ in range(self.writers - 1))]
            self._threads = [
                threading.Thread(
                    target=self._run, args=(p,), name=f"affinity-events-{n}", daemon=True
                )
                for n, p in enumerate(pipelines)
            ]
            folder = self.make_pipeline()
            folder.profile_cache = PROFILE_CACHE
            self._folder = threading.Thread(
                target=self._fold_loop,
                args=(folder,),
                name="affinity-fold",
                daemon=True,
            )
            recovery = threading.Thread(
                target=self._recovery_loop,
                args=(self.make_pipeline(),),
                name="affinity-recovery",
                daemon=True,
            )
            for thread in (*self._threads, self._folder, recovery):
                thread.start()
            self._threads.append(recovery)

    def stop(self, timeout: float = 30.0) -> None:
        """Write what is queued, fold what is written, then end every thread."""
        self._recovery_stop.set()
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            threads, self._threads = self._threads, []
            folder, self._folder = self._folder, None
        for thread in threads:
            thread.join(timeout)
        with self._cond:
            self._writers_done = True
            self._cond.notify_all()
        if folder is not None:
            folder.join(timeout)
        self._maybe_flush_popularity(force=True)

    def submit(self, events: list[Event], wait_for_profiles: bool = False) -> Future[JobResult]:
        """Enqueue one request's events; the future resolves once they are written (or,
        with `wait_for_profiles`, once they are folded into the profiles)."""
        ids = stored_ids(events, self.pipeline.pseudonym)
        job = _Job(list(events), ids, Future(), wait_for_profiles)
        with self._cond:
            if not self.running:
                raise WriteFailed("the events writer is not running (the server is stopping)")
            if self._pending and self._pending + len(events) > self.max_pending:
                raise Overloaded(
                    f"{self._pending} events are waiting to be written (limit "
                    f"{self.max_pending}); nothing of this request was stored: send it again "
                    f"in {RETRY_AFTER_S} s"
                )
            if self._unfolded > self.max_unfolded:
                raise Overloaded(
                    f"{self._unfolded} written events are waiting to be folded into profiles "
                    f"(limit {self.max_unfolded}); nothing of this request was stored: send "
                    f"it again in {RETRY_AFTER_S} s"
                )
            self._queue.append(job)
            self._pending += len(events)
            self._cond.notify_all()
        return job.future

    # ------------------------------------------------------------------ writer threads
    def _run(self, pipeline: Pipeline) -> None:
        next_forget = time.monotonic() + self.recover_every_s
        try:
            while True:
                if time.monotonic() >= next_forget:  # only this thread reads this cache
                    next_forget = time.monotonic() + self.recover_every_s
                    pipeline.forget_catalog()
                self._maybe_flush_popularity()
                jobs = self._take(next_forget)
                if jobs is None:
                    return
                if jobs:
                    self._commit_safely(pipeline, jobs)
        finally:
            pipeline.close()

    def _take(self, next_forget: float) -> list[_Job] | None:
        """The next batch of jobs; [] when housekeeping is due; None when stopped."""
        with self._cond:
            while not self._queue:
                if self._stopping:
                    return None
                wait = min(next_forget, self._next_popularity) - time.monotonic()
                if wait <= 0 or not self._cond.wait(wait):
                    return []
            deadline = self._queue[0].enqueued + self.linger_s
            while self._pending < self.max_batch and not self._stopping:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            if not self._queue:  # another writer took them while this one lingered
                return []
            return self._pop_batch()

    def _pop_batch(self) -> list[_Job]:
        jobs = [self._queue.popleft()]
        size = len(jobs[0].events)
        while self._queue and size + len(self._queue[0].events) <= self.max_batch:
            job = self._queue.popleft()
            jobs.append(job)
            size += len(job.events)
        self._pending -= size
        return jobs

    def _commit_safely(self, pipeline: Pipeline, jobs: list[_Job]) -> None:
        """Commit; an error fails these jobs (503: resend) but never the writer. A write that
        fails for a reason other than the engine's state is retried request by request, so
        only the request that causes it fails, not the others sharing its `_bulk`."""
        try:
            self._commit(pipeline, jobs)
        except Exception as exc:  # the whole batch is unacknowledged; clients resend
            untouched = not any(job.future.done() for job in jobs)
            if len(jobs) > 1 and untouched and not _engine_trouble(exc):
                log.exception(
                    "a write of %d requests failed; writing each alone, so that only the one "
                    "that causes it fails",
                    len(jobs),
                )
                for job in jobs:
                    self._commit_safely(pipeline, [job])
                return
            if _engine_trouble(exc):
                log.error(
                    "a write batch of %d requests was not stored, and they were answered 503 "
                    "(send again): %s",
                    len(jobs),
                    exc,
                )
            else:
                log.exception("the events writer failed on a batch")
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(WriteFailed(f"{exc.__class__.__name__}: {exc}"))

    def _commit(self, pipeline: Pipeline, jobs: list[_Job]) -> None:
        unique: dict[str, Event] = {}
        for job in jobs:
            for event, sid in zip(job.events, job.ids, strict=True):
                unique.setdefault(sid, event)
        batch = pipeline.write(list(unique.values()))
        results = _results(jobs, batch)
        waiting = [
            (job, r)
            for job, r in zip(jobs, results, strict=True)
            if job.wait_for_profiles and "unavailable" not in r.outcomes
        ]
        with self._cond:
            self.batches += 1
            self._to_fold.append(_Written(batch, waiting))
            self._unfolded += len(batch.created)
            self._cond.notify_all()
        for job, result in zip(jobs, results, strict=True):
            if "unavailable" in result.outcomes:  # its stored events are folded all the same
                job.future.set_exception(WriteFailed(_not_now(result)))
            elif not job.wait_for_profiles:
                job.future.set_result(result)
        created = batch.created_of_known_items
        try:  # the batch is written and acknowledged: popularity must not fail it now
            if created:
                self._pop_buffer.add(created)
        except Exception:
            log.exception("popularity of a written batch was not counted (approximate)")

    # ------------------------------------------------------------------ folder thread
    def _fold_loop(self, pipeline: Pipeline) -> None:
        while True:
            with self._cond:
                while not self._to_fold:
                    if self._writers_done:
                        return
                    self._cond.wait(1.0)
                taken = [
                    self._to_fold.popleft()
                    for _ in range(min(MAX_FOLD_BATCHES, len(self._to_fold)))
                ]
            self._fold(pipeline, taken)

    def _fold(self, pipeline: Pipeline, taken: list[_Written]) -> None:
        events = sum(len(w.batch.created) for w in taken)
        try:
            pipeline.fold_batches([w.batch for w in taken])
            folded = True
        except Exception as exc:
            folded = False
            _log_failure(
                exc,
                "folding %d written batches (%d events) failed; they are safe in the events "
                "log, stay pending in the journal, and recovery folds them within %.0f s",
                len(taken),
                events,
                self.recover_every_s,
            )
        with self._cond:
            self._unfolded -= events
            self.folds += 1
        users = set().union(*(w.batch.users for w in taken))
        if self.on_folded is not None and users:
            try:
                self.on_folded(users)
            except Exception:
                log.exception("on_folded failed")
        for written in taken:
            for job, result in written.waiting:
                result.folded = folded
                if not job.future.done():
                    job.future.set_result(result)

    # ------------------------------------------------------------------ housekeeping
    def _maybe_flush_popularity(self, force: bool = False) -> None:
        now = time.monotonic()
        if not (force or self._pop_buffer.due or now >= self._next_popularity):
            return
        self._next_popularity = now + POPULARITY_EVERY_S
        try:
            errors = self._pop_buffer.flush(
                self.pipeline.es, self.pipeline.settings.indices.catalog
            )
        except Exception as exc:
            _log_failure(exc, "popularity update failed; these increments are lost (approximate)")
            return
        for error in errors[:5]:
            log.warning("%s", error)

    def _recovery_loop(self, pipeline: Pipeline) -> None:
        """Its own thread, so a large backlog never stalls acknowledgements. Racing a
        writer on a profile is safe: optimistic concurrency plus `recent_batches`."""
        next_prune = time.monotonic()
        while not self._recovery_stop.is_set():
            try:
                folded = pipeline.recover()
            except Exception as exc:
                _log_failure(
                    exc,
                    "recovery of unfolded events failed; retrying in %.0f s",
                    self.recover_every_s,
                )
            else:
                self.recovered += folded
                if folded:
                    log.warning("recovered %d events left unfolded by an earlier crash", folded)
            if time.monotonic() >= next_prune:
                next_prune = time.monotonic() + PRUNE_EVERY_S
                self._prune(pipeline)
            self._recovery_stop.wait(self.recover_every_s)

    def _prune(self, pipeline: Pipeline) -> None:
        """Old done batches leave the journal; then retention, if the server runs it."""
        try:
            pruned = pipeline.prune_journal()
        except Exception as exc:
            _log_failure(
                exc,
                "deleting old done batches from the journal failed; it only grows "
                "meanwhile, retrying in %.0f s",
                PRUNE_EVERY_S,
            )
        else:
            if pruned:
                log.info("deleted %d old done batches from the journal", pruned)
        if self.retention is None:
            return
        try:
            self.retention()
        except Exception as exc:
            _log_failure(
                exc,
                "retention failed (what it deleted before is consistent); retrying in %.0f s",
                PRUNE_EVERY_S,
            )


def _engine_trouble(exc: BaseException) -> bool:
    """The engine could not be reached or read (every request of a batch would fail alike)."""
    return isinstance(exc, EngineUnavailable | TransportError | OSError)


def _log_failure(exc: BaseException, message: str, *args: object) -> None:
    """A background task failed: when the engine is down or refusing, say so in one line
    with the engine's reason (the operator's cue is the engine, not our code); anything
    else is a bug, logged with its traceback."""
    if _engine_trouble(exc):
        log.error(message + " (the engine: %s)", *args, exc)
    else:
        log.exception(message, *args)


def _not_now(result: JobResult) -> str:
    """Why a request is answered 503 when the engine could not store some of its events."""
    ids = [sid for sid, o in zip(result.ids, result.outcomes, strict=True) if o == "unavailable"]
    return f"{len(ids)} of its events could not be stored now: {result.reasons.get(ids[0], '')}"


def _results(jobs: Sequence[_Job], batch: BatchResult) -> list[JobResult]:
    """Each job's outcomes in a written batch."""
    reasons = dict(batch.refused)
    claimed: set[str] = set()
    out = []
    for job in jobs:
        outcomes = []
        for sid in job.ids:
            outcome = batch.outcomes.get(sid, "rejected")
            if sid in claimed and outcome in ("accepted", "not_stored"):
                outcome = "duplicate"  # the same event twice in one commit: first one wins
            claimed.add(sid)
            outcomes.append(outcome)
        unknown = {e.item_id for e in job.events} & batch.unknown_items
        ignored = set(job.ids) & batch.ignored_attributes
        out.append(JobResult(job.ids, outcomes, reasons, unknown, ignored))
    return out
