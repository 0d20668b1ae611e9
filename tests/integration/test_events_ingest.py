"""Events in, profiles out, against the real engine: file import (idempotent), POST /events
(durable 202, freshness, group commit, rejections, 429), privacy (delete, opt-out/in),
recovery of unfolded events, rebuild, segment priors."""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from opensearchpy import OpenSearch, helpers
from own_indices import own_shop

import cli
from rewriter import config, privacy
from rewriter.boost.profile import BoostProfile
from rewriter.events.event import Event, validate
from rewriter.ingest import segment_priors, user_ops
from rewriter.ingest.event_files import fold_boost
from rewriter.ingest.group_commit import GroupCommitter
from rewriter.ingest.pipeline import RECOVERY_AGE_S, Pipeline, event_from_doc
from rewriter.measure.serve_thread import serve_in_thread
from rewriter.profiles import fold, writer
from rewriter.profiles.doc import decode
from rewriter.profiles.fold import fold_config
from rewriter.serve.app import create_app

NOW = time.time()
ITEMS = 200
BRANDS = ("acme", "zenit", "nova", "orbit", "pike", "quill", "rho")
CATEGORIES = ("shoes", "hats", "outerwear", "bags", "socks")


@pytest.fixture(scope="module")
def ev(opensearch: OpenSearch, bootstrapped: config.Settings) -> config.Settings:
    """Settings with this module's own indices (bootstrapped) and a 200-item catalog."""
    items = (
        {
            "id": f"i{n}",
            "title": f"item {n} running",
            "brand": BRANDS[n % len(BRANDS)],
            "category": [CATEGORIES[n % len(CATEGORIES)]],
        }
        for n in range(ITEMS)
    )
    s = own_shop(opensearch, bootstrapped, "ev-", items)
    return s


@pytest.fixture(scope="module")
def env(ev: config.Settings) -> dict[str, str]:
    return {
        "OPENSEARCH_URL": ev.opensearch_url,
        "AFFINITY_INDEX_PREFIX": ev.indices.prefix,
        "AFFINITY_SECRET": ev.secret or "",
        "AFFINITY_PROFILES_DIR": str(ev.boost_dir),
    }


def _invoke(env: dict[str, str], *args: str) -> Any:
    return CliRunner().invoke(cli.main, list(args), env=env, catch_exceptions=False)


def _pseudo(s: config.Settings, user: str) -> str:
    return privacy.pseudonymize(user, config.user_secret(s))


def _count(es: OpenSearch, index: str, query: dict | None = None) -> int:
    es.indices.refresh(index=index)
    return es.count(index=index, body={"query": query or {"match_all": {}}})["count"]


def _profiles(es: OpenSearch, s: config.Settings) -> dict[str, dict]:
    es.indices.refresh(index=s.indices.profiles)
    hits = helpers.scan(es, index=s.indices.profiles, query={"query": {"match_all": {}}})
    return {h["_id"]: decode(h["_source"]) for h in hits}


def _events_file(path: Path, n_users: int = 100, per_user: int = 100) -> Path:
    """n_users x per_user events; 10 % without event_id, 5 % on unknown items."""
    rng = random.Random(7)
    types = ("view", "view", "view", "click", "click", "add_to_cart", "purchase")
    with path.open("w") as out:
        for u in range(n_users):
            for k in range(per_user):
                event: dict[str, Any] = {
                    "event_id": f"f-{u}-{k}",
                    "user_id": f"file-user-{u}",
                    "type": rng.choice(types),
                    "item_id": f"i{rng.randrange(ITEMS)}" if rng.random() > 0.05 else "ghost",
                    "timestamp": NOW - 60 * 86_400 * rng.random() - k,
                    "session_id": f"s{u}-{k // 10}",
                    "value": 10.0,
                    "context": {
                        "device": ("mobile", "desktop")[u % 2],
                        "geo": ("DE", "FR")[u % 3 == 0],
                    },
                }
                if k % 10 == 0:
                    del event["event_id"]
                out.write(json.dumps(event) + "\n")
    return path


# --------------------------------------------------------------------------- file import
def test_same_file_twice_changes_nothing(
    tmp_path: Path, env: dict[str, str], ev: config.Settings, opensearch: OpenSearch
) -> None:
    path = _events_file(tmp_path / "events.jsonl")
    first = _invoke(env, "ingest", "events", str(path), "--quiet")
    assert first.exit_code == 0, first.output
    assert "accepted 10000, duplicates 0, rejected 0" in first.output
    assert "unknown items 1 (" in first.output
    events_after_first = _count(opensearch, ev.indices.events)
    profiles_after_first = _profiles(opensearch, ev)
    popularity = opensearch.get(index=ev.indices.catalog, id="i3")["_source"]["popularity"]
    assert events_after_first == 10_000
    assert len(profiles_after_first) == 100
    assert popularity > 0

    second = _invoke(env, "ingest", "events", str(path), "--quiet")
    assert second.exit_code == 0, second.output
    assert "accepted 0, duplicates 10000, rejected 0" in second.output
    assert _count(opensearch, ev.indices.events) == events_after_first
    assert _profiles(opensearch, ev) == profiles_after_first
    again = opensearch.get(index=ev.indices.catalog, id="i3")["_source"]["popularity"]
    assert again == popularity


