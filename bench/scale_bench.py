"""Scale benchmark (not a test): many catalog items and many user profiles on one node.

    .venv/bin/affinity engine start --port 9230 --data-dir /tmp/bench-engine
    .venv/bin/python bench/scale_bench.py --url http://127.0.0.1:9230 \
        --items 1000000 --users 1000000

Under the index prefix --prefix (generated once, kept between runs), it reports:

- the import: items/s and profiles/s (generated and folded in Python, bulk-indexed);
- index sizes on disk and the node's heap after the import;
- profile GET (realtime, by id, random users): p50/p99;
- a Zipf-distributed user mix (exponent --zipf) of personalized searches through one proxy
  (`affinity serve`, default cache): p50/p99, the profile cache's hit rate, and direct plain
  searches interleaved with them for the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from opensearchpy import helpers

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rewriter import config, privacy  # noqa: E402
from rewriter.engine.bootstrap import bootstrap_cluster  # noqa: E402
from rewriter.engine.client import connect  # noqa: E402
from rewriter.measure import search_bench  # noqa: E402
from rewriter.measure.serve_thread import free_port, serve_process  # noqa: E402
from rewriter.profiles.fold import FoldConfig  # noqa: E402


def _pct(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    return {
        "p50_ms": round(statistics.median(values), 2),
        "p99_ms": round(values[int(0.99 * (len(values) - 1))], 2),
    }


def _sizes(es: Any, s: config.Settings) -> dict[str, str]:
    rows = es.cat.indices(index=f"{s.indices.prefix}*", format="json", bytes="mb")
    return {r["index"]: f"{r['store.size']} MB, {r['docs.count']} docs" for r in rows}


def _heap(es: Any) -> dict[str, Any]:
    nodes = es.nodes.stats(metric="jvm")["nodes"]
    jvm = next(iter(nodes.values()))["jvm"]["mem"]
    return {
        "heap_used_mb": round(jvm["heap_used_in_bytes"] / 2**20),
        "heap_max_mb": round(jvm["heap_max_in_bytes"] / 2**20),
    }


TEMPLATES = 5_000
"""Distinct profiles folded from generated events; the users share them round robin (a
million folds take an hour of CPU here, and the engine's cost depends on sizes, not on
the values being unique)."""


def load_scaled(es: Any, s: config.Settings, items: int, users: int) -> dict[str, float]:
    """Items as `affinity bench` generates them; `users` profiles of realistic sizes."""
    rng = random.Random(7)
    t0 = time.perf_counter()
    helpers.bulk(
        es,
        (
            {"_index": s.indices.catalog, "_id": d["id"], "_source": d}
            for d in search_bench._items(items, rng)
        ),
        chunk_size=5000,
        request_timeout=300,
    )
    t1 = time.perf_counter()
    now, cfg = time.time(), FoldConfig()
    templates = [
        search_bench.profile_source(f"template-{n}", n, items, rng, cfg, now)
        for n in range(min(TEMPLATES, users))
    ]
    secret = config.user_secret(s)

    def profiles() -> Any:
        for u in range(users):
            pseudo = privacy.pseudonymize(f"user-{u}", secret)
            source = {**templates[u % len(templates)], "user": pseudo}
            yield {"_index": s.indices.profiles, "_id": pseudo, "_source": source}

    helpers.bulk(es, profiles(), chunk_size=2000, request_timeout=300)
    t2 = time.perf_counter()
    es.indices.refresh(index=f"{s.indices.catalog},{s.indices.profiles}")
    return {"items_per_s": round(items / (t1 - t0)), "profiles_per_s": round(users / (t2 - t1))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--url", default=os.environ.get("OPENSEARCH_URL", "http://127.0.0.1:9230"))
    parser.add_argument("--prefix", default="scale-")
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--gets", type=int, default=2_000)
    parser.add_argument("--searches", type=int, default=2_000)
    parser.add_argument("--zipf", type=float, default=1.1)
    args = parser.parse_args()

    base = config.load({**os.environ, "OPENSEARCH_URL": args.url})
    s = replace(
        base,
        indices=config.Indices(prefix=args.prefix),
        secret=base.secret or "bench-secret-0123456789abcdef0123",
    )
    es = connect(s, timeout=300)
    out: dict[str, Any] = {"items": args.items, "users": args.users}
    if not es.indices.exists(index=s.indices.catalog):
        bootstrap_cluster(es, s)
        out["import"] = load_scaled(es, s, args.items, args.users)
    out["index_sizes"] = _sizes(es, s)
    out["node"] = _heap(es)

    rng = random.Random(5)
    secret = config.user_secret(s)
    gets = []
    with httpx.Client(base_url=args.url, timeout=30) as c:
        for _ in range(args.gets):
            pseudo = privacy.pseudonymize(f"user-{rng.randrange(args.users)}", secret)
            t0 = time.perf_counter()
            c.get(f"/{s.indices.profiles}/_doc/{pseudo}", params={"realtime": "true"})
            gets.append((time.perf_counter() - t0) * 1000)
    out["profile_get"] = _pct(gets)

    zipf = np.random.default_rng(3).zipf(args.zipf, size=args.searches * 2)
    users = [f"user-{(int(z) - 1) % args.users}" for z in zipf if z <= args.users][: args.searches]
    bodies = search_bench._queries(len(users))
    port = free_port()
    boost_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"scale-boost-{port}"
    boost_dir.mkdir(exist_ok=True)
    (boost_dir / "default.yaml").write_text(
        search_bench.PROFILE.format(name="default", shape="rescore")
    )
    proxy = serve_process(replace(s, boost_dir=boost_dir), port, {"AFFINITY_IMPRESSIONS": "off"})
    path = f"/{s.indices.catalog}/_search"
    direct, personal = [], []
    try:
        with (
            httpx.Client(base_url=args.url, timeout=30) as d,
            httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as p,
        ):
            for n, (user, body) in enumerate(zip(users, bodies, strict=True)):
                t0 = time.perf_counter()
                d.post(path, json=body).raise_for_status()
                t1 = time.perf_counter()
                p.post(path, json=body, headers={"X-User-Id": user}).raise_for_status()
                t2 = time.perf_counter()
                if n >= 100:  # warm-up
                    direct.append((t1 - t0) * 1000)
                    personal.append((t2 - t1) * 1000)
            cache = p.get("/_affinity/health").json()["profile_cache"]
    finally:
        proxy.terminate()
        proxy.wait(30)
    out["search_direct"] = _pct(direct)
    out["search_personalized"] = _pct(personal)
    out["ratio_p50"] = round(
        out["search_personalized"]["p50_ms"] / out["search_direct"]["p50_ms"], 2
    )
    out["distinct_users"] = len(set(users))
    out["profile_cache"] = cache
    out["node_after"] = _heap(es)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
