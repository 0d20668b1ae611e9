"""`POST /events`: user events over HTTP, acknowledged only once they are durable.

Request body: a JSON array of event objects, one JSON object, or NDJSON (one object per line;
also chosen by `Content-Type: application/x-ndjson`). Fields are events/event.py's (`event_id`,
`user_id`, `type`, `item_id`, `timestamp`, ...); an event without `user_id` takes the
request's `X-User-Id`. Types are the keys of the fold profile's `event_weights` (the boost
profile named by AFFINITY_FOLD_PROFILE, else the default one), so custom types are added there.

Response (202): `accepted`, `duplicates` (already stored: a re-sent event changes nothing),
`not_stored` (opted-out users), `rejected`, then `rejections` (each with the event's `index`
in the request, `line` for NDJSON, `field` and `reason`) and `notes` (unknown items, generated
event ids, opt-outs). 400 when nothing in the body is a valid event, 413 for a body over
MAX_BODY_BYTES or MAX_EVENTS_PER_REQUEST events, 429 with Retry-After when the write queue is
full (nothing of that request was stored: send it again), 503 when OpenSearch could not
store the events now: unreachable, or its shards recovering (send the same request again:
event ids make that safe). An event the engine refuses is one rejection, never a 503.

`?wait_for_profiles=true`: answer only after the events are folded into the profiles
(read-your-writes; `folded` in the response says whether the fold succeeded). Without it the
202 comes once the events are durable in the events log, and the profiles follow: within
milliseconds when the server is idle, in folds that cover many requests when it is busy.

Group commit, folding and recovery are ingest/group_commit.py's. Exactly-once across processes:
several server processes (uvicorn workers, replicas) each run a writer. Event ids are the
events index doc ids (create-only: a second delivery is a 409, reported as duplicate and never
folded); profile writes use optimistic concurrency plus each profile's `recent_batches`, so
two processes folding the same user, or a recovery racing a fold, never count a batch twice
(ingest/pipeline.py).

After each fold the proxy's profile cache is invalidated for the folded users, so the next
search in this process reads the new profile; other processes learn of it from the change
feed the fold publishes (profiles/changes.py), within about 100 ms.

With AFFINITY_RETENTION_SERVE on, the writer's recovery thread also runs retention each time
it prunes the journal (`retention_for`; ingest/retention.py), and logs what it deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from rewriter import config
from rewriter.boost.profile import BoostProfile
from rewriter.engine.client import connect
from rewriter.events.event import Event, validate
from rewriter.events.fields import Rejection
from rewriter.ingest.event_files import FoldProfileError, fold_boost
from rewriter.ingest.group_commit import (
    RETRY_AFTER_S,
    GroupCommitter,
    JobResult,
    Overloaded,
    WriteFailed,
)
from rewriter.ingest.pipeline import Pipeline
from rewriter.ingest.retention import Policy, Retention, RetentionError
from rewriter.serve.errors import error_response, json_response
from rewriter.serve.limits import MAX_JSON_DEPTH, json_depth

log = logging.getLogger("affinity.events")

MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_EVENTS_PER_REQUEST = 10_000
ACK_TIMEOUT_S = 60.0


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
            return [_item(i, None, d) for i, d in enumerate(docs)]
    return _ndjson(text)


def _item(index: int, line: int | None, value: object) -> Item:
    """One decoded event; too deeply nested to be an event (or to be shown in a reason):
    an error item."""
    if json_depth(value) > MAX_JSON_DEPTH:
        where = f"line {line}" if line is not None else f"event {index}"
        reason = f"{where} nests objects and arrays more than {MAX_JSON_DEPTH} levels deep"
        return Item(index, line, None, reason)
    return Item(index, line, value)


def _ndjson(text: bytes) -> list[Item]:
    items: list[Item] = []
    for line_no, line in enumerate(text.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            items.append(_item(len(items), line_no, orjson.loads(line)))
        except orjson.JSONDecodeError as exc:
            items.append(Item(len(items), line_no, None, f"line {line_no} is not JSON: {exc}"))
    return items


def validate_items(
    items: Sequence[Item],
    known_types: Sequence[str],
    user_header: str | None,
    now: float,
    only_user: str | None = None,
) -> tuple[list[tuple[Item, Event]], list[dict[str, Any]]]:
    """(valid events with their items, rejections as JSON objects naming field and index).
    `only_user` (a user token's user): events of any other user are rejected."""
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
        if only_user is not None and str(raw.get("user_id")) != only_user:
            result = Rejection("user_id", "a user token sends events of its own user only")
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


# --------------------------------------------------------------------------- HTTP
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
            "reason": f"event was not stored: {reason}",
        }
        return [refused], notes
    if outcome == "not_stored":
        notes.append(f"{where}: not stored: the user has opted out")
    if outcome == "accepted" and event.item_id in result.unknown_items:
        notes.append(
            f"{where}: item {event.item_id} is not in the catalog; stored, and the "
            "profile learns from it once the item is in the catalog and the profile is "
            "rebuilt (affinity profile rebuild)"
        )
    if outcome == "accepted" and sid in result.ignored_attributes:
        notes.append(
            f"{where}: the attributes sent with it are ignored: item attributes come from the "
            "catalog (a boost profile's client_attributes can allow them for items not in it)"
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
        return error_response(503, "affinity_events_unavailable", committer)
    try:
        wait = _wait_for_profiles(request)
        raw = await _read_body(request)
        items = parse_body(raw, request.headers.get("content-type", ""))
        if len(items) > MAX_EVENTS_PER_REQUEST:
            raise BodyError(
                413,
                f"{len(items)} events in one request; the limit is "
                f"{MAX_EVENTS_PER_REQUEST}: split the batch",
            )
    except BodyError as err:
        return error_response(err.status, "affinity_bad_events_body", err.reason)
    valid, rejections = validate_items(
        items,
        committer.known_types,
        request.headers.get("x-user-id"),
        time.time(),
        request.scope.get("affinity.token_user"),  # serve/auth_gate.py TOKEN_USER
    )
    if not valid:
        body = summary(valid, None, rejections)
        _count_rejections(request, body)
        return json_response(body, 400)
    try:
        future = committer.submit([event for _, event in valid], wait_for_profiles=wait)
        result = await asyncio.wait_for(asyncio.wrap_future(future), ACK_TIMEOUT_S)
    except Overloaded as err:
        return error_response(
            429, "affinity_events_overloaded", str(err), {"Retry-After": str(RETRY_AFTER_S)}
        )
    except (WriteFailed, TimeoutError) as err:
        reason = (
            f"the events were not acknowledged ({err or 'timeout'}); send the same "
            "request again: event ids make a resend safe"
        )
        return error_response(503, "affinity_events_not_written", reason)
    body = summary(valid, result, rejections)
    _count_rejections(request, body)
    if wait:  # the fold already dropped these users' cached profiles (on_folded)
        body["folded"] = result.folded
    return json_response(body, 202)


def _count_rejections(request: Request, body: dict[str, Any]) -> None:
    """Rejected events by reason, for /_affinity/metrics (serve/metrics.py)."""
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None and body["rejections"]:
        metrics.count_rejections(body["rejections"])


def _wait_for_profiles(request: Request) -> bool:
    value = request.query_params.get("wait_for_profiles", "false").strip().lower()
    if value in ("", "true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise BodyError(400, f"wait_for_profiles must be true or false, got {value!r}")


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


def _invalidate(app: Starlette, users: set[str]) -> None:
    """Drop `users`' cached profiles in this process's proxy (they were just folded)."""
    state = getattr(app.state, "proxy", None)
    if state is None:
        return
    for user in users:
        state.profiles.invalidate(user)


# --------------------------------------------------------------------------- wiring
def create_committer(
    settings: config.Settings, boosts: Mapping[str, BoostProfile], **options: Any
) -> GroupCommitter:
    """A (not yet started) writer for `settings`, folding with the fold boost profile."""
    boost = fold_boost(settings, boosts=boosts)
    es = connect(settings, timeout=max(settings.timeout, 60.0))
    return GroupCommitter(lambda: Pipeline(es, settings, boost), **options)


def retention_for(app: Starlette) -> Callable[[], None] | None:
    """With AFFINITY_RETENTION_SERVE on: a retention run (ingest/retention.py) with the boost
    profiles and experiments the server has loaded at that moment, logging what it did; the
    writer's recovery thread runs it each time it prunes the journal."""
    settings = app.state.proxy.settings
    if not settings.retention_serve:
        return None
    try:
        policy = Policy.from_settings(settings)
    except RetentionError as exc:
        log.error("AFFINITY_RETENTION_SERVE is on, but %s; this server runs no retention", exc)
        return None
    es = connect(settings, timeout=max(settings.timeout, 60.0))

    def run() -> None:
        state = app.state.proxy
        boosts = state.boost_profiles
        try:
            job = Retention(
                es,
                state.settings,
                boosts,
                fold_boost(state.settings, boosts=boosts),
                experiments=state.experiments,
                boost_errors=state.boost_errors,
            )
            job.run(policy, dry_run=False).log_to(log)
        except (RetentionError, FoldProfileError) as exc:
            log.error("retention did not run: %s", exc)

    return run


def committer_for(app: Starlette) -> GroupCommitter | str:
    """The app's running writer, created and started on first use; a string says why not."""
    found = getattr(app.state, "events", None)
    if found is None:
        state = app.state.proxy
        try:
            found = create_committer(
                state.settings,
                state.boost_profiles,
                on_folded=lambda users: _invalidate(app, users),
                retention=retention_for(app),
            )
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