def test_rebuild_equals_incremental(
    env: dict[str, str], ev: config.Settings, opensearch: OpenSearch
) -> None:
    """Runs after the import above: rebuilding every profile from the log changes no number."""
    before = _profiles(opensearch, ev)
    users_before = {k: v for k, v in before.items() if not k.startswith("segment:")}
    assert users_before, "the import test must run first"
    result = _invoke(env, "profile", "rebuild", "--quiet")
    assert result.exit_code == 0, result.output
    after = _profiles(opensearch, ev)
    for user, old in users_before.items():
        new = after[user]
        assert new["counters"] == old["counters"]
        assert new["mass"] == pytest.approx(old["mass"], rel=1e-9)
        for attribute, values in old["affinities"].items():
            assert new["affinities"][attribute] == pytest.approx(values, rel=1e-9)


def test_bad_lines_are_reported_with_line_and_field(tmp_path: Path, env: dict[str, str]) -> None:
    path = tmp_path / "bad.jsonl"
    good = {"event_id": "b1", "user_id": "b", "type": "view", "item_id": "i1", "timestamp": NOW}
    lines = [
        good,
        {**good, "event_id": "b2", "type": "wave"},
        {**good, "event_id": "b3", "timestamp": "soon"},
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\nnot json\n")
    result = _invoke(env, "ingest", "events", str(path), "--quiet")
    assert result.exit_code == 1
    assert "line 2: type 'wave' is not a known event type" in result.output
    assert "line 3: timestamp is 'soon', not ISO 8601" in result.output
    assert "line 4: record is not valid JSON" in result.output
    assert "accepted 1, duplicates 0, rejected 3" in result.output


# --------------------------------------------------------------------------- POST /events
@pytest.fixture(scope="module")
def server(ev: config.Settings) -> Iterator[tuple[str, Any]]:
    """The proxy app (with POST /events) under uvicorn, so its lifespan runs."""
    app = create_app(ev)
    with serve_in_thread(app) as url:
        yield url, app


def _event(user: str, n: int, **extra: Any) -> dict[str, Any]:
    base = {
        "event_id": f"{user}-{n}",
        "user_id": user,
        "type": "purchase",
        "item_id": "i1",
        "timestamp": time.time(),
    }
    return {**base, **extra}


SEARCH = {"query": {"match": {"title": "running"}}, "size": 5}


def test_post_event_is_in_the_profile_the_proxy_reads_promptly(
    server: tuple[str, Any], ev: config.Settings
) -> None:
    """The next searches see the events' profile, without a wait or a refresh. The < 1 s
    freshness goal is a timing, measured by bench/events_bench.py (p50/p99 over 1,000
    events); the bound here only has room for a loaded CI machine."""
    url, _ = server
    with httpx.Client(base_url=url, timeout=10) as c:
        cold = c.post(
            f"/{ev.indices.catalog}/_search", json=SEARCH, headers={"X-User-Id": "fresh-1"}
        ).json()
        assert cold["personalization"]["mode"] != "affinity"  # cold start
        t0 = time.monotonic()
        r = c.post("/events", json=[_event("fresh-1", n) for n in range(5)])
        assert r.status_code == 202, r.text
        assert r.json()["accepted"] == 5
        while True:
            body = c.post(
                f"/{ev.indices.catalog}/_search", json=SEARCH, headers={"X-User-Id": "fresh-1"}
            ).json()
            if body["personalization"]["mode"] == "affinity" or time.monotonic() - t0 > 10:
                break
    assert body["personalization"]["mode"] == "affinity", body["personalization"]
    assert body["hits"]["hits"][0]["_source"]["brand"] == BRANDS[1 % len(BRANDS)]


def test_wait_for_profiles_answers_after_the_fold(
    server: tuple[str, Any], ev: config.Settings, opensearch: OpenSearch
) -> None:
    url, _ = server
    pseudo = _pseudo(ev, "ryw-1")
    with httpx.Client(base_url=url, timeout=10) as c:
        r = c.post("/events?wait_for_profiles=true", json=[_event("ryw-1", n) for n in range(4)])
        assert r.status_code == 202, r.text
        assert (r.json()["accepted"], r.json()["folded"]) == (4, True)
        profile = user_ops.read_profile(opensearch, ev, pseudo)
        assert profile is not None and profile["counters"]["events"] == 4  # no polling
        durable = c.post("/events", json=[_event("ryw-1", 9)]).json()
        assert durable["accepted"] == 1 and "folded" not in durable
        bad = c.post("/events?wait_for_profiles=maybe", json=[_event("ryw-1", 10)])
        assert bad.status_code == 400 and "wait_for_profiles" in bad.json()["error"]["reason"]


def test_bad_events_are_rejected_by_field_good_ones_accepted(
    server: tuple[str, Any], ev: config.Settings, opensearch: OpenSearch
) -> None:
    url, _ = server
    body = [
        _event("mixed", 1),
        {**_event("mixed", 2), "type": "teleport"},
        {**_event("mixed", 3), "timestamp": "2999-01-01T00:00:00Z"},
        {k: v for k, v in _event("mixed", 4).items() if k != "user_id"},
        {**_event("mixed", 5), "item_id": "ghost-item"},
        "not an object",
    ]
    r = httpx.post(f"{url}/events", json=body, timeout=10)
    assert r.status_code == 202, r.text
    out = r.json()
    assert (out["accepted"], out["rejected"]) == (2, 4)
    fields = {(x["index"], x["field"]) for x in out["rejections"]}
    assert fields == {(1, "type"), (2, "timestamp"), (3, "user_id"), (5, "event")}
    assert any("ghost-item is not in the catalog" in n for n in out["notes"])
    stored = _count(opensearch, ev.indices.events, {"term": {"user_id": _pseudo(ev, "mixed")}})
    assert stored == 2

    ndjson = "\n".join(json.dumps(e) for e in body[:2]) + "\n{oops\n"
    r = httpx.post(
        f"{url}/events",
        content=ndjson,
        timeout=10,
        headers={"content-type": "application/x-ndjson"},
    )
    out = r.json()
    assert r.status_code == 202
    assert (out["accepted"], out["duplicates"], out["rejected"]) == (0, 1, 2)
    assert {x["line"] for x in out["rejections"]} == {2, 3}

    nothing = httpx.post(f"{url}/events", json=[body[1]], timeout=10)
    assert nothing.status_code == 400
    assert nothing.json()["rejections"][0]["field"] == "type"


def test_concurrent_posts_are_group_committed(
    server: tuple[str, Any], ev: config.Settings, opensearch: OpenSearch
) -> None:
    url, app = server
    committer: GroupCommitter = app.state.events
    before = committer.batches
    requests = 40

    async def send_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=20) as c:
            sends = [c.post("/events", json=[_event(f"gc-{n}", n)]) for n in range(requests)]
            return await asyncio.gather(*sends)

    responses = asyncio.run(send_all())
    assert all(r.status_code == 202 and r.json()["accepted"] == 1 for r in responses)
    batches = committer.batches - before
    assert 1 <= batches < requests / 2, f"{requests} requests took {batches} writes"
    gc_users = {"terms": {"user_id": [_pseudo(ev, f"gc-{n}") for n in range(requests)]}}
    assert _count(opensearch, ev.indices.events, gc_users) == requests


