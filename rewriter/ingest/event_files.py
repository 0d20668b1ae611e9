"""Events from files into the log and the profiles: `affinity ingest events FILE`.

Parsing is events/formats.py's, the write path ingest/pipeline.py's; this module picks the
boost profile events are folded with, batches parsed events (`BATCH_SIZE`), runs
`Pipeline.ingest` per batch, adds the batch's item popularity to the catalog, and keeps the
counts and every rejection with its line number.

Popularity is approximate, not exactly-once: the forward-decayed mass of *newly created*
events (`profiles.popularity_updates`; duplicates add nothing) is summed per item in a
`PopularityBuffer` and added to each catalog item's `popularity` with a scripted `_bulk`
update (`retry_on_conflict`) every POPULARITY_FLUSH_EVENTS events and at the end. An update
retried after a timeout may count twice (at-least-once per flush), and a crash before a flush
loses the buffered increments (the events themselves are safe in the log). Popularity only
orders cold-start results, where that error does not matter.
"""

from __future__ import annotations

import gc
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from opensearchpy import OpenSearch, helpers

from rewriter import config
from rewriter.boost.profile import BoostProfile, default_boost_name, load_boost_profiles
from rewriter.events import formats
from rewriter.events.event import Event
from rewriter.events.fields import Rejection
from rewriter.ingest.pipeline import RECOVERY_AGE_S, BatchResult, Pipeline
from rewriter.profiles.doc import ProfileError
from rewriter.profiles.fold import FoldConfig, popularity_updates

EVENT_FORMATS = ("jsonl", "csv", "segment", "ubi", "movielens")
BATCH_SIZE = 5_000
"""Events per `_bulk` request."""
WINDOW = 100_000
"""Events folded into profiles at once (written in BATCH_SIZE batches before), so a profile
is read and rewritten once per window rather than once per batch."""
READ_AHEAD = 50_000
"""Events read and sorted by user before they are cut into batches: a batch then touches
fewer users (its opt-out check and the fold read fewer profiles), while writing starts
soon after the import does."""
MAX_BATCHES_PER_FOLD = 32
"""A fold covers at most this many batches: a profile remembers the ids of the batches in flight
for its user (profile_writes.RING_LIMIT), so fewer batches per fold keep its ring short."""
POPULARITY_FLUSH_EVENTS = 1_000_000
"""Popularity increments are summed over this many events before they are written (each
write is a scripted update of a catalog item, which costs the engine about as much as
indexing the item again)."""

POPULARITY_SCRIPT = (
    "double old = ctx._source.popularity == null ? 0.0 : ctx._source.popularity;"
    " ctx._source.popularity = old + params.add;"
)


class FoldProfileError(ValueError):
    """The boost profile to fold with is missing or cannot fold these events."""


def fold_boost(
    settings: config.Settings,
    name: str | None = None,
    fmt: str | None = None,
    boosts: Mapping[str, BoostProfile] | None = None,
) -> BoostProfile:
    """The boost profile whose event weights and half-life fold events into profiles.

    Precedence: `name` (--boost-profile), AFFINITY_FOLD_PROFILE, `movielens` for the MovieLens
    format (its ratings are `rating_high`/`rating_low`), then `default_boost_name`.
    """
    boosts = boosts if boosts is not None else load_boost_profiles(settings.boost_dir)
    movielens = fmt == "movielens" and "movielens" in boosts
    fallback = "movielens" if movielens else default_boost_name(boosts)
    wanted = name or settings.fold_profile or fallback
    if wanted not in boosts:
        known = ", ".join(sorted(boosts)) or f"none in {settings.boost_dir}"
        raise FoldProfileError(
            f"boost profile {wanted!r} is not loaded (known: {known}); pass --boost-profile NAME "
            "or set AFFINITY_FOLD_PROFILE to one of them"
        )
    boost = boosts[wanted]
    if fmt == "movielens":
        missing = [t for t in formats.MOVIELENS_EVENT_TYPES if t not in boost.event_weights]
        if missing:
            raise FoldProfileError(
                f"boost profile {wanted!r} has no event weight for {missing[0]!r}, so MovieLens "
                "ratings would add nothing to profiles; use --boost-profile movielens"
            )
    return boost


