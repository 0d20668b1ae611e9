"""Retention against the real engine: old events and impressions go, recent ones stay; events
a rebuild still needs stay unless forced; profiles equal a rebuild afterwards; a dry run
deletes nothing; a running experiment's impressions and pending batches' events stay."""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from opensearchpy import OpenSearch, helpers

import cli
from rewriter import config, privacy
from rewriter.boost.profile import BoostProfile
from rewriter.engine.bootstrap import bootstrap_cluster
from rewriter.events.event import Event, validate
from rewriter.experiments.assignment import Experiment, Variant
from rewriter.ingest import user_ops
from rewriter.ingest.pipeline import Pipeline
from rewriter.ingest.retention import RETIRE_MARGIN_S, Policy, Retention, RetentionReport
from rewriter.profiles.fold import DAY_S, EXPIRE_HALF_LIVES
from rewriter.serve.app import create_app
from rewriter.serve.events_endpoint import committer_for

HALF_LIFE_DAYS = 0.01
"""864 s: the safe horizon is EXPIRE_HALF_LIVES of them, 6 days, so tests can span it."""
SAFE_S = EXPIRE_HALF_LIVES * HALF_LIFE_DAYS * DAY_S
NOW = time.time()
WRITTEN = NOW - 2 * RETIRE_MARGIN_S
"""When the tests' events were ingested: before the margin a run leaves alone."""
BOOST = BoostProfile(
    name="default",
    half_life_days=HALF_LIFE_DAYS,
    event_weights={"view": 1.0, "click": 2.0, "purchase": 10.0},
)
BRANDS = ("acme", "zenit", "nova")
_prefixes = itertools.count()


@pytest.fixture()
def rt(opensearch: OpenSearch, bootstrapped: config.Settings, tmp_path: Path) -> config.Settings:
    """Fresh indices for each test (a run touches every user of its indices), a catalog of
    three items and a boost directory whose only profile has a short half-life."""
    (tmp_path / "default.yaml").write_text(
        f"name: default\nhalf_life_days: {HALF_LIFE_DAYS}\n"
        "event_weights: {view: 1, click: 2, purchase: 10}\n"
    )
    prefix = f"{bootstrapped.indices.prefix}rt{next(_prefixes)}-"
    s = replace(
        bootstrapped, indices=config.Indices(prefix=prefix), boost_dir=tmp_path, fold_profile=None
    )
    bootstrap_cluster(opensearch, s)
    items = (
        {"_index": s.indices.catalog, "_id": f"i{n}", "_source": {"brand": b, "category": "c"}}
        for n, b in enumerate(BRANDS)
    )
    helpers.bulk(opensearch, items, refresh=True)
    return s


def _event(user: str, n: int, at: float, type: str = "click", **extra: Any) -> Event:
    raw = {
        "event_id": f"{user}-{n}",
        "user_id": user,
        "type": type,
        "item_id": f"i{n % len(BRANDS)}",
        "timestamp": at,
        **extra,
    }
    event = validate(raw, tuple(BOOST.event_weights))
    assert isinstance(event, Event), event
    return event


def _pseudo(s: config.Settings, user: str) -> str:
    return privacy.pseudonymize(user, config.user_secret(s))


def _logged(es: OpenSearch, s: config.Settings, user: str) -> set[str]:
    """The event ids of a user still in the log."""
    return {e["event_id"] for e in user_ops.scan_events(es, s, [_pseudo(s, user)])}


def _count(es: OpenSearch, index: str) -> int:
    es.indices.refresh(index=index)
    return es.count(index=index)["count"]


def _profiles(es: OpenSearch, s: config.Settings, users: list[str]) -> dict[str, dict]:
    return {u: user_ops.read_profile(es, s, _pseudo(s, u)) or {} for u in users}


def _run(
    es: OpenSearch,
    s: config.Settings,
    dry_run: bool = False,
    experiments: list[Experiment] | None = None,
    **policy: Any,
) -> RetentionReport:
    job = Retention(es, s, {BOOST.name: BOOST}, BOOST, experiments=experiments or [])
    return job.run(Policy(**policy), dry_run=dry_run, now=NOW)