def test_full_queue_answers_429_with_retry_after(
    ev: config.Settings, opensearch: OpenSearch
) -> None:
    gate = threading.Event()
    pipeline = Pipeline(opensearch, ev, fold_boost(ev))
    real_write = pipeline.write

    entered = [0]

    def slow_write(events: Any, now: float | None = None) -> Any:
        entered[0] += 1
        gate.wait(10)
        return real_write(events, now)

    pipeline.write = slow_write  # type: ignore[method-assign]
    committer = GroupCommitter(lambda: pipeline, writers=1, max_pending=3, recover_every_s=3600)
    committer.start()
    app = create_app(ev)
    app.state.events = committer

    async def until(condition: Callable[[], bool]) -> None:
        for _ in range(1000):
            if condition():
                return
            await asyncio.sleep(0.005)
        raise AssertionError("the server did not get there within 5 s")

    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://proxy") as c:
            first = asyncio.create_task(c.post("/events", json=[_event("q", 1)]))
            await until(lambda: entered[0] == 1)  # the writer holds request 1, blocked in write
            second = asyncio.create_task(c.post("/events", json=[_event("q", 2), _event("q", 3)]))
            await until(lambda: committer._pending == 2)  # request 2 waits in the queue
            third = await c.post("/events", json=[_event("q", 4), _event("q", 5)])
            gate.set()
            return [await first, await second, third]

    try:
        first, second, third = asyncio.run(go())
    finally:
        gate.set()
        committer.stop()
    assert (first.status_code, second.status_code) == (202, 202)
    assert third.status_code == 429
    assert third.headers["retry-after"] == "1"
    assert "send it again" in third.json()["error"]["reason"]


# --------------------------------------------------------------------------- privacy
def test_user_delete_leaves_no_document_with_the_pseudonym(
    server: tuple[str, Any], env: dict[str, str], ev: config.Settings, opensearch: OpenSearch
) -> None:
    url, _ = server
    r = httpx.post(
        f"{url}/events?wait_for_profiles=true",
        json=[_event("gone", n) for n in range(3)],
        timeout=10,
    )
    assert r.status_code == 202
    pseudo = _pseudo(ev, "gone")
    assert sum(user_ops.pseudonym_counts(opensearch, ev, pseudo).values()) == 4  # 3 events + 1
    exported = _invoke(env, "user", "export", "gone")
    assert len(json.loads(exported.output)["events"]) == 3
    result = _invoke(env, "user", "delete", "gone")
    assert result.exit_code == 0, result.output
    assert "deleted 1 profile(s), 3 event(s)" in result.output
    counts = user_ops.pseudonym_counts(opensearch, ev, pseudo)
    assert len(counts) >= 3  # catalog, events, profiles
    assert set(counts.values()) == {0}


