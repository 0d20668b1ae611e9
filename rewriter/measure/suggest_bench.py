"""`affinity bench --suggest`: autocomplete latency per keystroke (issue 11, item 3).

The keystrokes are the first 1..6 characters of real suggestion texts (titles and queries
of the catalog's suggestions index, sampled with a seed). Each keystroke is sent, side by
side in one run, (a) directly to OpenSearch (the suggestion search of ranking/suggest.py),
(b) to `GET /_affinity/suggest` with `X-Personalization: off` (generic proxy), and (c) to
the same endpoint personalized, for a user drawn from `users` (raw ids, e.g. MovieLens
1..610). Sequential: p50 and p99 latency per case. The proxy runs as its own process
(`affinity serve`), as in production.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx
import orjson
from opensearchpy import helpers

from rewriter import config
from rewriter.engine.client import connect
from rewriter.measure.search_bench import Result
from rewriter.measure.serve_thread import serve_process
from rewriter.ranking.suggest import DEFAULT_SIZE, MAX_RECENT, suggest_body, suggestions_index

CASES = ("a direct OpenSearch", "b proxy generic", "c proxy personalized")


def keystrokes(texts: Sequence[str], n: int, seed: int = 7, longest: int = 6) -> list[str]:
    """`n` prefixes of 1..`longest` characters of the texts (each text typed in full order,
    texts in a seeded random order)."""
    rng = random.Random(seed)
    order = list(texts)
    rng.shuffle(order)
    out: list[str] = []
    for text in order:
        out += [text[:k] for k in range(1, min(longest, len(text)) + 1) if text[:k].strip()]
        if len(out) >= n:
            break
    return out[:n]


def run(
    s: config.Settings,
    index: str,
    boost: str,
    users: Sequence[str],
    n: int = 1000,
    port: int = 8897,
    log: Callable[[str], None] = print,
) -> list[Result]:
    es = connect(s)
    alias = suggestions_index(index)
    wanted = {"query": {"terms": {"kind": ["title", "query"]}}}
    texts = [h["_source"]["text"] for h in helpers.scan(es, index=alias, query=wanted)]
    prefixes = keystrokes(sorted(texts), n)
    log(f"{len(prefixes)} keystrokes from {len(texts)} titles and queries of {alias}")
    proc = serve_process(s, port, {"AFFINITY_IMPRESSIONS": "off"})
    rng = random.Random(11)
    times: dict[str, list[float]] = {c: [] for c in CASES}
    try:
        with (
            httpx.Client(base_url=s.opensearch_url, timeout=30) as engine,
            httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as proxy,
        ):
            for warm in prefixes[:50]:  # JIT, caches, connections
                _direct(engine, alias, warm)
                proxy.get("/_affinity/suggest", params={"index": index, "q": warm})
            for prefix in prefixes:
                user = rng.choice(users)
                params = {"index": index, "q": prefix, "size": str(DEFAULT_SIZE)}
                personal = {"X-User-Id": user, "X-Boost-Profile": boost}
                generic = {**personal, "X-Personalization": "off"}
                times[CASES[0]].append(_timed(lambda p=prefix: _direct(engine, alias, p)))
                for case, headers in ((CASES[1], generic), (CASES[2], personal)):
                    times[case].append(_timed(lambda h=headers, q=params: _suggest(proxy, q, h)))
    finally:
        proc.terminate()
        proc.wait(10)
    return [_result(name, ms) for name, ms in times.items()]


def _suggest(
    proxy: httpx.Client, params: dict[str, str], headers: dict[str, str]
) -> httpx.Response:
    return proxy.get("/_affinity/suggest", params=params, headers=headers)


def _direct(engine: httpx.Client, alias: str, prefix: str) -> httpx.Response:
    body = orjson.dumps(suggest_body(" ".join(prefix.split()), DEFAULT_SIZE + MAX_RECENT))
    headers = {"content-type": "application/json"}
    return engine.post(f"/{alias}/_search", content=body, headers=headers)


def _timed(call: Callable[[], httpx.Response]) -> float:
    start = time.perf_counter()
    response = call()
    elapsed = (time.perf_counter() - start) * 1000
    response.raise_for_status()
    return elapsed


def _result(name: str, ms: Sequence[float]) -> Result:
    cuts = statistics.quantiles(ms, n=100)
    return Result(name, statistics.median(ms), cuts[98], 1000.0 / statistics.fmean(ms))


def report(results: Sequence[Result]) -> str:
    a, b, c = results
    lines = [f"{'case':<24}{'p50 ms':>9}{'p99 ms':>9}{'p50/a':>8}{'p50/b':>8}"]
    for r in results:
        lines.append(
            f"{r.name:<24}{r.p50_ms:9.2f}{r.p99_ms:9.2f}"
            f"{r.p50_ms / a.p50_ms:8.2f}{r.p50_ms / b.p50_ms:8.2f}"
        )
    lines.append(
        f"personalized p99 {c.p99_ms:.2f} ms (goal <= 20 ms); personalized p50 / generic proxy "
        f"p50: {c.p50_ms / b.p50_ms:.2f} (goal <= 1.3)"
    )
    return "\n".join(lines)


def default_users(path: Path | None) -> list[str]:
    """Raw user ids: the `userId`s of a MovieLens ratings.csv, else 1..610."""
    if path is None or not path.exists():
        return [str(u) for u in range(1, 611)]
    with path.open(encoding="utf-8") as handle:
        next(handle, None)
        return sorted({line.split(",", 1)[0] for line in handle if line.strip()})