def guess_format(path: Path) -> str:
    """The events format from the file name: ratings.csv is MovieLens, *.csv CSV, else JSONL."""
    if path.name == "ratings.csv":
        return "movielens"
    return "csv" if path.suffix.lower() == ".csv" else "jsonl"


def parse_events(
    lines: Iterable[str],
    fmt: str,
    known_types: Collection[str],
    mapping: formats.FieldMapping | None = None,
) -> formats.Parsed:
    """(line, Event | Rejection) pairs from `lines` in format `fmt`."""
    if mapping is not None and fmt != "csv":
        raise formats.MappingError(f"--mapping applies to the csv format, not to {fmt}")
    if fmt == "jsonl":
        return formats.parse_jsonl(lines, known_types)
    if fmt == "csv":
        return formats.parse_csv(lines, mapping, known_types)
    if fmt == "segment":
        return formats.parse_segment(lines, known_types)
    if fmt == "ubi":
        return formats.parse_ubi(lines, known_types)
    if fmt == "movielens":
        return formats.parse_movielens_ratings(lines)
    raise ValueError(f"unknown events format {fmt!r}; use one of {', '.join(EVENT_FORMATS)}")


@dataclass
class EventsIngestResult:
    """Counts of one import; rejections as `line N: reason`."""

    accepted: int = 0
    duplicates: int = 0
    not_stored: int = 0
    folded: int = 0
    rejected: list[str] = field(default_factory=list)
    unknown_items: set[str] = field(default_factory=set)
    unknown_item_events: int = 0
    ignored_attributes: int = 0
    """Events whose item attributes were not used (attributes come from the catalog)."""
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.rejected


Lined = list[tuple[int, Event]]


def batches(
    parsed: formats.Parsed, size: int, window: int = WINDOW
) -> Iterator[tuple[Lined, list[Rejection]]]:
    """Parsed pairs in chunks of `size` events: (events with their lines, rejections).

    Up to `window` events are read ahead and stably sorted by user before they are cut into
    batches, so a batch touches as few profiles as possible (each touched profile is one read
    and one write per batch). Folding is order-independent, and each user's events keep
    their file order.
    """
    pending: Lined = []
    rejections: list[Rejection] = []
    for line_no, result in parsed:
        if isinstance(result, Rejection):
            rejections.append(
                result if result.line else Rejection(result.field, result.reason, line_no)
            )
            continue
        pending.append((line_no, result))
        if len(pending) >= max(window, size):
            yield from _cut(pending, size, rejections)
            pending, rejections = [], []
    if pending or rejections:
        yield from _cut(pending, size, rejections)


def _cut(
    pending: Lined, size: int, rejections: list[Rejection]
) -> Iterator[tuple[Lined, list[Rejection]]]:
    ordered = sorted(pending, key=lambda pair: pair[1].user_id)
    chunks = [ordered[i : i + size] for i in range(0, len(ordered), size)] or [[]]
    yield chunks[0], rejections
    for chunk in chunks[1:]:
        yield chunk, []


def stored_ids(events: Sequence[Event], pseudonym: Callable[[str], str]) -> list[str]:
    """The id each event is stored under (a generated id is derived from the pseudonym,
    which `pseudonym` gives for a raw user id: `Pipeline.pseudonym`)."""
    return [
        e.with_user(pseudonym(e.user_id)).event_id if e.event_id_generated else e.event_id
        for e in events
    ]


