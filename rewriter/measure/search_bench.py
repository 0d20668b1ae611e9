"""`affinity bench`: proxy and personalization cost, as ratios against plain OpenSearch.

One run, side by side, on the same generated data and the same query set:
(a) direct to OpenSearch, (b) through the proxy with personalization off, (c) through the
proxy personalized with the rescore shape, (d) personalized with function_score, (f) rescore
when each user searches 5 times in a row (the profile cache serves 4 of 5), (g) rescore
through a second proxy that logs no impressions (AFFINITY_IMPRESSIONS=off; compare its QPS
with c's: its sequential latency also pays for waking a process that sat idle while the
other cases ran), and (e) the
rewritten rescore bodies sent directly (the engine's share of the cost). Each is timed
sequentially (latency p50/p99) and with a few client threads (QPS). The proxy runs as its own
process (`affinity serve`), as in production.

CPU µs/request: the proxy process's own CPU time (user + system, every thread: the
impression writer and the change feed's poller included) over a case's QPS run, divided by
its requests; "-" for the cases that bypass the proxy. With `baseline` (a source tree of an
older commit, e.g. `git archive COMMIT | tar -x -C DIR`), a third proxy runs that code, and
cases b0 and c0 repeat b and c through it: before and after, side by side in one run.
"""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import orjson
from opensearchpy import OpenSearch, helpers

from rewriter import config, privacy
from rewriter.boost.profile import parse_boost_profile
from rewriter.engine.bootstrap import bootstrap_cluster
from rewriter.engine.client import connect
from rewriter.events.event import Event
from rewriter.measure.serve_thread import serve_process
from rewriter.profiles.doc import to_source
from rewriter.profiles.fold import FoldConfig, fold, fold_config

WORDS = [f"w{i}" for i in range(400)]


@dataclass(frozen=True)
class Result:
    name: str
    p50_ms: float
    p99_ms: float
    qps: float
    cpu_us: float | None = None


def _items(n: int, rng: random.Random) -> Iterator[dict]:
    for i in range(n):
        yield {
            "id": str(i),
            "title": " ".join(rng.choices(WORDS, k=rng.randint(3, 8))),
            "brand": f"b{int(rng.paretovariate(1.2)) % 300}",
            "category": sorted({f"c{rng.randrange(60)}" for _ in range(rng.randint(1, 2))}),
            "price": round(rng.uniform(1, 500), 2),
        }


def profile_source(
    pseudo: str, u: int, items: int, rng: random.Random, cfg: FoldConfig, now: float
) -> dict:
    """A generated user's stored profile (`profile_events`)."""
    return to_source(fold(None, profile_events(pseudo, u, items, rng, now), cfg))


def profile_events(pseudo: str, u: int, items: int, rng: random.Random, now: float) -> list[Event]:
    """A generated user's events: 5 to 60 views, clicks and purchases over 90 days, across
    40 brands and 60 categories."""
    return [
        Event(
            event_id=f"b{u}-{j}",
            user_id=pseudo,
            type=rng.choice(["view", "click", "purchase"]),
            item_id=str(rng.randrange(items)),
            timestamp=now - rng.uniform(0, 90 * 86400),
            attributes={
                "brand": (f"b{rng.randrange(40)}",),
                "category": (f"c{rng.randrange(60)}",),
            },
        )
        for j in range(rng.randint(5, 60))
    ]


def load_data(es: OpenSearch, s: config.Settings, items: int, users: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    index = s.indices.catalog
    helpers.bulk(
        es,
        ({"_index": index, "_id": d["id"], "_source": d} for d in _items(items, rng)),
        chunk_size=5000,
        request_timeout=120,
    )
    es.indices.refresh(index=index)
    secret = config.user_secret(s)
    cfg = FoldConfig(horizons=())  # the profiles before issue 14: long-term only
    with_horizons = fold_config(parse_boost_profile(HORIZONS_PROFILE))
    now = time.time()

    def profiles() -> Iterator[dict]:
        for u in range(users):
            pseudo = privacy.pseudonymize(f"user-{u}", secret)
            events = profile_events(pseudo, u, items, rng, now)
            source = to_source(fold(None, events, cfg))
            yield {"_index": s.indices.profiles, "_id": pseudo, "_source": source}
            # the same events as another user, folded with the session and item horizons
            h_pseudo = privacy.pseudonymize(f"huser-{u}", secret)
            newest = sorted(events, key=lambda e: e.timestamp)[-8:]  # mid-session: the
            recent = {e.event_id: now - rng.uniform(0, 3600) for e in newest}  # last hour
            h_events = [
                replace(e, user_id=h_pseudo, timestamp=recent.get(e.event_id, e.timestamp))
                for e in events
            ]
            h_source = to_source(fold(None, h_events, with_horizons))
            yield {"_index": s.indices.profiles, "_id": h_pseudo, "_source": h_source}

    helpers.bulk(es, profiles(), chunk_size=1000, request_timeout=120)
    es.indices.refresh(index=s.indices.profiles)


def _queries(n: int, seed: int = 11) -> list[dict]:
    rng = random.Random(seed)
    return [
        {"size": 10, "query": {"match": {"title": " ".join(rng.sample(WORDS, rng.randint(1, 2)))}}}
        for _ in range(n)
    ]


def _latencies(cases: dict[str, Callable[[int], None]], n: int) -> dict[str, list[float]]:
    """Sequential latency, interleaved: query i goes to every case before query i + 1, so
    drift on a busy machine (GC, other processes) hits all cases alike."""
    lat: dict[str, list[float]] = {name: [] for name in cases}
    for i in range(n):
        for name, call in cases.items():
            t0 = time.perf_counter()
            call(i)
            lat[name].append((time.perf_counter() - t0) * 1000)
    return lat


def _qps(call: Callable[[int], None], n: int, threads: int) -> float:
    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(call, range(n)))
    return n / (time.perf_counter() - t0)


