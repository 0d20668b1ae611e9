"""The two engine requests of a personalized search, and what each option costs (not a test).

Side by side, interleaved, on the data `affinity bench` generates (index prefix `bench-`):

- a search and a profile GET, with the response gzipped (what aiohttp and httpx ask for by
  default) or not (what the proxy asks for);
- the profile GET of a heavy profile (10,000 events, 64 sessions) with the whole _source,
  with `_source_excludes` of the rings, and with `_source_includes` of the rest.

    affinity engine start --port 9230 --data-dir /tmp/bench-engine
    OPENSEARCH_URL=http://127.0.0.1:9230 affinity bench          # generates bench- data once
    python bench/engine_requests_bench.py --url http://127.0.0.1:9230
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable

import httpx
import orjson

from rewriter.events.event import Event
from rewriter.measure.search_bench import _queries
from rewriter.profiles.doc import to_source
from rewriter.profiles.fold import FoldConfig, fold

RINGS = ("recent_batches", "recent_sessions")


def heavy_profile(now: float, events: int = 10_000) -> dict:
    rng = random.Random(3)
    stream = [
        Event(
            event_id=f"h{j}",
            user_id="bench-heavy",
            type=rng.choice(["view", "click", "purchase"]),
            item_id=str(j),
            timestamp=now - rng.uniform(0, 90 * 86400),
            session_id=f"sess-{rng.randrange(10**9):09d}-{j // 20}",
            attributes={
                "brand": (f"b{rng.randrange(300)}",),
                "category": (f"c{rng.randrange(60)}",),
            },
        )
        for j in range(events)
    ]
    source = to_source(fold(None, stream, FoldConfig(), now=now))
    source["recent_batches"] = [f"batch-{i:032x}" for i in range(20)]
    return source


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:9200")
    parser.add_argument("--prefix", default="bench-")
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()
    catalog, profiles = f"{args.prefix}catalog", f"{args.prefix}affinity-profiles"
    http = httpx.Client(base_url=args.url, timeout=30)
    gz, plain = {"accept-encoding": "gzip"}, {"accept-encoding": "identity"}

    source = heavy_profile(time.time())
    put = http.put(
        f"/{profiles}/_doc/bench-heavy",
        content=orjson.dumps(source),
        headers={"content-type": "application/json"},
    )
    put.raise_for_status()
    rest = ",".join(k for k in source if k not in RINGS)
    without = {k: v for k, v in source.items() if k not in RINGS}
    sizes = len(orjson.dumps(source)), len(orjson.dumps(without))
    print(f"heavy profile: {sizes[0]} bytes, {sizes[1]} without the rings")

    queries = _queries(args.n)
    doc = f"/{profiles}/_doc/bench-heavy"
    cases: dict[str, Callable[[int], httpx.Response]] = {
        "search, gzip": lambda i: http.post(f"/{catalog}/_search", json=queries[i], headers=gz),
        "search, identity": lambda i: http.post(
            f"/{catalog}/_search", json=queries[i], headers=plain
        ),
        "profile GET, gzip": lambda i: http.get(doc, params={"realtime": "true"}, headers=gz),
        "profile GET, identity": lambda i: http.get(
            doc, params={"realtime": "true"}, headers=plain
        ),
        "profile GET, _source_excludes rings": lambda i: http.get(
            doc, params={"realtime": "true", "_source_excludes": ",".join(RINGS)}, headers=plain
        ),
        "profile GET, _source_includes the rest": lambda i: http.get(
            doc, params={"realtime": "true", "_source_includes": rest}, headers=plain
        ),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for i in range(args.n):
        for name, call in cases.items():
            started = time.perf_counter()
            call(i).raise_for_status()
            times[name].append((time.perf_counter() - started) * 1000)
    warm = args.n // 10
    for name, values in times.items():
        print(f"{name:40s} p50 {statistics.median(values[warm:]):.3f} ms")
    http.delete(doc)


if __name__ == "__main__":
    main()