def _part(report: RetentionReport, name: str) -> Any:
    return next(p for p in report.parts if p.name == name)


def _assert_same_profile(got: dict, want: dict) -> None:
    assert got["counters"] == want["counters"]
    assert (got["first_seen"], got["last_seen"]) == (want["first_seen"], want["last_seen"])
    assert got["recent_sessions"] == want["recent_sessions"]
    assert got["mass"] == pytest.approx(want["mass"], rel=1e-9)
    assert got["affinities"].keys() == want["affinities"].keys()
    for attribute, values in want["affinities"].items():
        assert got["affinities"][attribute] == pytest.approx(values, rel=1e-9)


# --------------------------------------------------------------------------- events
def test_old_events_go_recent_stay_and_profiles_equal_a_rebuild(
    opensearch: OpenSearch, rt: config.Settings
) -> None:
    """Safe horizon: an event goes only when it lies more than EXPIRE_HALF_LIVES half-lives
    before its user's newest event. `old` has two such events (one of a session that goes
    on); `idle` has only old events, none far enough before its own newest; `fresh` is
    recent. A dry run changes nothing; the run deletes exactly the two; every profile equals
    a rebuild from what is left."""
    day = DAY_S
    pipeline = Pipeline(opensearch, rt, BOOST)
    old = [
        _event("old", 0, NOW - 10 * day, "purchase", value=20.0, session_id="s1"),
        _event("old", 1, NOW - 10 * day + 60, session_id="s2"),
        _event("old", 2, NOW - 3600, session_id="s2"),
    ]
    idle = [_event("idle", n, NOW - (10 - n) * day) for n in range(2)]
    fresh = [_event("fresh", n, NOW - n * 60) for n in range(3)]
    pipeline.ingest(old + idle + fresh, now=WRITTEN)
    users = ["old", "idle", "fresh"]
    before = _profiles(opensearch, rt, users)
    events_before = _count(opensearch, rt.indices.events)

    plan = _run(opensearch, rt, dry_run=True)
    planned = _part(plan, "events")
    assert (planned.deleted, planned.users, planned.errors) == (2, 1, [])
    assert "the safe horizon: per user" in planned.why and "newest event" in planned.why
    assert _count(opensearch, rt.indices.events) == events_before
    assert _count(opensearch, rt.indices.retired) == 0

    done = _part(_run(opensearch, rt), "events")
    assert (done.deleted, done.users, done.errors) == (2, 1, [])
    assert _logged(opensearch, rt, "old") == {"old-2"}
    assert _logged(opensearch, rt, "idle") == {"idle-0", "idle-1"}
    assert _logged(opensearch, rt, "fresh") == {f"fresh-{n}" for n in range(3)}
    assert _profiles(opensearch, rt, users) == before  # retention never writes profiles

    rebuilt = user_ops.Rebuilder(opensearch, rt, BOOST).run([_pseudo(rt, u) for u in users])
    assert (rebuilt.users, rebuilt.events, rebuilt.retired, rebuilt.errors) == (3, 6, 2, [])
    after = _profiles(opensearch, rt, users)
    for user in users:
        _assert_same_profile(after[user], before[user])
    assert after["old"]["counters"] == {
        "events": 3,
        "sessions": 2,
        "purchases": 1,
        "lifetime_value": 20.0,
    }
    assert _part(_run(opensearch, rt), "events").deleted == 0  # nothing more to do


