"""POST /events pieces without an engine: body parsing, validation, group commit, overload."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import replace
from types import SimpleNamespace

import pytest

from rewriter import privacy
from rewriter.boost.profile import BoostProfile
from rewriter.events.event import Event
from rewriter.ingest.pipeline import BatchResult
from rewriter.profiles.fold import fold_config
from rewriter.serve.events_endpoint import (
    BodyError,
    GroupCommitter,
    Item,
    Overloaded,
    WriteFailed,
    parse_body,
    summary,
    validate_items,
)

SECRET = b"unit-secret-0123456789abcdef"
T = 1_714_564_800.0


def raw(n: int, **extra: object) -> dict[str, object]:
    return {
        "event_id": f"e{n}",
        "user_id": "u1",
        "type": "click",
        "item_id": "i1",
        "timestamp": T,
        **extra,
    }


class FakePipeline:
    """Records each write and fold; every event is created (or a duplicate when seen
    before). `gate` holds writes, `fold_gate` holds folds; `fold_fails` makes folds raise."""

    def __init__(
        self,
        fail: bool = False,
        gate: threading.Event | None = None,
        fold_gate: threading.Event | None = None,
    ) -> None:
        self.boost = BoostProfile(name="default")
        self.cfg = fold_config(self.boost)
        self.secret = SECRET
        self.es = None
        self.settings = SimpleNamespace(indices=SimpleNamespace(catalog="catalog"))
        self.calls: list[list[str]] = []
        self.folds: list[list[str]] = []
        self.stored: set[str] = set()
        self.fail = fail
        self.fold_fails = False
        self.gate = gate
        self.fold_gate = fold_gate
        self.entered = 0
        self.fold_entered = 0
        self.closed = False
        self.pruned = 0

    def write(self, events: Sequence[Event], now: float | None = None) -> BatchResult:
        self.entered += 1
        if self.gate is not None:
            self.gate.wait(5)
        if self.fail:
            raise ConnectionError("engine down")
        result = BatchResult(batch_id=f"b{len(self.calls)}")
        stored = [e.with_user(privacy.pseudonymize(e.user_id, SECRET)) for e in events]
        self.calls.append([e.event_id for e in stored])
        if any(e.item_id == "poison" for e in stored):  # a failure no one foresaw
            raise ValueError("poisoned")
        for event in stored:
            if event.item_id == "unmappable":  # what OpenSearch says of a bad document
                result.outcomes.setdefault(event.event_id, "rejected")
                result.refused.append((event.event_id, "OpenSearch refused it: bad: x"))
                continue
            if event.item_id == "busy":  # what OpenSearch says when its shard is recovering
                result.outcomes.setdefault(event.event_id, "unavailable")
                result.refused.append((event.event_id, "OpenSearch could not store it now"))
                continue
            new = event.event_id not in self.stored
            self.stored.add(event.event_id)
            result.outcomes.setdefault(event.event_id, "accepted" if new else "duplicate")
            result.unknown_items.add(event.item_id)  # keeps popularity (and its I/O) out
            if new:
                result.created.append(event)
        return result

    def pseudonym(self, raw: str) -> str:
        return privacy.pseudonymize(raw, SECRET)

    def fold_batches(self, written: Sequence[BatchResult], now: float | None = None) -> int:
        self.fold_entered += 1
        if self.fold_gate is not None:
            self.fold_gate.wait(5)
        if self.fold_fails:
            raise ConnectionError("engine down while folding")
        self.folds.append([b.batch_id for b in written])
        return sum(len(b.created) for b in written)

    def recover(self) -> int:
        return 0

    def prune_journal(self) -> int:
        self.pruned += 1
        return 0

    def forget_catalog(self) -> None:
        return None

    def close(self) -> None:
        self.closed = True


def pipelines(gate: threading.Event | None = None) -> tuple[list[FakePipeline], Callable]:
    """A factory for GroupCommitter that keeps every pipeline it makes (one per thread)."""
    made: list[FakePipeline] = []

    def make() -> FakePipeline:
        made.append(FakePipeline(gate=gate))
        return made[-1]

    return made, make


def until(condition: Callable[[], bool], what: str) -> None:
    """Wait (up to 5 s) for a thread to get somewhere, instead of sleeping a guessed time."""
    deadline = time.monotonic() + 5
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.005)


def events(*ns: int) -> list[Event]:
    valid, rejections = validate_items(parse_body(orjson_array(ns)), ("click",), None, T)
    assert not rejections
    return [e for _, e in valid]


def orjson_array(ns: Sequence[int]) -> bytes:
    import orjson

    return orjson.dumps([raw(n) for n in ns])


# --------------------------------------------------------------------------- parsing
def test_body_forms() -> None:
    assert [i.value for i in parse_body(b'[{"a": 1}, 2]')] == [{"a": 1}, 2]
    assert [i.value for i in parse_body(b'  {"a": 1}\n')] == [{"a": 1}]
    items = parse_body(b'{"a": 1}\n\n{"a": 2}\n', "application/x-ndjson")
    assert [(i.index, i.line, i.value) for i in items] == [(0, 1, {"a": 1}), (1, 3, {"a": 2})]
    sniffed = parse_body(b'{"a": 1}\n{"a": 2}')  # not one JSON document: NDJSON
    assert [i.line for i in sniffed] == [1, 2]
    broken = parse_body(b'{"a": 1}\n{nope', "application/x-ndjson")
    assert broken[1].error is not None and broken[1].error.startswith("line 2 is not JSON")


@pytest.mark.parametrize("body", [b"", b"   \n", b"[1, 2"])
def test_unusable_bodies_are_400(body: bytes) -> None:
    with pytest.raises(BodyError) as err:
        parse_body(body)
    assert err.value.status == 400


def test_validation_names_field_index_and_line() -> None:
    body = (
        b'{"event_id": "a", "type": "click", "item_id": "i", "timestamp": 1714564800}\n'
        b'{"event_id": "b", "user_id": "u", "type": "jump", "item_id": "i", "timestamp": 1}\n'
        b"[1]\n"
    )
    valid, rejections = validate_items(parse_body(body, "x-ndjson"), ("click",), "hdr", T)
    assert [e.user_id for _, e in valid] == ["hdr"]  # X-User-Id fills a missing user_id
    assert [(r["index"], r["line"], r["field"], r["event_id"]) for r in rejections[:1]] == [
        (1, 2, "type", "b")
    ]
    assert rejections[1]["field"] == "event" and "JSON object" in rejections[1]["reason"]


def test_future_events_are_refused() -> None:
    items = parse_body(orjson_array([1]).replace(b"1714564800.0", b"1814564800.0"))
    _, rejections = validate_items(items, ("click",), None, T)
    assert rejections and rejections[0]["field"] == "timestamp"


# --------------------------------------------------------------------------- group commit
def test_concurrent_submissions_share_one_write() -> None:
    gate = threading.Event()
    pipeline = FakePipeline(gate=gate)
    committer = GroupCommitter(lambda: pipeline, writers=1, linger_s=0.05)  # type: ignore
    committer.start()
    try:
        first = committer.submit(events(0))
        until(lambda: pipeline.entered == 1, "the writer holds the first submission")
        rest = [committer.submit(events(n)) for n in range(1, 6)]
        gate.set()
        results = [f.result(5) for f in [first, *rest]]
    finally:
        committer.stop()
    assert all(r.outcomes == ["accepted"] for r in results)
    assert [len(c) for c in pipeline.calls] == [1, 5]  # five requests, one write
    assert committer.batches == 2


def test_the_same_event_twice_in_one_commit_is_a_duplicate() -> None:
    pipeline = FakePipeline()
    committer = GroupCommitter(lambda: pipeline, writers=1, linger_s=0.05)  # type: ignore
    committer.start()
    try:
        a = committer.submit(events(1, 1))
        b = committer.submit(events(1))
        ra, rb = a.result(5), b.result(5)
    finally:
        committer.stop()
    assert ra.outcomes == ["accepted", "duplicate"]
    assert rb.outcomes == ["duplicate"]
    assert pipeline.calls == [[ra.ids[0]]]
    pairs = [(Item(i, None, {}), e) for i, e in enumerate(events(1, 1))]
    body = summary(pairs, ra, [])
    assert (body["accepted"], body["duplicates"]) == (1, 1)


def test_a_refused_event_is_reported_with_opensearch_s_reason() -> None:
    pipeline = FakePipeline()
    committer = GroupCommitter(lambda: pipeline, writers=1, linger_s=0.0)  # type: ignore
    committer.start()
    try:
        bad = [e.with_attributes({}) for e in events(1, 2)]
        bad[1] = replace(bad[1], item_id="unmappable")
        result = committer.submit(bad).result(5)
    finally:
        committer.stop()
    assert result.outcomes == ["accepted", "rejected"]
    assert result.reasons == {"e2": "OpenSearch refused it: bad: x"}
    batch = BatchResult(refused=[("e2", "OpenSearch refused it: bad: x")])
    assert batch.rejected == ["event e2: OpenSearch refused it: bad: x"]


def test_an_import_names_the_line_of_a_refused_event() -> None:
    from rewriter.ingest.event_files import EventsIngestResult, _count

    lined = list(enumerate(events(1, 2), start=7))
    batch = BatchResult(refused=[("e2", "OpenSearch refused it: bad: x")])
    result = EventsIngestResult()
    _count(FakePipeline(), lined, batch, result)  # type: ignore[arg-type]
    assert result.rejected == ["line 8: event e2: OpenSearch refused it: bad: x"]


def test_a_failed_write_fails_its_submissions_and_the_writer_goes_on() -> None:
    pipeline = FakePipeline(fail=True)
    committer = GroupCommitter(lambda: pipeline)  # type: ignore[arg-type,return-value]
    committer.start()
    try:
        with pytest.raises(WriteFailed, match="engine down"):
            committer.submit(events(1)).result(5)
        pipeline.fail = False
        assert committer.submit(events(2)).result(5).outcomes == ["accepted"]
    finally:
        committer.stop()


def _two_requests_in_one_write(first: list[Event], second: list[Event]) -> tuple[Future, Future]:
    """`first` and `second` submitted while the only writer is held, so that they are
    written together in one batch; the futures of both."""
    gate = threading.Event()
    pipeline = FakePipeline(gate=gate)
    committer = GroupCommitter(lambda: pipeline, writers=1, linger_s=0.0)  # type: ignore
    committer.start()
    try:
        held = committer.submit(events(1))
        until(lambda: pipeline.entered == 1, "the writer holds the first submission")
        futures = committer.submit(first), committer.submit(second)
        gate.set()
        held.result(5)
        for future in futures:
            future.exception(5)
    finally:
        committer.stop()
    assert len(pipeline.calls[1]) == len(first) + len(second)  # one write for both
    return futures


def test_a_request_that_fails_a_shared_write_fails_alone() -> None:
    """A write failing for something in one request (not the engine's state) is retried
    request by request: only that request is answered 503."""
    poisoned = [replace(e, item_id="poison") for e in events(2)]
    bad, good = _two_requests_in_one_write(poisoned, events(3, 4))
    with pytest.raises(WriteFailed, match="poisoned"):
        bad.result(0)
    assert good.result(0).outcomes == ["accepted", "accepted"]


def test_events_the_engine_could_not_store_now_fail_only_their_request() -> None:
    """An event the engine answers 5xx for is not refused (not its fault) but not stored:
    its request is answered 503 (send again), the requests sharing the write are not."""
    busy = [replace(events(2)[0], item_id="busy"), events(5)[0]]
    unlucky, lucky = _two_requests_in_one_write(busy, events(3, 4))
    with pytest.raises(WriteFailed, match="1 of its events could not be stored now"):
        unlucky.result(0)
    assert lucky.result(0).outcomes == ["accepted", "accepted"]


def test_a_full_queue_refuses_instead_of_dropping() -> None:
    gate = threading.Event()
    pipeline = FakePipeline(gate=gate)
    committer = GroupCommitter(lambda: pipeline, writers=1, linger_s=0.0, max_pending=2)  # type: ignore
    committer.start()
    try:
        held = committer.submit(events(1))
        until(lambda: pipeline.entered == 1, "the writer holds the first submission")
        queued = committer.submit(events(2, 3))
        with pytest.raises(Overloaded, match="send it again"):
            committer.submit(events(4))
        gate.set()
        assert held.result(5).outcomes == ["accepted"]
        assert queued.result(5).outcomes == ["accepted", "accepted"]
    finally:
        committer.stop()


def test_submit_after_stop_is_refused() -> None:
    made, make = pipelines()

    committer = GroupCommitter(make, writers=2)  # type: ignore[arg-type]
    committer.start()
    committer.stop()
    assert sum(p.closed for p in made) == 2  # each writer closes its pipeline (its read thread)
    with pytest.raises(WriteFailed, match="not running"):
        committer.submit(events(1))


def test_the_recovery_thread_prunes_the_journal_at_start() -> None:
    made, make = pipelines()

    committer = GroupCommitter(make, writers=1)  # type: ignore[arg-type]
    committer.start()
    try:
        until(lambda: sum(p.pruned for p in made) == 1, "the journal is pruned once")
    finally:
        committer.stop()


def test_retention_runs_after_each_pruning_and_a_failure_stops_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    made, make = pipelines()
    runs: list[int] = []

    def retention() -> None:
        runs.append(sum(p.pruned for p in made))
        raise ConnectionError("engine down")

    committer = GroupCommitter(make, writers=1, retention=retention)  # type: ignore[arg-type]
    with caplog.at_level("ERROR", logger="affinity.events"):
        committer.start()
        try:
            until(lambda: runs == [1], "retention runs once the journal is pruned")
            until(lambda: "retention failed" in caplog.text, "the failure is logged")
            assert committer.running and committer.submit(events(1)).result(5).outcomes
        finally:
            committer.stop()


def test_import_batches_group_users_and_keep_lines() -> None:
    from dataclasses import replace

    from rewriter.events.fields import Rejection
    from rewriter.ingest.event_files import batches

    parsed: list[tuple[int, Event | Rejection]] = [
        (n + 1, e if n % 2 else replace(e, user_id="u0")) for n, e in enumerate(events(*range(10)))
    ]
    parsed.insert(3, (99, Rejection("type", "type is bad")))
    out = list(batches(iter(parsed), size=4, window=100))
    assert [len(b) for b, _ in out] == [4, 4, 2]
    assert [r.line for r in out[0][1]] == [99] and out[1][1] == []
    users = [e.user_id for b, _ in out for _, e in b]
    assert users == sorted(users)  # grouped by user
    lines_of_u0 = [line for b, _ in out for line, e in b if e.user_id == "u0"]
    assert lines_of_u0 == [1, 3, 5, 7, 9]  # each user's events keep their file order


def test_two_writers_write_two_batches_at_once() -> None:
    gate = threading.Event()
    made, make = pipelines(gate=gate)

    committer = GroupCommitter(make, writers=2, linger_s=0.0)  # type: ignore[arg-type]
    committer.start()
    try:
        first = committer.submit(events(1))
        until(lambda: sum(p.entered for p in made) == 1, "one writer holds the first batch")
        second = committer.submit(events(2))
        until(lambda: sum(p.entered for p in made) == 2, "both writers are blocked in write")
        inside_at_once = sum(p.entered for p in made)
        gate.set()
        assert first.result(5).outcomes == second.result(5).outcomes == ["accepted"]
    finally:
        committer.stop()
    assert inside_at_once == 2  # one writer would hold the second batch until the first is done
    writers = [p for p in made if p.calls]
    assert len(writers) == 2 and all(len(p.calls) == 1 for p in writers)


# --------------------------------------------------------------------------- folding apart
def test_the_ack_does_not_wait_for_the_fold_unless_asked() -> None:
    fold_gate = threading.Event()
    pipeline = FakePipeline(fold_gate=fold_gate)
    committer = GroupCommitter(lambda: pipeline, writers=1, linger_s=0.0)  # type: ignore
    committer.start()
    try:
        durable = committer.submit(events(1))
        assert durable.result(5).outcomes == ["accepted"]  # the fold is still held
        assert durable.result().folded is False and pipeline.folds == []
        waiting = committer.submit(events(2), wait_for_profiles=True)
        time.sleep(0.2)
        assert not waiting.done()  # written, but not folded yet
        fold_gate.set()
        result = waiting.result(5)
    finally:
        fold_gate.set()
        committer.stop()
    assert result.folded is True and result.outcomes == ["accepted"]
    assert sorted(b for fold in pipeline.folds for b in fold) == ["b0", "b1"]


def test_batches_written_during_a_fold_are_folded_together() -> None:
    fold_gate = threading.Event()
    pipeline = FakePipeline(fold_gate=fold_gate)
    committer = GroupCommitter(lambda: pipeline, writers=1, linger_s=0.0)  # type: ignore
    committer.start()
    try:
        committer.submit(events(0)).result(5)
        until(lambda: pipeline.fold_entered == 1, "the folder took batch b0 and is held")
        for n in range(1, 5):
            committer.submit(events(n)).result(5)  # four more batches, one per request
        last = committer.submit(events(9), wait_for_profiles=True)
        until(lambda: len(pipeline.calls) == 6, "the request is written as a sixth batch")
        fold_gate.set()
        assert last.result(5).folded is True
    finally:
        fold_gate.set()
        committer.stop()
    assert pipeline.folds[0] == ["b0"]
    assert pipeline.folds[1] == ["b1", "b2", "b3", "b4", "b5"]  # one fold, five requests


def test_too_many_unfolded_events_refuse_new_requests() -> None:
    fold_gate = threading.Event()
    pipeline = FakePipeline(fold_gate=fold_gate)
    committer = GroupCommitter(
        lambda: pipeline,  # type: ignore[arg-type,return-value]
        writers=1,
        linger_s=0.0,
        max_unfolded=2,
    )
    committer.start()
    try:
        committer.submit(events(1, 2, 3)).result(5)
        with pytest.raises(Overloaded, match="waiting to be folded"):
            committer.submit(events(4))
        fold_gate.set()
        until(lambda: committer._unfolded == 0, "the folder has folded the first request")
        assert committer.submit(events(5)).result(5).outcomes == ["accepted"]
    finally:
        fold_gate.set()
        committer.stop()


def test_a_failed_fold_is_reported_and_the_folder_goes_on() -> None:
    pipeline = FakePipeline()
    pipeline.fold_fails = True
    committer = GroupCommitter(lambda: pipeline, writers=1, linger_s=0.0)  # type: ignore
    committer.start()
    try:
        failed = committer.submit(events(1), wait_for_profiles=True).result(5)
        pipeline.fold_fails = False
        ok = committer.submit(events(2), wait_for_profiles=True).result(5)
    finally:
        committer.stop()
    assert failed.outcomes == ["accepted"] and failed.folded is False  # durable, not folded
    assert ok.folded is True


def test_stop_folds_what_was_written() -> None:
    pipeline = FakePipeline()
    committer = GroupCommitter(lambda: pipeline, writers=1, linger_s=0.0)  # type: ignore
    committer.start()
    for n in range(5):
        committer.submit(events(n))
    committer.stop()
    assert sum(len(c) for c in pipeline.calls) == 5
    written = [f"b{n}" for n in range(len(pipeline.calls))]
    assert sorted(b for fold in pipeline.folds for b in fold) == written


def test_a_popularity_error_neither_fails_a_written_batch_nor_its_fold() -> None:
    pipeline = FakePipeline()
    committer = GroupCommitter(lambda: pipeline, writers=1, linger_s=0.0)  # type: ignore

    def broken(events: object) -> None:
        raise ValueError("popularity landmark too old")

    committer._pop_buffer.add = broken  # type: ignore[method-assign]
    pipeline.write = _known_items(pipeline.write)  # type: ignore[method-assign]
    committer.start()
    try:
        result = committer.submit(events(1), wait_for_profiles=True).result(5)
        again = committer.submit(events(2), wait_for_profiles=True).result(5)
    finally:
        committer.stop()
    assert result.outcomes == ["accepted"] and result.folded is True
    assert again.outcomes == ["accepted"] and again.folded is True


def _known_items(write):  # type: ignore[no-untyped-def]
    """FakePipeline.write with every item known (so popularity is counted)."""

    def known(events: Sequence[Event], now: float | None = None) -> BatchResult:
        result = write(events, now)
        result.unknown_items.clear()
        return result

    return known


def test_an_event_nested_too_deep_is_rejected_by_itself() -> None:
    """Found by the proxy fuzzer: a rejection's reason shows the bad value, and the repr of
    a value nested ~1,000 levels deep raised RecursionError (a 500 for the whole request)."""
    deep = b'{"a":' * 1000 + b"1" + b"}" * 1000
    event = b'{"user_id":"u","type":"view","item_id":"i","timestamp":1700000000'
    body = b"[" + event + b"}," + event + b',"context":' + deep + b"}]"
    items = parse_body(body)
    assert [i.error is None for i in items] == [True, False]
    assert "event 1 nests" in str(items[1].error)
    lines = parse_body(event + b"}\n" + deep, "application/x-ndjson")
    assert lines[1].error is not None and "line 2 nests" in lines[1].error