def test_opt_out_stops_storing_and_personalizing(
    server: tuple[str, Any], env: dict[str, str], ev: config.Settings, opensearch: OpenSearch
) -> None:
    url, _ = server
    user = "private-1"
    pseudo = _pseudo(ev, user)
    mine = {"term": {"user_id": pseudo}}
    headers = {"X-User-Id": user}
    with httpx.Client(base_url=url, timeout=10) as c:
        r = c.post("/events?wait_for_profiles=true", json=[_event(user, 1)])
        assert r.status_code == 202 and r.json()["folded"] is True
        search = f"/{ev.indices.catalog}/_search"
        assert (
            c.post(search, json=SEARCH, headers=headers).json()["personalization"]["mode"]
            == "affinity"
        )

        assert _invoke(env, "user", "opt-out", user).exit_code == 0
        time.sleep(0.3)  # the proxy's profile cache TTL (250 ms)
        out = c.post("/events", json=[_event(user, 2)]).json()
        assert (out["accepted"], out["not_stored"]) == (0, 1)
        assert _count(opensearch, ev.indices.events, mine) == 0
        info = c.post(search, json=SEARCH, headers=headers).json()["personalization"]
        assert info["applied"] is False and info["reason"] == "opt_out"

        assert _invoke(env, "user", "opt-in", user).exit_code == 0
        out = c.post("/events?wait_for_profiles=1", json=[_event(user, 3)]).json()
        assert out["accepted"] == 1
    profile = user_ops.read_profile(opensearch, ev, pseudo)
    assert profile is not None and profile["counters"]["events"] == 1  # started fresh


def test_opt_out_event_field_erases_and_drops_the_batch(
    server: tuple[str, Any], ev: config.Settings, opensearch: OpenSearch
) -> None:
    url, _ = server
    user = "private-2"
    body = [_event(user, 1), {**_event(user, 2), "opt_out": True}, _event(user, 3)]
    out = httpx.post(f"{url}/events", json=body, timeout=10).json()
    assert (out["accepted"], out["not_stored"]) == (0, 3)
    assert _count(opensearch, ev.indices.events, {"term": {"user_id": _pseudo(ev, user)}}) == 0
    assert user_ops.read_profile(opensearch, ev, _pseudo(ev, user))["opt_out"] is True


# --------------------------------------------------------------------------- recovery
def test_recover_folds_events_a_crash_left_unfolded(
    ev: config.Settings, opensearch: OpenSearch
) -> None:
    """A batch written to the log but never folded: its journal entry is still pending."""
    pseudo = _pseudo(ev, "crashed")
    doc = {
        "event_id": "crash-1",
        "user_id": pseudo,
        "type": "purchase",
        "item_id": "i2",
        "timestamp": NOW - 3600,
        "attributes": {"brand": [BRANDS[2]], "category": ["outerwear"]},
        "known_item": True,
        "batch_id": "crash-batch",
        "ingested_at": NOW - 120,
    }
    opensearch.index(index=ev.indices.events, id="crash-1", body=doc, refresh=True)
    journal = {"batch_id": "crash-batch", "state": "pending", "created": NOW - 120, "events": 1}
    opensearch.index(index=ev.indices.journal, id="crash-batch", body=journal, refresh=True)
    assert user_ops.read_profile(opensearch, ev, pseudo) is None
    pipeline = Pipeline(opensearch, ev, fold_boost(ev))
    assert pipeline.recover() == 1
    profile = user_ops.read_profile(opensearch, ev, pseudo)
    assert profile is not None
    assert profile["affinities"]["brand"] == {BRANDS[2]: pytest.approx(profile["mass"])}
    assert opensearch.get(index=ev.indices.journal, id="crash-batch")["_source"]["state"] == "done"
    assert pipeline.recover() == 0
    assert user_ops.read_profile(opensearch, ev, pseudo) == profile


