"""Events benchmark (not a test): import and POST /events throughput, freshness, profile size.

Run against a node of its own, e.g.

    .venv/bin/affinity engine start --port 9230 --data-dir /tmp/bench-engine
    .venv/bin/python bench/events_bench.py --url http://127.0.0.1:9230
    .venv/bin/affinity engine stop --data-dir /tmp/bench-engine

What it measures (all under the index prefix --prefix, deleted first):

1. batch import: a generated JSONL file (--events events of --users users over a 5,000-item
   catalog) through `affinity ingest events`'s code path (parse, Pipeline.ingest in batches
   of 5,000, popularity); events folded per second, wall clock. Also the MovieLens ratings
   (data/movielens) with the movielens boost profile.
2. POST /events: `affinity serve` in a subprocess, clients posting --post-batch events per
   request from --post-concurrency connections; events acknowledged (written and folded)
   per second.
3. freshness: --freshness single-event POSTs, one at a time; time from sending the POST until
   a realtime GET of the profile (what the proxy reads) contains the event; p50/p99. Then
   with two proxies: POST to one, search through the other (which has the user's profile
   cached) until its ranking uses the event (the change feed: profiles/changes.py).
4. profile size: one user with --profile-events events over 500 brands x 200 categories;
   bytes of the stored profile document, and of its parts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
from opensearchpy import OpenSearch, helpers

from rewriter import config, privacy
from rewriter.engine.bootstrap import bootstrap_cluster
from rewriter.engine.client import connect, wait_for_health
from rewriter.ingest import catalog_files, event_files
from rewriter.ingest.pipeline import Pipeline
from rewriter.measure.serve_thread import free_port, serve_process
from rewriter.profiles.doc import decode

ROOT = Path(__file__).resolve().parent.parent

ITEMS = 5_000
BRANDS = 500
CATEGORIES = 200
MOVIELENS = ROOT / "data" / "movielens"
TYPES = ("view", "view", "view", "click", "click", "add_to_cart", "purchase")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- setup
def setup(url: str, prefix: str) -> tuple[config.Settings, OpenSearch]:
    s = replace(
        config.load(),
        url=url,
        indices=config.Indices(prefix=prefix),
        secret=os.environ.get("AFFINITY_SECRET") or "bench-secret-0123456789abcdef",
        boost_dir=ROOT / "profiles",
        fold_profile=None,
    )
    es = connect(s, timeout=120)
    wait_for_health(es, "yellow", 60)
    es.indices.delete(index=f"{prefix}*", ignore_unavailable=True, expand_wildcards="all")
    bootstrap_cluster(es, s)
    rng = random.Random(1)
    docs = (
        {
            "_index": s.indices.catalog,
            "_id": f"i{n}",
            "_source": {
                "id": f"i{n}",
                "title": f"item {n}",
                "brand": f"brand-{rng.randrange(BRANDS)}",
                "category": [f"cat-{rng.randrange(CATEGORIES)}"],
            },
        }
        for n in range(ITEMS)
    )
    helpers.bulk(es, docs, refresh=True, chunk_size=5000)
    return s, es


def event(rng: random.Random, user: str, n: int, now: float) -> dict[str, Any]:
    return {
        "event_id": f"{user}-{n}",
        "user_id": user,
        "type": rng.choice(TYPES),
        "item_id": f"i{rng.randrange(ITEMS)}",
        "timestamp": now - rng.random() * 90 * 86_400,
        "session_id": f"{user}-s{n // 20}",
        "context": {"device": rng.choice(("mobile", "desktop")), "geo": rng.choice(("DE", "FR"))},
    }


def write_events(path: Path, users: int, per_user: int, tag: str) -> int:
    rng, now = random.Random(tag), time.time()
    with path.open("w") as out:
        for n in range(per_user):
            for u in range(users):
                out.write(json.dumps(event(rng, f"{tag}{u}", n, now)) + "\n")
    return users * per_user


# --------------------------------------------------------------------------- 1. batch import
def import_file(
    s: config.Settings, es: OpenSearch, path: Path, fmt: str, boost_name: str | None = None
) -> dict[str, Any]:
    boost = event_files.fold_boost(s, boost_name, fmt)
    pipeline = Pipeline(es, s, boost)
    t0 = time.perf_counter()
    with path.open(encoding="utf-8", newline="") as handle:
        parsed = event_files.parse_events(handle, fmt, tuple(boost.event_weights))
        result = event_files.ingest_events(pipeline, parsed)
    seconds = time.perf_counter() - t0
    return {
        "file": path.name,
        "events": result.accepted,
        "folded": result.folded,
        "rejected": len(result.rejected),
        "seconds": round(seconds, 2),
        "folded_per_s": round(result.folded / seconds),
    }


def movielens(s: config.Settings, es: OpenSearch) -> dict[str, Any] | None:
    if not (MOVIELENS / "ratings.csv").exists():
        return None
    parsed = catalog_files.parse_catalog(MOVIELENS / "movies.csv", "movielens", None)
    catalog_files.load_catalog(es, s.indices.catalog, parsed)
    return import_file(s, es, MOVIELENS / "ratings.csv", "movielens", "movielens")


# --------------------------------------------------------------------------- 2./3. POST /events
class Server:
    """`affinity serve` in a subprocess (its own interpreter: no GIL shared with clients)."""

    def __init__(self, s: config.Settings, workers: int = 1) -> None:
        self.port = free_port()
        # fold with the default profile, whatever the caller's environment says
        self.proc = serve_process(s, self.port, {"AFFINITY_FOLD_PROFILE": ""}, workers)
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


class RawClient:
    """A minimal HTTP/1.1 keep-alive client: httpx spends ~4 ms of CPU per request, which on
    a 2-core machine would measure the client instead of the server."""

    def __init__(self, url: str) -> None:
        self.host, _, port = url.removeprefix("http://").partition(":")
        self.port = int(port)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        status_line = await self.reader.readline()
        headers: dict[str, str] = {}
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        content = await self.reader.readexactly(int(headers.get("content-length", "0")))
        return int(status_line.split()[1]), headers, content

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def wait_until_folded(es: OpenSearch, s: config.Settings, timeout: float = 300.0) -> None:
    """Until the journal has no `pending` batch: every acknowledged event is folded."""
    deadline = time.monotonic() + timeout
    query = {"query": {"term": {"state": "pending"}}}
    while time.monotonic() < deadline:
        es.indices.refresh(index=s.indices.journal)
        if es.count(index=s.indices.journal, body=query)["count"] == 0:
            return
        time.sleep(0.02)
    raise RuntimeError(f"batches still pending after {timeout} s")


async def post_load(
    url: str,
    total: int,
    batch: int,
    concurrency: int,
    folded: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """`total` events in requests of `batch` from `concurrency` connections. events_per_s:
    acknowledged (durable) per second; folded_per_s: until `folded()` returns too."""
    rng, now = random.Random(f"post{batch}-{time.time()}"), time.time()
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for r in range(total // batch):
        body = [
            event(rng, f"p{batch}-{rng.randrange(2000)}", r * batch + k, now) for k in range(batch)
        ]
        queue.put_nowait(
            json.dumps(
                [{**e, "event_id": f"{e['event_id']}-{rng.random()}"} for e in body]
            ).encode()
        )
    requests = queue.qsize()
    accepted, statuses = 0, {}

    async def client() -> None:
        nonlocal accepted
        conn = RawClient(url)
        while not queue.empty():
            body = queue.get_nowait()
            status, headers, content = await conn.post("/events", body)
            statuses[status] = statuses.get(status, 0) + 1
            if status == 202:
                accepted += json.loads(content)["accepted"]
            elif status == 429:
                await asyncio.sleep(float(headers.get("retry-after", "1")))
                queue.put_nowait(body)
        await conn.close()

    t0 = time.perf_counter()
    cpu0 = time.process_time()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    seconds = time.perf_counter() - t0
    folded()
    fold_seconds = time.perf_counter() - t0
    return {
        "batch": batch,
        "concurrency": concurrency,
        "events": accepted,
        "seconds": round(seconds, 2),
        "events_per_s": round(accepted / seconds),
        "folded_seconds": round(fold_seconds, 2),
        "folded_per_s": round(accepted / fold_seconds),
        "requests_per_s": round(requests / seconds),
        "client_cpu_s": round(time.process_time() - cpu0, 2),
        "statuses": statuses,
    }


def freshness(url: str, s: config.Settings, es: OpenSearch, n: int) -> dict[str, Any]:
    """POST one event, then realtime-GET the profile until it holds the event."""
    secret = config.user_secret(s)
    delays: list[float] = []
    with httpx.Client(base_url=url, timeout=30) as c:
        for i in range(n):
            user = f"fresh-{i % 100}"
            ev = {
                "event_id": f"fresh-{i}",
                "user_id": user,
                "type": "click",
                "item_id": f"i{i % ITEMS}",
                "timestamp": time.time(),
            }
            pseudo = privacy.pseudonymize(user, secret)
            doc = es.get(index=s.indices.profiles, id=pseudo, realtime=True, ignore=[404])
            seen = ((doc.get("_source") or {}).get("counters") or {}).get("events", 0)
            t0 = time.perf_counter()
            r = c.post("/events", json=[ev])
            assert r.status_code == 202, r.text
            while True:
                doc = es.get(index=s.indices.profiles, id=pseudo, realtime=True, ignore=[404])
                if ((doc.get("_source") or {}).get("counters") or {}).get("events", 0) > seen:
                    break
                if time.perf_counter() - t0 > 10:
                    raise RuntimeError(f"event {ev['event_id']} not in the profile after 10 s")
            delays.append(time.perf_counter() - t0)
    delays.sort()
    return {
        "events": n,
        "p50_ms": round(1000 * statistics.median(delays), 1),
        "p99_ms": round(1000 * delays[int(0.99 * (len(delays) - 1))], 1),
        "max_ms": round(1000 * delays[-1], 1),
    }


def _alpha_eff(c: httpx.Client, index: str, user: str) -> float:
    r = c.post(f"/{index}/_search", json=FRESH_SEARCH, headers={"X-User-Id": user})
    r.raise_for_status()
    info = r.json()["personalization"]
    return float(info.get("alpha_eff") or 0.0) if info.get("mode") == "affinity" else 0.0


FRESH_SEARCH = {"query": {"match_all": {}}, "size": 1}


def freshness_two_proxies(url_a: str, url_b: str, s: config.Settings, n: int) -> dict[str, Any]:
    """POST one event to proxy A; search through proxy B (whose profile cache holds the
    user: it searched just before) until its ranking uses the event: alpha_eff grows with
    every event (alpha * m / (m + k)). From the POST sent to the change seen on B."""
    delays: list[float] = []
    index = s.indices.catalog
    with (
        httpx.Client(base_url=url_a, timeout=30) as a,
        httpx.Client(base_url=url_b, timeout=30) as b,
    ):
        for i in range(n):
            user = f"fresh2-{i % 100}"
            ev = {
                "event_id": f"fresh2-{i}",
                "user_id": user,
                "type": "click",
                "item_id": f"i{i % ITEMS}",
                "timestamp": time.time(),
            }
            before = _alpha_eff(b, index, user)
            t0 = time.perf_counter()
            r = a.post("/events", json=[ev])
            assert r.status_code == 202, r.text
            while _alpha_eff(b, index, user) <= before:
                if time.perf_counter() - t0 > 10:
                    raise RuntimeError(f"event {ev['event_id']} not ranked on B after 10 s")
            delays.append(time.perf_counter() - t0)
    delays.sort()
    return {
        "events": n,
        "p50_ms": round(1000 * statistics.median(delays), 1),
        "p99_ms": round(1000 * delays[int(0.99 * (len(delays) - 1))], 1),
        "max_ms": round(1000 * delays[-1], 1),
    }


# --------------------------------------------------------------------------- 4. profile size
def profile_size(s: config.Settings, es: OpenSearch, n: int, tmp: Path) -> dict[str, Any]:
    path = tmp / "heavy.jsonl"
    write_events(path, 1, n, "heavy")
    import_file(s, es, path, "jsonl")
    pseudo = privacy.pseudonymize("heavy0", config.user_secret(s))
    source = es.get(index=s.indices.profiles, id=pseudo)["_source"]

    def size(value: object) -> int:
        return len(json.dumps(value, separators=(",", ":")).encode())

    return {
        "events": source["counters"]["events"],
        "bytes": size(source),
        "affinities_bytes": size(source["affinities"]),
        "recent_batches_bytes": size(source.get("recent_batches", [])),
        "recent_sessions_bytes": size(source["recent_sessions"]),
        "values_per_attribute": {a: len(v) for a, v in decode(source)["affinities"].items()},
    }


# --------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--url", default=os.environ.get("OPENSEARCH_URL", "http://127.0.0.1:9230"))
    parser.add_argument("--prefix", default="evbench-")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--users", type=int, default=5_000)
    parser.add_argument("--post-events", type=int, default=50_000)
    parser.add_argument("--post-batch", type=int, default=100)
    parser.add_argument("--post-concurrency", type=int, default=8)
    parser.add_argument("--freshness", type=int, default=1_000)
    parser.add_argument("--workers", type=int, default=1, help="Server processes for POST.")
    parser.add_argument("--profile-events", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=None, help="Also write the results as JSON.")
    parser.add_argument(
        "--only-freshness",
        action="store_true",
        help="Skip the imports, the POST load and the profile size: freshness only.",
    )
    args = parser.parse_args()

    s, es = setup(args.url, args.prefix)
    results: dict[str, Any] = {"url": args.url, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        path = tmp / "events.jsonl"
        if not args.only_freshness:
            write_events(path, args.users, args.events // args.users, "u")
            _log("1. batch import ...")
            results["import"] = import_file(s, es, path, "jsonl")
            results["import_again_duplicates_s"] = import_file(s, es, path, "jsonl")["seconds"]
            results["import_movielens"] = movielens(s, es)
        _log("2./3. POST /events ...")
        server = Server(s, args.workers)
        second = Server(s)  # a second proxy: freshness through the change feed

        def folded() -> None:
            wait_until_folded(es, s)

        try:
            if not args.only_freshness:
                results["post_single"] = asyncio.run(
                    post_load(server.url, min(args.post_events, 10_000), 1, 32, folded)
                )
                results["post_batched"] = asyncio.run(
                    post_load(
                        server.url, args.post_events, args.post_batch, args.post_concurrency, folded
                    )
                )
            results["freshness"] = freshness(server.url, s, es, args.freshness)
            results["freshness_two_proxies"] = freshness_two_proxies(
                server.url, second.url, s, args.freshness
            )
        finally:
            server.stop()
            second.stop()
        if not args.only_freshness:
            _log("4. profile size ...")
            results["profile_size"] = profile_size(s, es, args.profile_events, tmp)
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