def _result(name: str, lat: list[float], qps: float, cpu_us: float | None = None) -> Result:
    q = statistics.quantiles(lat, n=100)
    return Result(name, statistics.median(lat), q[98], qps, cpu_us)


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) a live process has used: /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_us_per_request(
    pid: int | None, call: Callable[[int], None], n: int, threads: int
) -> tuple[float, float | None]:
    """QPS of `call` over n requests, and the CPU µs per request of process `pid` (after
    a pause that lets its background writers finish the run's work)."""
    if pid is None:
        return _qps(call, n, threads), None
    time.sleep(0.5)
    before = process_cpu_s(pid)
    qps = _qps(call, n, threads)
    time.sleep(0.5)
    return qps, (process_cpu_s(pid) - before) / n * 1e6


HORIZONS_PROFILE = """name: bench-horizons
alpha: 1.0
shape: rescore
window: 100
attributes: {brand: 1.0, category: 1.0}
session: {half_life_hours: 2, weights: {brand: 1.0, category: 1.0, item: 1.0}}
item_memory: {weight: 1.0, half_life_days: 30, top_k: 10}
"""
"""Case h: the long-term attributes plus both horizons, for the same users' events with the
newest 8 moved into the last hour (a user mid-session: the session horizon has values)."""


PROFILE = """name: {name}
alpha: 1.0
shape: {shape}
window: 100
attributes: {{brand: 1.0, category: 1.0}}
session: {{weights: {{}}}}
"""


def _start_proxy(
    s: config.Settings,
    port: int,
    boost_dir: Path,
    impressions: bool = True,
    root: Path | None = None,
) -> subprocess.Popen:
    env = {"AFFINITY_IMPRESSIONS": "on" if impressions else "off"}
    return serve_process(replace(s, boost_dir=boost_dir), port, env, root=root)