def test_a_young_batch_still_landing_is_left_for_a_later_round(
    ev: config.Settings, opensearch: OpenSearch
) -> None:
    """A killed writer's last `_bulk` runs on inside the engine: a young pending batch with
    fewer events stored than its journal entry announced is not folded (nor marked done)
    until the rest land, or until it is RECOVERY_AGE_S old (then what is stored is all)."""
    pseudo = _pseudo(ev, "landing")
    created = time.time()

    def store(n: int) -> None:
        doc = {
            "event_id": f"landing-{n}",
            "user_id": pseudo,
            "type": "purchase",
            "item_id": "i2",
            "timestamp": NOW - 3600 + n,
            "attributes": {"brand": [BRANDS[2]], "category": ["outerwear"]},
            "known_item": True,
            "batch_id": "landing-batch",
            "ingested_at": created,
        }
        opensearch.index(index=ev.indices.events, id=f"landing-{n}", body=doc, refresh=True)

    store(1)
    journal = {"batch_id": "landing-batch", "state": "pending", "created": created, "events": 3}
    opensearch.index(index=ev.indices.journal, id="landing-batch", body=journal, refresh=True)
    pipeline = Pipeline(opensearch, ev, fold_boost(ev))
    assert pipeline.recover_round(min_age_s=0) == (0, 1)
    assert user_ops.read_profile(opensearch, ev, pseudo) is None
    state = opensearch.get(index=ev.indices.journal, id="landing-batch")["_source"]["state"]
    assert state == "pending"
    store(2)
    later = created + RECOVERY_AGE_S + 1  # the third never lands: folded when old enough
    assert pipeline.recover_round(now=created + 1, min_age_s=0) == (0, 1)
    assert pipeline.recover_round(now=later, min_age_s=0) == (2, 0)
    profile = user_ops.read_profile(opensearch, ev, pseudo)
    assert profile is not None and profile["counters"]["events"] == 2


def test_a_batch_is_never_folded_twice_into_a_profile(
    ev: config.Settings, opensearch: OpenSearch
) -> None:
    """A recovery racing a fold that already landed (same batch id) changes nothing."""
    pseudo = _pseudo(ev, "raced")
    pipeline = Pipeline(opensearch, ev, fold_boost(ev))
    event = Event(
        event_id="race-1",
        user_id=pseudo,
        type="purchase",
        item_id="i2",
        timestamp=NOW - 60,
        attributes={"brand": (BRANDS[2],)},
    )
    assert pipeline.fold_into_profiles([(event, "batch-r")], NOW) == 1
    before = user_ops.read_profile(opensearch, ev, pseudo)
    assert pipeline.fold_into_profiles([(event, "batch-r")], NOW) == 0
    assert user_ops.read_profile(opensearch, ev, pseudo) == before


