"""The proxy's profile cache across processes, against the real engine: a profile changed
through one proxy (its fold) is seen by another proxy, which had it cached, through the change
feed; an erasure done by a third process (the CLI's) drops it from every proxy's cache."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from opensearchpy import OpenSearch, helpers

from rewriter import config
from rewriter.boost.profile import load_boost_profiles
from rewriter.engine.bootstrap import bootstrap_cluster
from rewriter.ingest import user_ops
from rewriter.measure.serve_thread import free_port, serve_process

pytestmark = pytest.mark.engine

ROOT = Path(__file__).resolve().parents[2]
SEARCH = {"query": {"match": {"title": "running"}}, "size": 5}
DEADLINE_S = 10.0
"""How long the test waits for a change to show (the feed's bound is ~250 ms; CI is loaded)."""


@pytest.fixture(scope="module")
def pc(opensearch: OpenSearch, bootstrapped: config.Settings) -> config.Settings:
    s = replace(
        bootstrapped,
        indices=config.Indices(prefix=f"{bootstrapped.indices.prefix}pc-"),
        boost_dir=ROOT / "profiles",
        fold_profile=None,
    )
    bootstrap_cluster(opensearch, s)
    docs = (
        {
            "_index": s.indices.catalog,
            "_id": f"i{n}",
            "_source": {"id": f"i{n}", "title": f"item {n} running", "brand": f"b{n % 3}"},
        }
        for n in range(30)
    )
    helpers.bulk(opensearch, docs, refresh=True)
    return s


@pytest.fixture(scope="module")
def proxies(pc: config.Settings) -> Iterator[tuple[str, str]]:
    """Two `affinity serve` processes on the same indices."""
    ports = [free_port(), free_port()]
    started = []
    try:
        for port in ports:
            started.append(serve_process(pc, port))
        yield tuple(f"http://127.0.0.1:{p}" for p in ports)  # type: ignore[misc]
    finally:
        for proc in started:
            proc.terminate()
            proc.wait(15)


def _personal(url: str, pc: config.Settings, user: str) -> bool:
    """Whether a search for `user` through `url` was ranked by the user's own profile."""
    return _search(url, pc, user).get("mode") == "affinity"


def _search(url: str, pc: config.Settings, user: str) -> dict[str, Any]:
    r = httpx.post(
        f"{url}/{pc.indices.catalog}/_search", json=SEARCH, headers={"X-User-Id": user}, timeout=30
    )
    assert r.status_code == 200, r.text
    return r.json()["personalization"]


def _cache(url: str) -> dict[str, Any]:
    return httpx.get(f"{url}/_affinity/health", timeout=10).json()["profile_cache"]


def _until(check: Callable[[], bool], what: str) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < DEADLINE_S:
        if check():
            return time.monotonic() - t0
        time.sleep(0.02)
    raise AssertionError(f"{what} not seen within {DEADLINE_S} s")


def test_a_change_through_one_proxy_reaches_the_other_proxys_cache(
    pc: config.Settings, proxies: tuple[str, str], opensearch: OpenSearch
) -> None:
    a, b = proxies
    user = "pc-user-1"
    _until(lambda: _cache(b)["change_feed"]["trusted"], "proxy B reading the change feed")
    before = _cache(b)
    assert not _personal(b, pc, user)  # no profile yet (popularity): cached as none
    assert not _personal(b, pc, user)
    after = _cache(b)
    assert after["hits"] >= before["hits"] + 1, "B serves the user's (missing) profile from memory"

    events = [
        {
            "event_id": f"{user}-{n}",
            "user_id": user,
            "type": "purchase",
            "item_id": "i1",
            "timestamp": time.time(),
        }
        for n in range(5)
    ]
    r = httpx.post(f"{a}/events?wait_for_profiles=true", json=events, timeout=30)
    assert r.status_code == 202 and r.json()["folded"], r.text
    assert _personal(a, pc, user)  # A's own fold dropped its entry at once
    took = _until(lambda: _personal(b, pc, user), "the new profile on proxy B")
    print(f"proxy B saw the change {took * 1000:.0f} ms after the 202")
    served = _cache(b)["hits"]
    assert _personal(b, pc, user)
    assert _cache(b)["hits"] > served, "B caches the new profile again"

    # an erasure by another process (the CLI) drops the profile from both proxies' caches
    boost = load_boost_profiles(pc.boost_dir)["default"]
    user_ops.delete(opensearch, pc, boost, user)
    for url in (a, b):
        _until(lambda url=url: not _personal(url, pc, user), f"the erasure on {url}")


def test_health_reports_the_cache(proxies: tuple[str, str]) -> None:
    cache = _cache(proxies[0])
    assert cache["capacity_bytes"] == 64_000_000
    assert {"hits", "misses", "hit_rate", "entries", "bytes", "evictions"} <= set(cache)
    assert cache["bytes"] <= cache["capacity_bytes"]