def test_events_a_rebuild_needs_stay_unless_forced(
    opensearch: OpenSearch, rt: config.Settings
) -> None:
    """A horizon shorter than the safe one is not applied without force, and says so; forced,
    the events go, the warning says what rebuilds lose, and a rebuild keeps the counters but
    loses the deleted events' affinity."""
    pipeline = Pipeline(opensearch, rt, BOOST)
    pipeline.ingest(
        [_event("keen", 0, NOW - 3 * DAY_S, "purchase"), _event("keen", 1, NOW - 60)],
        now=WRITTEN,
    )
    unforced = _part(_run(opensearch, rt, events=1.0), "events")
    assert (unforced.deleted, unforced.warnings) == (0, [])
    [kept] = unforced.kept
    assert "AFFINITY_RETENTION_EVENTS_DAYS=1 is shorter" in kept and "--force" in kept
    assert unforced.cutoff == pytest.approx(NOW - SAFE_S)
    assert _logged(opensearch, rt, "keen") == {"keen-0", "keen-1"}

    forced = _part(_run(opensearch, rt, events=1.0, force=True), "events")
    assert (forced.deleted, forced.users) == (1, 1)
    [warning] = forced.warnings
    assert "lose the affinity" in warning and "counters" in warning
    assert _logged(opensearch, rt, "keen") == {"keen-1"}
    live = user_ops.read_profile(opensearch, rt, _pseudo(rt, "keen"))
    assert live is not None and set(live["affinities"]["brand"]) == {"acme", "zenit"}

    user_ops.Rebuilder(opensearch, rt, BOOST).run([_pseudo(rt, "keen")])
    rebuilt = user_ops.read_profile(opensearch, rt, _pseudo(rt, "keen"))
    assert rebuilt is not None and rebuilt["counters"] == live["counters"]
    assert set(rebuilt["affinities"]["brand"]) == {"zenit"}  # the purchase of acme is gone


def test_pending_batches_keep_their_events_and_late_writes_wait(
    opensearch: OpenSearch, rt: config.Settings
) -> None:
    """Events of a batch still pending in the journal are never deleted (recovery reads
    them), and events ingested within RETIRE_MARGIN_S are left to a later run. Once folded,
    a later run retires them, and a rebuild counts every event exactly once."""
    pipeline = Pipeline(opensearch, rt, BOOST)
    pseudo = _pseudo(rt, "slow")
    pipeline.ingest([_event("slow", 0, NOW - 30 * DAY_S), _event("slow", 1, NOW - 60)], now=WRITTEN)
    pending = pipeline.write([_event("slow", 2, NOW - 20 * DAY_S, "purchase")], now=WRITTEN)
    pipeline.ingest([_event("slow", 3, NOW - 25 * DAY_S)], now=NOW)  # a write just now

    first = _part(_run(opensearch, rt, events=1.0, force=True), "events")
    assert (first.deleted, first.users) == (1, 1)
    assert "1 events of batches still pending in the journal" in first.kept[0]
    assert _logged(opensearch, rt, "slow") == {"slow-1", "slow-2", "slow-3"}

    assert pipeline.recover(now=NOW, min_age_s=0) == 1  # slow-2 is folded from the log
    live = user_ops.read_profile(opensearch, rt, pseudo)
    assert live is not None and live["counters"]["events"] == 4
    user_ops.Rebuilder(opensearch, rt, BOOST).run([pseudo])
    rebuilt = user_ops.read_profile(opensearch, rt, pseudo)
    assert rebuilt is not None and rebuilt["counters"] == live["counters"]

    later = _part(_run(opensearch, rt, events=1.0, force=True), "events")
    assert later.deleted == 1  # slow-2: its batch is done now; slow-3 is still in the margin
    assert _logged(opensearch, rt, "slow") == {"slow-1", "slow-3"}
    assert pending.batch_id
    user_ops.Rebuilder(opensearch, rt, BOOST).run([pseudo])
    again = user_ops.read_profile(opensearch, rt, pseudo)
    assert again is not None and again["counters"] == live["counters"]


