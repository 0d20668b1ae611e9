"""`POST /events`: user events over HTTP, acknowledged only once they are durable.

Request body: a JSON array of event objects, one JSON object, or NDJSON (one object per line;
also chosen by `Content-Type: application/x-ndjson`). Fields are events.py's (`event_id`,
`user_id`, `type`, `item_id`, `timestamp`, ...); an event without `user_id` takes the
request's `X-User-Id`. Types are the keys of the fold profile's `event_weights` (the boost
profile named by AFFINITY_FOLD_PROFILE, else the default one), so custom types are added there.

Response (202): `accepted`, `duplicates` (already stored: a re-sent event changes nothing),
`not_stored` (opted-out users), `rejected`, then `rejections` (each with the event's `index`
in the request, `line` for NDJSON, `field` and `reason`) and `notes` (unknown items, generated
event ids, opt-outs). 400 when nothing in the body is a valid event, 413 for a body over
MAX_BODY_BYTES or MAX_EVENTS_PER_REQUEST events, 429 with Retry-After when the write queue is
full (nothing of that request was stored: send it again), 503 when OpenSearch refused the
write (send it again: event ids make that safe).

Group commit. Requests do not write. They validate, enqueue their events to the process's one
writer thread and await their own result. The writer takes the first waiting request, lingers
LINGER_S for others (no linger when requests already queued up while it was busy) and sends
all of them through `Pipeline.ingest` together: one `_bulk` create into the events index, one
profile fold. `_bulk` answers after OpenSearch has fsynced its translog (the default
`index.translog.durability: request`), so the 202 means the events survive a crash of this
process or of the node. The queue is bounded (MAX_PENDING_EVENTS): beyond it, 429.

Exactly-once across processes. Several server processes (uvicorn workers, replicas) each run
a writer. Event ids are the events index doc ids (create-only: a second delivery is a 409,
reported as duplicate and never folded); profile writes use optimistic concurrency plus each
profile's `recent_batches`, so two processes folding the same user, or a recovery racing a
fold, never count a batch twice (pipeline.py). A crash between the events write and the fold
leaves the batch `pending` in the journal; every writer runs `Pipeline.recover()` at startup
and every RECOVER_EVERY_S, which folds pending batches older than `pipeline.RECOVERY_AGE_S`.

After a write the proxy's profile cache is invalidated for the request's users, so the next
search in this process reads the new profile (other processes: within the cache TTL).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from rewriter import config, privacy
from rewriter import engine as engine_mod
from rewriter.boost_profiles import BoostProfile
from rewriter.events import Event, Rejection, validate
from rewriter.events_ingest import FoldProfileError, PopularityBuffer, fold_boost, stored_ids
from rewriter.pipeline import BatchResult, Pipeline

log = logging.getLogger("affinity.events")

JSON_TYPE = "application/json; charset=UTF-8"
MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_EVENTS_PER_REQUEST = 10_000
LINGER_S = 0.005
MAX_BATCH_EVENTS = 5_000
MAX_PENDING_EVENTS = 50_000
RECOVER_EVERY_S = 30.0
WRITERS = 2
POPULARITY_EVERY_S = 5.0
RETRY_AFTER_S = 1
ACK_TIMEOUT_S = 60.0


class Overloaded(Exception):
    """The write queue is full; the request was not enqueued."""


class WriteFailed(Exception):
    """The batch holding a request's events could not be written; nothing is acknowledged."""