def write_popularity(
    es: OpenSearch, catalog: str, masses: Mapping[str, float]
) -> tuple[int, list[str]]:
    """Add `masses` (item id → forward mass) to the catalog items' `popularity`.

    Returns (items updated, errors). Items missing from the catalog are skipped silently:
    the events path already reported them as unknown.
    """
    actions = (
        {
            "_op_type": "update",
            "_index": catalog,
            "_id": item,
            "retry_on_conflict": 5,
            "script": {"source": POPULARITY_SCRIPT, "lang": "painless", "params": {"add": add}},
        }
        for item, add in masses.items()
    )
    updated, errors = 0, []
    for ok, item in helpers.streaming_bulk(
        es, actions, chunk_size=2000, raise_on_error=False, raise_on_exception=False
    ):
        info = item.get("update", {})
        if ok:
            updated += 1
        elif info.get("status") != 404:
            errors.append(f"item {info.get('_id')}: popularity not updated: {info.get('error')}")
    return updated, errors


class PopularityBuffer:
    """Popularity increments summed over batches and written every `flush_events` events.

    Items recur across batches, so summing first turns many scripted updates into one per
    item. Thread-safe. What is buffered is lost if the process dies before `flush`
    (see the module docstring: popularity is at-least-once per flush, not exactly-once).
    """

    def __init__(self, cfg: FoldConfig, flush_events: int = POPULARITY_FLUSH_EVENTS) -> None:
        self.cfg = cfg
        self.flush_events = flush_events
        self._masses: dict[str, float] = defaultdict(float)
        self._events = 0
        self._lock = threading.Lock()

    def add(self, events: Sequence[Event]) -> None:
        """Buffer the popularity of newly created events of known items."""
        masses = popularity_updates(events, self.cfg)
        with self._lock:
            for item, mass in masses.items():
                self._masses[item] += mass
            self._events += len(events)

    @property
    def due(self) -> bool:
        return self._events >= self.flush_events

    def flush(self, es: OpenSearch, catalog: str) -> list[str]:
        """Write what is buffered; returns errors (already logged nowhere: print them)."""
        with self._lock:
            masses, self._masses, self._events = dict(self._masses), defaultdict(float), 0
        return write_popularity(es, catalog, masses)[1] if masses else []


def _count(
    pipeline: Pipeline, lined: Lined, batch: BatchResult, result: EventsIngestResult
) -> list[Event]:
    """Add one written batch to `result`; returns its newly created events of known items."""
    result.accepted += batch.accepted
    result.duplicates += batch.duplicates
    result.folded += batch.folded
    result.not_stored += sum(1 for o in batch.outcomes.values() if o == "not_stored")
    result.unknown_items |= batch.unknown_items
    result.ignored_attributes += len(batch.ignored_attributes)
    if batch.refused:
        events = [e for _, e in lined]
        ids = stored_ids(events, pipeline.pseudonym)
        line_of = {sid: line for sid, (line, _) in zip(ids, lined, strict=True)}
        for sid, why in batch.refused:
            result.rejected.append(f"line {line_of.get(sid, '?')}: event {sid}: {why}")
    known = batch.created_of_known_items
    result.unknown_item_events += len(batch.created) - len(known)
    return known