def test_a_large_batch_is_written_in_chunks_and_folded_once(
    ev: config.Settings, opensearch: OpenSearch, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch import's shape, made small: many `_bulk` chunks in flight, then every
    profile written once (several profile requests in flight), equal to a rebuild."""
    monkeypatch.setattr(writer, "PROFILE_CHUNK", 3)
    boost = fold_boost(ev)
    pipeline = Pipeline(opensearch, ev, boost)
    rng = random.Random(11)
    raw = [
        {
            "event_id": f"chunk-{u}-{k}",
            "user_id": f"chunk-user-{u}",
            "type": rng.choice(("view", "click", "purchase")),
            "item_id": f"i{rng.randrange(ITEMS)}",
            "timestamp": NOW - 86_400 * rng.random(),
        }
        for k in range(9)
        for u in range(10)
    ]
    events = [validate(r, tuple(boost.event_weights)) for r in raw]
    assert all(isinstance(e, Event) for e in events)
    chunks: list[int] = []
    result = pipeline.ingest(events, NOW, chunk_size=7, progress=chunks.append)  # type: ignore[arg-type]
    assert (result.accepted, result.folded, len(result.created)) == (90, 90, 90)
    assert sum(chunks) == 90 and len(chunks) == 13
    opensearch.indices.refresh(index=ev.indices.events)
    cfg = fold_config(boost)
    for u in range(10):
        pseudo = _pseudo(ev, f"chunk-user-{u}")
        stored = user_ops.read_profile(opensearch, ev, pseudo)
        assert stored is not None and stored["counters"]["events"] == 9
        raw = opensearch.get(index=ev.indices.profiles, id=pseudo)["_source"]
        assert raw["schema"] == 2 and set(raw["affinities"]["brand"]) == {"values", "masses"}
        logged = [event_from_doc(d) for d in user_ops.scan_events(opensearch, ev, [pseudo])]
        rebuilt = fold.rebuild(logged, cfg, now=NOW)  # type: ignore[arg-type]
        assert stored["mass"] == pytest.approx(rebuilt["mass"], rel=1e-9)
        for attribute, values in rebuilt["affinities"].items():
            assert stored["affinities"][attribute] == pytest.approx(values, rel=1e-9)
    again = pipeline.ingest(events, NOW, chunk_size=7)  # type: ignore[arg-type]
    assert (again.accepted, again.duplicates, again.folded) == (0, 90, 0)


def test_profiles_forget_batches_once_they_are_done(
    ev: config.Settings, opensearch: OpenSearch
) -> None:
    """A batch marked `done` is never folded again, so the rings written afterwards drop it;
    a batch only folded (journal still pending) stays recognized."""
    pipeline = Pipeline(opensearch, ev, fold_boost(ev))
    pseudo = _pseudo(ev, "ringer")
    first = pipeline.ingest([validate(_event("ringer", 1), ("purchase",))])  # type: ignore[list-item]
    stored = user_ops.read_profile(opensearch, ev, pseudo)
    assert stored is not None and stored["recent_batches"] == [first.batch_id]
    second = pipeline.ingest([validate(_event("ringer", 2), ("purchase",))])  # type: ignore[list-item]
    stored = user_ops.read_profile(opensearch, ev, pseudo)
    assert stored is not None and stored["recent_batches"] == [second.batch_id]
    event = Event("ring-3", pseudo, "purchase", "i1", NOW, attributes={"brand": (BRANDS[0],)})
    assert pipeline.fold_into_profiles([(event, "never-done")], NOW) == 1
    assert pipeline.fold_into_profiles([(event, "never-done")], NOW) == 0
    stored = user_ops.read_profile(opensearch, ev, pseudo)
    assert stored is not None and stored["counters"]["events"] == 3
    assert stored["recent_batches"] == ["never-done"]  # the second batch is done: dropped


def test_rings_drop_other_processes_done_batches(
    ev: config.Settings, opensearch: OpenSearch
) -> None:
    """A process folds a batch and marks it done, then stops. Another process writing the
    same profile looks that batch up in the journal and drops it from the ring: only
    batches still pending keep their room (a crashed process's pending one among them)."""
    boost = fold_boost(ev)
    gone, alive = Pipeline(opensearch, ev, boost), Pipeline(opensearch, ev, boost)
    pseudo = _pseudo(ev, "turns")
    crashed = Event("turns-c", pseudo, "purchase", "i1", NOW, attributes={"brand": (BRANDS[0],)})
    entry = {"batch_id": "pending-c", "state": "pending", "created": NOW, "events": 1}
    opensearch.index(index=ev.indices.journal, id="pending-c", body=entry)
    assert gone.fold_into_profiles([(crashed, "pending-c")], NOW) == 1  # never marked done
    strays = Event("turns-s", pseudo, "purchase", "i1", NOW, attributes={"brand": (BRANDS[0],)})
    assert gone.fold_into_profiles([(strays, "not-journaled")], NOW) == 1  # recovery can't see it
    old = gone.ingest([validate(_event("turns", 1), ("purchase",))])  # type: ignore[list-item]
    new = alive.ingest([validate(_event("turns", 2), ("purchase",))])  # type: ignore[list-item]
    stored = user_ops.read_profile(opensearch, ev, pseudo)
    assert stored is not None and stored["counters"]["events"] == 4
    assert old.batch_id not in stored["recent_batches"]
    assert stored["recent_batches"] == [new.batch_id, "pending-c"]


def test_a_rebuild_remembers_the_pending_batches_it_folded(
    ev: config.Settings, opensearch: OpenSearch
) -> None:
    """A batch is in the log but not folded yet (a fold in flight, or a crash) when the
    profile is rebuilt: the rebuilt profile counts its events and keeps its id in the ring,
    so the fold (or recovery) that follows adds nothing twice; done batches are not kept."""
    boost = fold_boost(ev)
    pipeline = Pipeline(opensearch, ev, boost)
    pseudo = _pseudo(ev, "rebuilt-mid-fold")
    folded = pipeline.ingest([validate(_event("rebuilt-mid-fold", 1), ("purchase",))])  # type: ignore[list-item]
    written = pipeline.write([validate(_event("rebuilt-mid-fold", 2), ("purchase",))])  # type: ignore[list-item]
    result = user_ops.Rebuilder(opensearch, ev, boost).run([pseudo])
    assert (result.events, result.errors) == (2, [])
    stored = user_ops.read_profile(opensearch, ev, pseudo)
    assert stored is not None and stored["counters"]["events"] == 2
    assert stored["recent_batches"] == [written.batch_id]  # not folded.batch_id: done
    assert folded.batch_id != written.batch_id
    assert pipeline.fold_batches([written]) == 0
    assert pipeline.recover(min_age_s=0) == 0
    stored = user_ops.read_profile(opensearch, ev, pseudo)
    assert stored is not None and stored["counters"]["events"] == 2


def test_a_rebuild_never_folds_logged_events_as_nothing(
    ev: config.Settings, opensearch: OpenSearch
) -> None:
    """Rebuilding with a boost profile that does not weight the logged event types (say,
    `default` for events ingested with `movielens`) would zero the profile: it is refused,
    and the error says which types and what to do."""
    boost = fold_boost(ev)
    pipeline = Pipeline(opensearch, ev, boost)
    pseudo = _pseudo(ev, "wrong-fold")
    pipeline.ingest([validate(_event("wrong-fold", n), ("purchase",)) for n in range(3)])  # type: ignore[misc]
    before = user_ops.read_profile(opensearch, ev, pseudo)
    assert before is not None and before["mass"] > 0
    narrow = BoostProfile(name="views-only", event_weights={"view": 1.0})
    result = user_ops.Rebuilder(opensearch, ev, narrow).run([pseudo])
    assert (result.users, result.not_rebuilt, dict(result.unweighted)) == (0, 1, {"purchase": 3})
    [error] = result.errors
    assert "'views-only' does not weight" in error and "purchase (3)" in error
    assert "--boost-profile" in error
    assert user_ops.read_profile(opensearch, ev, pseudo) == before


def test_a_profile_built_with_another_half_life_does_not_block_the_batch(
    ev: config.Settings, opensearch: OpenSearch, caplog: pytest.LogCaptureFixture
) -> None:
    """One user's profile folded with another boost profile's half-life cannot take these
    events: that user is skipped (logged once, naming the fix), every other user of the
    batch is folded, and the batch is done (no retry loop)."""
    boost = fold_boost(ev)
    other = BoostProfile(name="decade", half_life_days=3650, event_weights=boost.event_weights)
    pseudo = _pseudo(ev, "half-life-old")
    Pipeline(opensearch, ev, other).ingest([validate(_event("half-life-old", 1), ("purchase",))])  # type: ignore[list-item]
    before = user_ops.read_profile(opensearch, ev, pseudo)
    pipeline = Pipeline(opensearch, ev, boost)
    batch = [validate(_event(u, 2), ("purchase",)) for u in ("half-life-old", "half-life-new")]
    with caplog.at_level("ERROR", logger="affinity.profiles"):
        result = pipeline.ingest(batch)  # type: ignore[arg-type]
        again = pipeline.ingest([validate(_event("half-life-old", 3), ("purchase",))])  # type: ignore[list-item]
    assert (result.accepted, result.folded, again.folded) == (2, 1, 0)
    assert user_ops.read_profile(opensearch, ev, pseudo) == before
    assert user_ops.read_profile(opensearch, ev, _pseudo(ev, "half-life-new")) is not None
    assert pipeline.profiles.mismatched == {pseudo: 2}
    [record] = [r for r in caplog.records if "half-life" in r.getMessage()]  # once
    assert (
        "3650 days" in record.getMessage()
        and f"--boost-profile {boost.name}" in record.getMessage()
    )
    assert "(by boost profile 'decade')" in record.getMessage()
    assert pipeline.recover(min_age_s=0) == 0  # the batches are done
    # the skipped events are in the log: a rebuild with the profile's own boost profile
    # (what `affinity profile rebuild` picks by default) takes all three
    rebuilt = user_ops.Rebuilder(opensearch, ev, boost, {"decade": other, boost.name: boost})
    result = rebuilt.run([pseudo])
    assert (result.events, dict(result.by_profile), result.errors) == (3, {"decade": 1}, [])
    stored = user_ops.read_profile(opensearch, ev, pseudo)
    assert stored is not None and stored["counters"]["events"] == 3
    assert stored["half_life_s"] == 3650 * 86_400 and stored["fold_profile"] == "decade"


def test_a_rebuild_learns_from_events_whose_item_came_later(
    ev: config.Settings, opensearch: OpenSearch
) -> None:
    """An event for an item not yet in the catalog is stored without attributes; once the
    item is added, a rebuild folds the event with the item's values."""
    boost = fold_boost(ev)
    pipeline = Pipeline(opensearch, ev, boost)
    pseudo = _pseudo(ev, "early-bird")
    raw = {**_event("early-bird", 1), "item_id": "late-item"}
    result = pipeline.ingest([validate(raw, ("purchase",))])  # type: ignore[list-item]
    assert result.unknown_items == {"late-item"}
    assert any("once the item is in the catalog" in n for n in result.notes)
    stored = user_ops.read_profile(opensearch, ev, pseudo)
    assert stored is not None and stored["affinities"] == {}
    opensearch.index(
        index=ev.indices.catalog,
        id="late-item",
        body={"title": "late", "brand": "latecomer", "category": "new"},
        refresh=True,
    )
    rebuilt = user_ops.Rebuilder(opensearch, ev, boost).run([pseudo])
    assert (rebuilt.users, rebuilt.late_enriched, rebuilt.errors) == (1, 1, [])
    stored = user_ops.read_profile(opensearch, ev, pseudo)
    assert stored is not None and set(stored["affinities"]["brand"]) == {"latecomer"}
    opensearch.delete(index=ev.indices.catalog, id="late-item", refresh=True)


def test_old_done_batches_leave_the_journal_pending_ones_stay(
    ev: config.Settings, opensearch: OpenSearch
) -> None:
    day = 86_400.0
    entries = {
        "prune-old-done": ("done", NOW - 2 * day),
        "prune-new-done": ("done", NOW - 60),
        "prune-old-pending": ("pending", NOW - 2 * day),
    }
    for batch, (state, created) in entries.items():
        body = {"batch_id": batch, "state": state, "created": created, "events": 1}
        opensearch.index(index=ev.indices.journal, id=batch, body=body)
    opensearch.indices.refresh(index=ev.indices.journal)  # a day old, in real life
    pipeline = Pipeline(opensearch, ev, fold_boost(ev))
    assert pipeline.prune_journal(now=NOW, keep_s=day) >= 1
    left = {
        d["_id"]
        for d in opensearch.mget(index=ev.indices.journal, body={"ids": list(entries)})["docs"]
        if d.get("found")
    }
    assert left == {"prune-new-done", "prune-old-pending"}
    opensearch.delete(index=ev.indices.journal, id="prune-old-pending")  # not for recovery


def test_an_unwritable_journal_does_not_lose_accepted_events(
    ev: config.Settings, opensearch: OpenSearch, caplog: pytest.LogCaptureFixture
) -> None:
    """The journal is only crash insurance: when it refuses writes, the batch is still
    stored and folded, and the log says what protection is missing."""
    pipeline = Pipeline(opensearch, ev, fold_boost(ev))
    journal = ev.indices.journal
    opensearch.indices.put_settings(index=journal, body={"index.blocks.write": True})
    try:
        result = pipeline.ingest([validate(_event("journal-less", 1), ("purchase",))])  # type: ignore[list-item]
    finally:
        opensearch.indices.put_settings(index=journal, body={"index.blocks.write": False})
    assert (result.accepted, result.folded) == (1, 1)
    profile = user_ops.read_profile(opensearch, ev, _pseudo(ev, "journal-less"))
    assert profile is not None and profile["counters"]["events"] == 1
    assert "journal entry could not be written" in caplog.text
    assert "affinity profile rebuild" in caplog.text


def test_an_import_goes_on_when_popularity_cannot_be_counted(
    ev: config.Settings, opensearch: OpenSearch
) -> None:
    """With a one-hour half-life, today's events lie too many half-lives after the catalog's
    popularity landmark: popularity says so once, and every event is still stored and
    folded."""
    from rewriter.ingest import event_files

    boost = replace(fold_boost(ev), half_life_days=1 / 24)
    pipeline = Pipeline(opensearch, ev, boost)
    parsed = iter(
        (n + 1, validate(_event(f"hourly-{n % 3}", n), tuple(boost.event_weights)))
        for n in range(9)
    )
    result = event_files.ingest_events(pipeline, parsed)  # type: ignore[arg-type]
    assert (result.accepted, result.folded, result.rejected) == (9, 9, [])
    assert [w for w in result.warnings if w.startswith("popularity")] == [
        next(w for w in result.warnings if "half-lives after the popularity landmark" in w)
    ]


def test_two_writers_folding_the_same_users_stay_exactly_once(
    ev: config.Settings, opensearch: OpenSearch
) -> None:
    """Two server processes' writers (each with its own folder and remembered profiles)
    take turns on the same users: every event is folded once, and each profile equals a
    rebuild from the log."""
    boost = fold_boost(ev)
    committers = [
        GroupCommitter(lambda: Pipeline(opensearch, ev, boost), linger_s=0.0, recover_every_s=3600)
        for _ in range(2)
    ]
    for committer in committers:
        committer.start()
    names = [f"twin-{u}" for u in range(4)]
    try:
        futures = []
        for n in range(30):
            batch = [validate(_event(user, n, type="click"), ("click",)) for user in names]
            futures.append(committers[n % 2].submit(batch, wait_for_profiles=n >= 28))  # type: ignore[arg-type]
        results = [f.result(30) for f in futures]
    finally:
        for committer in committers:
            committer.stop()
    assert all(r.outcomes == ["accepted"] * 4 for r in results)
    assert results[-1].folded and results[-2].folded
    cfg = fold_config(boost)
    for user in names:
        pseudo = _pseudo(ev, user)
        stored = user_ops.read_profile(opensearch, ev, pseudo)
        assert stored is not None and stored["counters"]["events"] == 30
        logged = [event_from_doc(d) for d in user_ops.scan_events(opensearch, ev, [pseudo])]
        rebuilt = fold.rebuild(logged, cfg)  # type: ignore[arg-type]
        at = time.time()  # masses are relative to each profile's landmark: compare decayed
        mine = fold.decayed(stored["mass"], stored["landmark"], at, cfg.half_life_s)
        theirs = fold.decayed(rebuilt["mass"], rebuilt["landmark"], at, cfg.half_life_s)
        assert mine == pytest.approx(theirs, rel=1e-9)


# --------------------------------------------------------------------------- segments
def test_segments_build_stores_priors_and_profile_segments(
    env: dict[str, str], ev: config.Settings, opensearch: OpenSearch
) -> None:
    """Runs after the import (users with device/geo contexts)."""
    result = _invoke(env, "segments", "build", "--quiet")
    assert result.exit_code == 0, result.output
    mobile = segment_priors.read_prior(opensearch, ev, "device=mobile")
    assert mobile is not None and mobile["members"] == 50
    brands = mobile["priors"]["brand"]
    assert 0 < max(brands.values()) <= 1.0
    profile = user_ops.read_profile(opensearch, ev, _pseudo(ev, "file-user-0"))
    assert profile is not None and profile["segments"] == ["device=mobile", "geo=FR"]
    shown = _invoke(env, "profile", "show", "file-user-0", "--json")
    view = json.loads(shown.output)
    assert view["segments"] == ["device=mobile", "geo=FR"]
    assert view["top"]["brand"][0]["affinity"] == 1.0