def test_events_left_behind_by_a_crash_are_not_counted_twice(
    opensearch: OpenSearch, rt: config.Settings
) -> None:
    """Totals are written before the events go: an event they hold that is still in the log
    (a crash between the two) is skipped by a rebuild and deleted by the next run."""
    pipeline = Pipeline(opensearch, rt, BOOST)
    pseudo = _pseudo(rt, "crash")
    pipeline.ingest([_event("crash", 0, NOW - 9 * DAY_S), _event("crash", 1, NOW)], now=WRITTEN)
    [gone] = [
        e for e in user_ops.scan_events(opensearch, rt, [pseudo]) if e["event_id"] == "crash-0"
    ]
    assert _part(_run(opensearch, rt), "events").deleted == 1
    opensearch.index(index=rt.indices.events, id="crash-0", body=gone, refresh=True)

    user_ops.Rebuilder(opensearch, rt, BOOST).run([pseudo])
    rebuilt = user_ops.read_profile(opensearch, rt, pseudo)
    assert rebuilt is not None and rebuilt["counters"]["events"] == 2
    assert _part(_run(opensearch, rt), "events").deleted == 1
    assert _logged(opensearch, rt, "crash") == {"crash-1"}


def test_user_delete_erases_the_retired_totals(opensearch: OpenSearch, rt: config.Settings) -> None:
    pipeline = Pipeline(opensearch, rt, BOOST)
    pipeline.ingest([_event("leaver", 0, NOW - 9 * DAY_S), _event("leaver", 1, NOW)], now=WRITTEN)
    _run(opensearch, rt)
    exported = user_ops.export(opensearch, rt, "leaver")
    assert exported["retired"]["counters"]["events"] == 1 and len(exported["events"]) == 1
    report = user_ops.delete(opensearch, rt, BOOST, "leaver")
    assert report.deleted["retired"] == 1 and report.clean, report.remaining


def test_without_the_retired_index_rebuilds_work_and_no_event_goes(
    opensearch: OpenSearch, rt: config.Settings
) -> None:
    """A cluster bootstrapped before retention existed: rebuilds read no totals, and a run
    deletes no event until `affinity bootstrap` has created the index."""
    Pipeline(opensearch, rt, BOOST).ingest(
        [_event("early", 0, NOW - 9 * DAY_S), _event("early", 1, NOW)], now=WRITTEN
    )
    opensearch.indices.delete(index=f"{rt.indices.retired}-v1")
    opensearch.indices.refresh(index=rt.indices.events)  # the rebuild pages users by a search
    rebuilt = user_ops.Rebuilder(opensearch, rt, BOOST).run()
    assert (rebuilt.users, rebuilt.events, rebuilt.errors) == (1, 2, [])
    part = _part(_run(opensearch, rt), "events")
    assert part.deleted == 0 and "run `affinity bootstrap`" in part.errors[0]
    assert _logged(opensearch, rt, "early") == {"early-0", "early-1"}
    assert not opensearch.indices.exists(index=rt.indices.retired)


# --------------------------------------------------------------------------- impressions
def _impression(es: OpenSearch, s: config.Settings, qid: str, at: float, exp: str = "") -> None:
    tags = {"experiment": exp, "variant": "on"} if exp else {}
    body = {"query_id": qid, "user_id": "u", "timestamp": at, **tags}
    es.index(index=s.indices.impressions, id=qid, body=body)