def run(
    s: config.Settings,
    items: int = 100_000,
    users: int = 10_000,
    queries: int = 500,
    threads: int = 4,
    port: int = 8899,
    log: Callable[[str], None] = print,
    baseline: Path | None = None,
) -> list[Result]:

    s = replace(s, secret=s.secret or "bench-secret-0123456789abcdef0123")
    es = connect(s, timeout=120)
    if (
        not es.indices.exists(index=s.indices.catalog)
        or es.count(index=s.indices.catalog)["count"] != items
        or not es.exists(
            index=s.indices.profiles,
            id=privacy.pseudonymize("huser-0", config.user_secret(s)),
        )
    ):
        log(f"generating {items} items and {users} user profiles ...")
        bootstrap_cluster(es, s)
        load_data(es, s, items, users)
    bodies = [orjson.dumps(b) for b in _queries(queries)]
    user_ids = [f"user-{i % users}" for i in range(queries)]
    session = [f"user-{(i // 5 + 5000) % users}" for i in range(queries)]  # 5 searches a user
    h_user_ids = [f"huser-{i % users}" for i in range(queries)]
    path = f"/{s.indices.catalog}/_search"
    with tempfile.TemporaryDirectory() as tmp:
        for name, shape in (("default", "rescore"), ("bench-fs", "function_score")):
            Path(tmp, f"{name}.yaml").write_text(PROFILE.format(name=name, shape=shape))
        Path(tmp, "bench-horizons.yaml").write_text(HORIZONS_PROFILE)
        rewritten = _rewritten(es, replace(s, boost_dir=Path(tmp)), bodies, user_ids)
        proxy = _start_proxy(s, port, Path(tmp))
        quiet = _start_proxy(s, port + 1, Path(tmp), impressions=False)
        old = _start_proxy(s, port + 2, Path(tmp), root=baseline) if baseline else None
        pids = {"b": proxy.pid, "c": proxy.pid, "d": proxy.pid, "f": proxy.pid, "g": quiet.pid}
        try:
            # identity, as the proxy asks the engine: a gzipped response costs the engine
            # ~0.3 ms, and an application beside the engine would not pay it either
            direct = httpx.Client(
                base_url=s.opensearch_url, timeout=30, headers={"accept-encoding": "identity"}
            )
            via = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
            via_quiet = httpx.Client(base_url=f"http://127.0.0.1:{port + 1}", timeout=30)
            json_h = {"content-type": "application/json"}

            def call(client: httpx.Client, headers: Callable[[int], dict]) -> Callable:
                def go(i: int) -> None:
                    r = client.post(path, content=bodies[i], headers={**json_h, **headers(i)})
                    r.raise_for_status()

                return go

            cases = {
                "a direct": call(direct, lambda i: {}),
                "b proxy, off": call(via, lambda i: {"X-Personalization": "off"}),
                "c proxy, rescore": call(via, lambda i: {"X-User-Id": user_ids[i]}),
                "d proxy, function_score": call(
                    via, lambda i: {"X-User-Id": user_ids[i], "X-Boost-Profile": "bench-fs"}
                ),
                "f proxy, rescore, 5/user": call(via, lambda i: {"X-User-Id": session[i]}),
                "g proxy, rescore, no impr.": call(via_quiet, lambda i: {"X-User-Id": user_ids[i]}),
                "h proxy, rescore+horizons": call(
                    via, lambda i: {"X-User-Id": h_user_ids[i], "X-Boost-Profile": "bench-horizons"}
                ),
                "e direct, rewritten rescore": lambda i: direct.post(
                    path, content=rewritten[i], headers=json_h
                ).raise_for_status(),
            }
            if old is not None:
                via_old = httpx.Client(base_url=f"http://127.0.0.1:{port + 2}", timeout=30)
                cases["b0 OLD proxy, off"] = call(via_old, lambda i: {"X-Personalization": "off"})
                cases["c0 OLD proxy, rescore"] = call(via_old, lambda i: {"X-User-Id": user_ids[i]})
                pids |= {"b0": old.pid, "c0": old.pid}
            for fn in cases.values():  # warm up caches and JIT
                for i in range(min(100, queries)):
                    fn(i)
            lat = _latencies(cases, queries)
            log("  latency: done")
            results = []
            for name, fn in cases.items():
                pid = pids.get(name.split()[0])
                qps, cpu_us = _cpu_us_per_request(pid, fn, queries, threads)
                results.append(_result(name, lat[name], qps, cpu_us))
                log(f"  {name} QPS: done")
        finally:
            for process in (proxy, quiet, old):
                if process is not None:
                    process.terminate()
                    process.wait(10)
    return results


def _rewritten(
    es: OpenSearch, s: config.Settings, bodies: list[bytes], user_ids: list[str]
) -> list[bytes]:
    """The personalized bodies, rewritten in-process: the engine's share of the cost."""
    from rewriter.serve.api import Personalizer

    p = Personalizer(es, s)
    return [
        orjson.dumps(p.rewrite(s.indices.catalog, orjson.loads(b), u).body)
        for b, u in zip(bodies, user_ids, strict=True)
    ]


def report(results: list[Result]) -> str:
    base = results[0]
    head = f"{'case':<28}{'p50 ms':>9}{'p99 ms':>9}{'QPS':>9}{'p50/a':>8}{'p99/a':>8}"
    lines = [f"{head}{'QPS/a':>8}{'CPU µs':>9}"]
    for r in results:
        cpu = "-" if r.cpu_us is None else f"{r.cpu_us:.0f}"
        lines.append(
            f"{r.name:<28}{r.p50_ms:9.2f}{r.p99_ms:9.2f}{r.qps:9.0f}"
            f"{r.p50_ms / base.p50_ms:8.2f}{r.p99_ms / base.p99_ms:8.2f}"
            f"{r.qps / base.qps:8.2f}{cpu:>9}"
        )
    b = next(r for r in results if r.name.startswith("b"))
    c = next(r for r in results if r.name.startswith("c"))
    e = next(r for r in results if r.name.startswith("e"))
    lines.append(
        f"proxy overhead p50: {b.p50_ms - base.p50_ms:+.2f} ms (goal <= 0.5 ms); "
        f"personalized rescore p50 / direct plain: {c.p50_ms / base.p50_ms:.2f} (goal <= 1.5); "
        f"engine share (rewritten rescore sent directly / plain): {e.p50_ms / base.p50_ms:.2f}"
    )
    h = next((r for r in results if r.name.startswith("h")), None)
    if h is not None:
        lines.append(
            f"session and item horizons: rescore p50 {h.p50_ms / c.p50_ms:.2f}x of c, QPS "
            f"{h.qps / c.qps:.2f}x of c (goal: p50 within 1.10x)"
        )
    return "\n".join(lines)