# --------------------------------------------------------------------------- body parsing
class BodyError(Exception):
    """The body as a whole is unusable (not JSON, empty, too large)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Item:
    """One element of the request: its position, its NDJSON line, and the decoded JSON."""

    index: int
    line: int | None
    value: object
    error: str | None = None


def parse_body(raw: bytes, content_type: str = "") -> list[Item]:
    """The request body as items: a JSON array, one JSON object, or NDJSON lines."""
    text = raw.strip()
    if not text:
        raise BodyError(400, "the body is empty; send a JSON array of events or NDJSON")
    if "ndjson" not in content_type and text[:1] in (b"[", b"{"):
        try:
            doc = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            if text[:1] == b"[":
                raise BodyError(400, f"the body is not a valid JSON array: {exc}") from None
        else:
            docs = doc if isinstance(doc, list) else [doc]
            return [Item(i, None, d) for i, d in enumerate(docs)]
    return _ndjson(text)


def _ndjson(text: bytes) -> list[Item]:
    items: list[Item] = []
    for line_no, line in enumerate(text.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            items.append(Item(len(items), line_no, orjson.loads(line)))
        except orjson.JSONDecodeError as exc:
            items.append(Item(len(items), line_no, None, f"line {line_no} is not JSON: {exc}"))
    return items


def validate_items(
    items: Sequence[Item], known_types: Sequence[str], user_header: str | None, now: float
) -> tuple[list[tuple[Item, Event]], list[dict[str, Any]]]:
    """(valid events with their items, rejections as JSON objects naming field and index)."""
    valid: list[tuple[Item, Event]] = []
    rejections: list[dict[str, Any]] = []
    for item in items:
        if item.error is not None:
            rejections.append(_rejection(item, Rejection("event", item.error)))
            continue
        if not isinstance(item.value, dict):
            kind = type(item.value).__name__
            rejections.append(
                _rejection(item, Rejection("event", f"event must be a JSON object, got {kind}"))
            )
            continue
        raw = item.value
        if user_header and raw.get("user_id") in (None, ""):
            raw = {**raw, "user_id": user_header}
        result = validate(raw, known_types, now=now)
        if isinstance(result, Rejection):
            rejections.append(_rejection(item, result, raw.get("event_id")))
        else:
            valid.append((item, result))
    return valid, rejections


def _rejection(item: Item, rejection: Rejection, event_id: object = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "index": item.index,
        "field": rejection.field,
        "reason": rejection.reason,
    }
    if item.line is not None:
        out["line"] = item.line
    if isinstance(event_id, str | int) and not isinstance(event_id, bool):
        out["event_id"] = str(event_id)
    return out


# --------------------------------------------------------------------------- group commit
@dataclass
class JobResult:
    """Per event of one request: its stored id and outcome; rejection reasons by stored id."""

    ids: list[str]
    outcomes: list[str]
    users: set[str] = field(default_factory=set)
    reasons: dict[str, str] = field(default_factory=dict)
    unknown_items: set[str] = field(default_factory=set)


@dataclass
class _Job:
    events: list[Event]
    ids: list[str]
    users: set[str]
    future: Future[JobResult]
    enqueued: float = field(default_factory=time.monotonic)


class GroupCommitter:
    """Writer threads that write concurrent submissions together through the pipeline.

    `submit` never blocks: it enqueues or raises Overloaded. A free writer takes the oldest
    waiting submission, lingers `linger_s` after it (less if `max_batch` events are waiting),
    then writes up to `max_batch` events (always at least one whole submission) in one
    `Pipeline.ingest`, resolves each submission's future, and buffers item popularity
    (written every POPULARITY_EVERY_S). With `writers` > 1, a batch is written while the
    next one forms: OpenSearch and Python wait on each other less (two batches touching one
    user stay exact: the fold's optimistic concurrency retries). Each writer has its own
    pipeline (`make_pipeline()`), so its catalog cache, forgotten every `recover_every_s`, is
    never cleared under another writer. One more thread runs `Pipeline.recover()` at start
    and every `recover_every_s`.
    """

    def __init__(
        self,
        make_pipeline: Callable[[], Pipeline],
        *,
        writers: int = WRITERS,
        linger_s: float = LINGER_S,
        max_batch: int = MAX_BATCH_EVENTS,
        max_pending: int = MAX_PENDING_EVENTS,
        recover_every_s: float = RECOVER_EVERY_S,
    ) -> None:
        self.make_pipeline = make_pipeline
        self.pipeline = make_pipeline()
        self.writers = max(1, writers)
        self.linger_s = linger_s
        self.max_batch = max_batch
        self.max_pending = max_pending
        self.recover_every_s = recover_every_s
        self.batches = 0
        self.recovered = 0
        self._queue: deque[_Job] = deque()
        self._pending = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self._recovery_stop = threading.Event()
        self._next_popularity = time.monotonic() + POPULARITY_EVERY_S
        self._pop_buffer = PopularityBuffer(self.pipeline.cfg)

    @property
    def known_types(self) -> tuple[str, ...]:
        return tuple(self.pipeline.boost.event_weights)

    @property
    def running(self) -> bool:
        return bool(self._threads) and not self._stopping

    def start(self) -> None:
        with self._cond:
            if self._threads:
                return
            self._stopping = False
            self._recovery_stop.clear()
            pipelines = [self.pipeline, *(self.make_pipeline() for _ in range(self.writers - 1))]
            self._threads = [
                threading.Thread(
                    target=self._run, args=(p,), name=f"affinity-events-{n}", daemon=True
                )
                for n, p in enumerate(pipelines)
            ]
            self._threads.append(
                threading.Thread(
                    target=self._recovery_loop,
                    args=(self.make_pipeline(),),
                    name="affinity-recovery",
                    daemon=True,
                )
            )
            for thread in self._threads:
                thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Write what is queued, then end the writer and recovery threads."""
        self._recovery_stop.set()
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            threads, self._threads = self._threads, []
        for thread in threads:
            thread.join(timeout)
        self._maybe_flush_popularity(force=True)

    def submit(self, events: list[Event]) -> Future[JobResult]:
        """Enqueue one request's events; the future resolves once they are written."""
        secret = self.pipeline.secret
        users = {e.user_id: privacy.pseudonymize(e.user_id, secret) for e in events}
        job = _Job(list(events), stored_ids(events, secret), set(users.values()), Future())
        with self._cond:
            if not self.running:
                raise WriteFailed("the events writer is not running (the server is stopping)")
            if self._pending and self._pending + len(events) > self.max_pending:
                raise Overloaded(
                    f"{self._pending} events are waiting to be written (limit "
                    f"{self.max_pending}); nothing of this request was stored: send it again "
                    f"in {RETRY_AFTER_S} s"
                )
            self._queue.append(job)
            self._pending += len(events)
            self._cond.notify()
        return job.future

    # ------------------------------------------------------------------ writer threads
    def _run(self, pipeline: Pipeline) -> None:
        next_forget = time.monotonic() + self.recover_every_s
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
        """Commit; an error fails these jobs (503: resend) but never the writer."""
        try:
            self._commit(pipeline, jobs)
        except Exception as exc:  # the whole batch is unacknowledged; clients resend
            log.exception("the events writer failed on a batch")
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(WriteFailed(f"{exc.__class__.__name__}: {exc}"))

    def _commit(self, pipeline: Pipeline, jobs: list[_Job]) -> None:
        unique: dict[str, Event] = {}
        for job in jobs:
            for event, sid in zip(job.events, job.ids, strict=True):
                unique.setdefault(sid, event)
        batch = pipeline.ingest(list(unique.values()))
        with self._cond:
            self.batches += 1
        _resolve(jobs, batch)
        created = [e for e in batch.created if e.item_id not in batch.unknown_items]
        if created:
            self._pop_buffer.add(created)

    def _maybe_flush_popularity(self, force: bool = False) -> None:
        now = time.monotonic()
        if not (force or self._pop_buffer.due or now >= self._next_popularity):
            return
        self._next_popularity = now + POPULARITY_EVERY_S
        try:
            errors = self._pop_buffer.flush(
                self.pipeline.es, self.pipeline.settings.indices.catalog
            )
        except Exception:
            log.exception("popularity update failed; these increments are lost (approximate)")
            return
        for error in errors[:5]:
            log.warning("%s", error)

    def _recovery_loop(self, pipeline: Pipeline) -> None:
        """Its own thread, so a large backlog never stalls acknowledgements. Racing a
        writer on a profile is safe: optimistic concurrency plus `recent_batches`."""
        while not self._recovery_stop.is_set():
            try:
                folded = pipeline.recover()
            except Exception:
                log.exception(
                    "recovery of unfolded events failed; retrying in %.0f s", self.recover_every_s
                )
            else:
                self.recovered += folded
                if folded:
                    log.warning("recovered %d events left unfolded by an earlier crash", folded)
            self._recovery_stop.wait(self.recover_every_s)


def _resolve(jobs: Sequence[_Job], batch: BatchResult) -> None:
    reasons: dict[str, str] = {}
    for line in batch.rejected:
        sid, _, reason = line.removeprefix("event ").partition(": ")
        reasons[sid] = reason
    claimed: set[str] = set()
    for job in jobs:
        outcomes = []
        for sid in job.ids:
            outcome = batch.outcomes.get(sid, "rejected")
            if sid in claimed and outcome in ("accepted", "not_stored"):
                outcome = "duplicate"  # the same event twice in one commit: first one wins
            claimed.add(sid)
            outcomes.append(outcome)
        unknown = {e.item_id for e in job.events} & batch.unknown_items
        job.future.set_result(JobResult(job.ids, outcomes, job.users, reasons, unknown))


# --------------------------------------------------------------------------- HTTP
def _json(body: Mapping[str, Any], status: int, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, media_type=JSON_TYPE, headers=headers)


def _error(status: int, kind: str, reason: str, headers: dict[str, str] | None = None) -> Response:
    return _json({"error": {"type": kind, "reason": reason}, "status": status}, status, headers)


def summary(
    valid: Sequence[tuple[Item, Event]], result: JobResult | None, rejections: list[dict]
) -> dict[str, Any]:
    """The response body: counts, rejections with index/field/reason, and notes."""
    rejections = list(rejections)
    notes: list[str] = []
    outcomes = result.outcomes if result else []
    if result is not None:
        for (item, event), sid, outcome in zip(valid, result.ids, outcomes, strict=True):
            refused, note = _explain(item, event, sid, outcome, result)
            rejections += refused
            notes += note
    return {
        "accepted": outcomes.count("accepted"),
        "duplicates": outcomes.count("duplicate"),
        "not_stored": outcomes.count("not_stored"),
        "rejected": len(rejections),
        "rejections": sorted(rejections, key=lambda r: r["index"]),
        "notes": notes,
    }


def _explain(
    item: Item, event: Event, sid: str, outcome: str, result: JobResult
) -> tuple[list[dict[str, Any]], list[str]]:
    """(rejection, notes) for one written event."""
    where = f"event {sid} (index {item.index})"
    notes: list[str] = []
    if outcome == "rejected":
        reason = result.reasons.get(sid, "it was not acknowledged")
        refused = {
            "index": item.index,
            "field": "event",
            "event_id": sid,
            "reason": f"event was refused by OpenSearch: {reason}",
        }
        return [refused], notes
    if outcome == "not_stored":
        notes.append(f"{where}: not stored: the user has opted out")
    if outcome == "accepted" and event.item_id in result.unknown_items:
        notes.append(
            f"{where}: item {event.item_id} is not in the catalog; stored, but the "
            "profile learns nothing from it until the item exists"
        )
    if event.event_id_generated and outcome in ("accepted", "duplicate"):
        notes.append(
            f"{where}: no event_id was sent; generated {sid} from its content "
            "(send your own ids to tell identical events apart)"
        )
    return [], notes


async def post_events(request: Request) -> Response:
    """POST /events (see the module docstring)."""
    committer = committer_for(request.app)
    if isinstance(committer, str):
        return _error(503, "affinity_events_unavailable", committer)
    try:
        raw = await _read_body(request)
        items = parse_body(raw, request.headers.get("content-type", ""))
        if len(items) > MAX_EVENTS_PER_REQUEST:
            raise BodyError(
                413,
                f"{len(items)} events in one request; the limit is "
                f"{MAX_EVENTS_PER_REQUEST}: split the batch",
            )
    except BodyError as err:
        return _error(err.status, "affinity_bad_events_body", err.reason)
    valid, rejections = validate_items(
        items, committer.known_types, request.headers.get("x-user-id"), time.time()
    )
    if not valid:
        return _json(summary(valid, None, rejections), 400)
    try:
        future = committer.submit([event for _, event in valid])
        result = await asyncio.wait_for(asyncio.wrap_future(future), ACK_TIMEOUT_S)
    except Overloaded as err:
        return _error(
            429, "affinity_events_overloaded", str(err), {"Retry-After": str(RETRY_AFTER_S)}
        )
    except (WriteFailed, TimeoutError) as err:
        reason = (
            f"the events were not acknowledged ({err or 'timeout'}); send the same "
            "request again: event ids make a resend safe"
        )
        return _error(503, "affinity_events_not_written", reason)
    _invalidate(request.app, result)
    return _json(summary(valid, result, rejections), 202)


async def _read_body(request: Request) -> bytes:
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise BodyError(
            413, f"the body is {length} bytes; the limit is {MAX_BODY_BYTES}: split the batch"
        )
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise BodyError(413, f"the body exceeds {MAX_BODY_BYTES} bytes: split the batch")
        chunks.append(chunk)
    return b"".join(chunks)


def _invalidate(app: Starlette, result: JobResult) -> None:
    state = getattr(app.state, "proxy", None)
    if state is None:
        return
    for user in result.users:
        state.profiles.invalidate(user)


# --------------------------------------------------------------------------- wiring
def create_committer(
    settings: config.Settings, boosts: Mapping[str, BoostProfile], **options: Any
) -> GroupCommitter:
    """A (not yet started) writer for `settings`, folding with the fold boost profile."""
    boost = fold_boost(settings, boosts=boosts)
    es = engine_mod.client(settings, timeout=max(settings.timeout, 60.0))
    return GroupCommitter(lambda: Pipeline(es, settings, boost), **options)


def committer_for(app: Starlette) -> GroupCommitter | str:
    """The app's running writer, created and started on first use; a string says why not."""
    found = getattr(app.state, "events", None)
    if found is None:
        state = app.state.proxy
        try:
            found = create_committer(state.settings, state.boost_profiles)
            found.start()
        except (FoldProfileError, config.SecretMissing) as exc:
            found = f"POST /events is unavailable: {exc}"
        app.state.events = found
    return found


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    """Start the writer (and its startup recovery) with the server; drain it on shutdown."""
    committer = committer_for(app)
    if isinstance(committer, str):
        log.warning("%s", committer)
    yield
    if isinstance(committer, GroupCommitter):
        await asyncio.to_thread(committer.stop)


ROUTES = [Route("/events", post_events, methods=["POST"])]
