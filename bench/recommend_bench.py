"""Latency of carousels and placements through a running proxy: p50 and p99 per case, beside
a plain `_search` of the same catalog through the same proxy as the reference (ratios, one
run, side by side, as docs/benchmarks.md asks).

    .venv/bin/python bench/recommend_bench.py --proxy http://127.0.0.1:8812 --index catalog \
        --boost-profile movielens --users 1-610 --items 1,1258,2571 --requests 500
"""

from __future__ import annotations

import argparse
import random
import time

import httpx
import numpy as np


def cases(index: str, items: list[str]) -> dict[str, tuple[str, str, dict | None]]:
    return {
        "search (reference)": ("POST", f"/{index}/_search", {"query": {"match": {"title": "man"}}}),
        "for_you": ("POST", "/_affinity/recommend", {"index": index, "model": "for_you"}),
        "related": ("POST", "/_affinity/recommend", {"index": index, "model": "related"}),
        "trending": ("POST", "/_affinity/recommend", {"index": index, "model": "trending"}),
        "recently_viewed": (
            "POST",
            "/_affinity/recommend",
            {"index": index, "model": "recently_viewed"},
        ),
        "placements": ("GET", "/_affinity/placements?slot=home_hero", None),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--proxy", default="http://127.0.0.1:8800")
    parser.add_argument("--index", default="catalog")
    parser.add_argument("--boost-profile", default="movielens")
    parser.add_argument("--users", default="1-610")
    parser.add_argument("--items", default="1,1258,2571")
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()
    low, high = (int(x) for x in args.users.split("-"))
    items = args.items.split(",")
    rng = random.Random(1)
    table = cases(args.index, items)
    times: dict[str, list[float]] = {name: [] for name in table}
    with httpx.Client(base_url=args.proxy, timeout=30) as client:
        for n in range(args.requests + 20):  # interleaved, so load drifts hit every case alike
            user = str(rng.randint(low, high))
            headers = {"X-User-Id": user, "X-Boost-Profile": args.boost_profile}
            for name, (method, path, body) in table.items():
                if body is not None and body.get("model") == "related":
                    body = {**body, "item": rng.choice(items)}
                start = time.perf_counter()
                r = client.request(method, path, json=body, headers=headers)
                elapsed = time.perf_counter() - start
                r.raise_for_status()
                if n >= 20:  # warm-up
                    times[name].append(elapsed * 1000)
    ref = np.percentile(times["search (reference)"], [50, 99])
    print(f"| case | p50 ms | p99 ms | p50 / search | p99 / search |  ({args.requests} each)")
    print("|---|---|---|---|---|")
    for name, ms in times.items():
        p50, p99 = np.percentile(ms, [50, 99])
        print(f"| {name} | {p50:.1f} | {p99:.1f} | {p50 / ref[0]:.2f} | {p99 / ref[1]:.2f} |")


if __name__ == "__main__":
    main()