def ingest_events(
    pipeline: Pipeline,
    parsed: formats.Parsed,
    progress: Callable[[int], None] = lambda n: None,
    batch_size: int = BATCH_SIZE,
    window: int = WINDOW,
) -> EventsIngestResult:
    """Every parsed event through the pipeline; every rejection with its line.

    A pipeline of three stages on two cores: this thread parses; as soon as `batch_size`
    events are parsed, `Pipeline.write` puts them in the log (two writes in flight); after
    every `window` events, `Pipeline.fold_batches` folds the window's batches into the
    profiles at once (each touched profile read and written once per window; folds run one
    after the other). Parsing runs at most two folds ahead, so about three windows of
    events are in memory at most. Popularity is buffered and written every
    POPULARITY_FLUSH_EVENTS events and at the end. Python's cyclic garbage collector runs
    less often meanwhile (see `gc_quiet`).
    """
    result = EventsIngestResult()
    popularity = PopularityBuffer(pipeline.cfg)
    catalog = pipeline.settings.indices.catalog
    per_window = max(1, min(window // max(1, batch_size), MAX_BATCHES_PER_FOLD))

    def write(lined: Lined) -> BatchResult:
        batch = pipeline.write([e for _, e in lined])
        progress(len(lined))
        return batch

    def fold(writes: list[Future[BatchResult]], before: Future[int] | None) -> int:
        written = [w.result() for w in writes]  # submitted earlier: never waits on itself
        if before is not None:
            before.result()  # folds in order: two would race for the same profiles
        return pipeline.fold_batches(written)

    Writes = list[tuple[Lined, Future[BatchResult]]]

    def collect(writes: Writes, folded: Future[int]) -> None:
        for lined, future in writes:
            created = _count(pipeline, lined, future.result(), result)
            try:
                popularity.add(created)
            except ProfileError as exc:  # the events are stored and folded: warn, go on
                if not any(w.startswith("popularity") for w in result.warnings):
                    result.warnings.append(f"popularity not counted: {exc}")
        result.folded += folded.result()
        if popularity.due:
            result.warnings += popularity.flush(pipeline.es, catalog)

    with gc_quiet(), ThreadPoolExecutor(2, thread_name_prefix="ingest") as pool:
        current: Writes = []
        folds: deque[tuple[Writes, Future[int]]] = deque()

        def close_window() -> None:
            before = folds[-1][1] if folds else None
            futures = [f for _, f in current]
            folds.append((list(current), pool.submit(fold, futures, before)))
            current.clear()
            while len(folds) > 2:
                collect(*folds.popleft())

        for lined, rejections in batches(parsed, batch_size, READ_AHEAD):
            result.rejected += [str(r) for r in rejections]
            progress(len(rejections))
            if lined:
                current.append((lined, pool.submit(write, lined)))
            if len(current) >= per_window:
                close_window()
        if current:
            close_window()
        while folds:
            collect(*folds.popleft())
    result.warnings += popularity.flush(pipeline.es, catalog)
    if result.ignored_attributes:
        result.warnings.append(
            f"{result.ignored_attributes} events carried item attributes, which were ignored: "
            "attributes come from the catalog (a boost profile's client_attributes can allow "
            f"them for source {pipeline.source!r} and items not in the catalog)"
        )
    _fold_interrupted(pipeline, result)
    return result


def _fold_interrupted(pipeline: Pipeline, result: EventsIngestResult) -> None:
    """Fold the batches an interrupted earlier run (a killed import or server) stored but
    did not fold: re-running the import finds their events already stored (duplicates, not
    folded again), so without this they would reach profiles only at a server's recovery.
    Safe beside live writers: a profile records the batches folded into it. A batch whose
    last events may still be landing (`Pipeline.recover_round`) is waited for, at most until
    it is RECOVERY_AGE_S old."""
    deadline = time.monotonic() + RECOVERY_AGE_S + 5.0
    recovered = 0
    while True:
        round_ = pipeline.recover_round(min_age_s=0.0)
        recovered += round_.folded
        if not round_.unsettled or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    if recovered:
        result.folded += recovered
        result.warnings.append(
            f"folded {recovered} events an interrupted earlier run had stored but not folded"
        )


@contextmanager
def gc_quiet(young: int = 100_000, old: int = 1_000) -> Iterator[None]:
    """Collect young objects every `young` allocations instead of every 700, and the oldest
    generation 100 times less often.

    An import allocates millions of short-lived, acyclic objects (parsed lines, events,
    documents, `_bulk` responses) while a window of them stays alive; at the default
    thresholds the collector traverses that window again and again, which measured as 40%
    of an import's Python CPU. Restored on exit.
    """
    before = gc.get_threshold()
    gc.set_threshold(young, before[1], old)
    try:
        yield
    finally:
        gc.set_threshold(*before)