def test_old_impressions_go_but_a_running_experiments_stay(
    opensearch: OpenSearch, rt: config.Settings
) -> None:
    running = Experiment(
        name="long-test",
        index=rt.indices.catalog,
        salt="s",
        start=NOW - 200 * DAY_S,
        control="off",
        variants=(Variant("off", 50.0, generic=True), Variant("on", 50.0)),
    )
    ended = replace(running, name="over", end=NOW - 150 * DAY_S, start=NOW - 300 * DAY_S)
    for qid, age, exp in [
        ("plain-old", 100, ""),
        ("plain-new", 1, ""),
        ("running-in-window", 100, "long-test"),
        ("running-before-start", 250, "long-test"),
        ("ended", 200, "over"),
    ]:
        _impression(opensearch, rt, qid, NOW - age * DAY_S, exp)

    def left() -> set[str]:
        opensearch.indices.refresh(index=rt.indices.impressions)
        hits = helpers.scan(opensearch, index=rt.indices.impressions, _source=False)
        return {h["_id"] for h in hits}

    experiments = [running, ended]

    plan = _part(_run(opensearch, rt, True, experiments, impressions=90.0), "impressions")
    assert plan.deleted == 3 and len(left()) == 5
    [kept] = plan.kept
    assert "1 older impressions of experiment long-test" in kept

    done = _part(_run(opensearch, rt, False, experiments, impressions=90.0), "impressions")
    assert (done.deleted, done.warnings) == (3, [])
    assert left() == {"plain-new", "running-in-window"}

    forced = _run(opensearch, rt, False, experiments, impressions=90.0, force=True)
    part = _part(forced, "impressions")
    assert part.deleted == 1 and left() == {"plain-new"}
    assert any("experiment long-test" in w and "loses" in w for w in part.warnings)


def test_the_server_runs_retention_when_told_to(
    opensearch: OpenSearch, rt: config.Settings
) -> None:
    """AFFINITY_RETENTION_SERVE=on: the events writer's recovery thread runs retention when it
    prunes the journal (at start, then every PRUNE_EVERY_S), with the loaded boost profiles."""
    Pipeline(opensearch, rt, BOOST).ingest(
        [_event("served", 0, NOW - 9 * DAY_S), _event("served", 1, NOW)], now=WRITTEN
    )
    app = create_app(replace(rt, retention_serve=True))
    committer = committer_for(app)
    assert not isinstance(committer, str), committer
    try:
        deadline = time.monotonic() + 60
        while _logged(opensearch, rt, "served") != {"served-1"}:
            assert time.monotonic() < deadline, "the server's retention did not run"
            time.sleep(0.2)
    finally:
        committer.stop()
    retired = user_ops.export(opensearch, rt, "served")["retired"]
    assert retired["counters"]["events"] == 1


# --------------------------------------------------------------------------- the command
def test_the_command_plans_runs_and_explains(opensearch: OpenSearch, rt: config.Settings) -> None:
    Pipeline(opensearch, rt, BOOST).ingest(
        [_event("cli", 0, NOW - 9 * DAY_S), _event("cli", 1, NOW)], now=WRITTEN
    )
    env = {
        "OPENSEARCH_URL": rt.opensearch_url,
        "AFFINITY_INDEX_PREFIX": rt.indices.prefix,
        "AFFINITY_SECRET": rt.secret or "",
        "AFFINITY_PROFILES_DIR": str(rt.boost_dir),
    }
    runner = CliRunner()
    plan = runner.invoke(cli.main, ["retention", "plan"], env=env, catch_exceptions=False)
    assert plan.exit_code == 0, plan.output
    assert "would delete 1 events of 1 users older than" in plan.output
    assert "6 days (600 half-lives of 0.01 days, boost profile 'default')" in plan.output
    assert "dry run: nothing was deleted" in plan.output
    assert _logged(opensearch, rt, "cli") == {"cli-0", "cli-1"}

    run = runner.invoke(cli.main, ["retention", "run", "--json"], env=env, catch_exceptions=False)
    assert run.exit_code == 0, run.output
    parts = {p["name"]: p for p in json.loads(run.output)["indices"]}
    assert parts["events"]["deleted"] == 1 and parts["events"]["cutoff_time"]
    assert _logged(opensearch, rt, "cli") == {"cli-1"}
    rebuild = runner.invoke(cli.main, ["profile", "rebuild", "--quiet"], env=env)
    assert "from 1 events and the retired totals of 1 more" in rebuild.output, rebuild.output

    bad = runner.invoke(
        cli.main, ["retention", "plan"], env={**env, "AFFINITY_RETENTION_EVENTS_DAYS": "soon"}
    )
    assert bad.exit_code == 1 and "Traceback" not in bad.output
    assert "AFFINITY_RETENTION_EVENTS_DAYS='soon': write `safe`, `off` or" in bad.output
