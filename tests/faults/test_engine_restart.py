"""The engine stops and starts again under search and event traffic (a node of this module's
own: the session's node serves the other tests). Clients resend until acknowledged; the proxy
must come back by itself (health green, searches 200) and every profile must equal a rebuild,
including events whose catalog lookup ran while the shards were still recovering."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from own_indices import own_shop

from rewriter import config
from rewriter.boost.profile import load_boost_profiles
from rewriter.engine import local_node
from rewriter.engine.client import connect, wait_for_health
from rewriter.measure import faults
from rewriter.measure.serve_thread import free_port, serve_process

pytestmark = [pytest.mark.engine, pytest.mark.fault]

ITEMS = [f"r{n}" for n in range(40)]
BRANDS = ("acme", "zenit", "nova")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int]]:
    data_dir = tmp_path_factory.mktemp("restart-engine")
    port = free_port()
    local_node.start(data_dir, port=port, heap="512m", timeout=180)
    yield data_dir, port
    local_node.stop(data_dir)


@pytest.fixture(scope="module")
def shop(node: tuple[Path, int], settings: config.Settings) -> config.Settings:
    es = connect(replace(settings, url=f"http://127.0.0.1:{node[1]}"), timeout=60)
    wait_for_health(es, "yellow", 120)
    items = (
        {"id": item, "title": f"shoe {n}", "brand": BRANDS[n % 3]} for n, item in enumerate(ITEMS)
    )
    s = own_shop(
        es,
        settings,
        "",
        items,
        url=f"http://127.0.0.1:{node[1]}",
        indices=config.Indices(prefix="restart-"),
    )
    return s


def _searches(url: str, catalog: str, stop: threading.Event, seen: Counter) -> None:
    with httpx.Client(timeout=30.0) as client:  # past the proxy's own engine timeout (10 s)
        n = 0
        while not stop.is_set():
            try:
                r = client.post(
                    f"{url}/{catalog}/_search",
                    json={"query": {"match": {"title": "shoe"}}},
                    headers={"X-User-Id": f"er-u{n % 10}"},
                )
                seen[r.status_code] += 1
            except httpx.HTTPError as exc:
                seen[type(exc).__name__] += 1
            n += 1
            time.sleep(0.02)


def test_engine_restart_under_traffic(node: tuple[Path, int], shop: config.Settings) -> None:
    data_dir, port = node
    es = connect(shop, timeout=60)
    boost = load_boost_profiles(shop.boost_dir)["default"]
    users = [f"er-u{n}" for n in range(int(os.environ.get("AFFINITY_FAULT_USERS", "30")))]
    per_user = int(os.environ.get("AFFINITY_FAULT_EVENTS_PER_USER", "30"))
    batches = faults.event_batches(users, ITEMS, per_user, 10, prefix="er")
    proxy_port = free_port()
    proxy = serve_process(shop, proxy_port)
    url = f"http://127.0.0.1:{proxy_port}"
    stop_searching = threading.Event()
    searches: Counter = Counter()
    searcher = threading.Thread(
        target=_searches, args=(url, shop.indices.catalog, stop_searching, searches), daemon=True
    )
    restarted: list[float] = []

    def restart(n: int) -> None:
        if n == len(batches) // 3 and not restarted:
            local_node.stop(data_dir)
            time.sleep(1.0)
            local_node.start(data_dir, port=port, heap="512m", timeout=180)
            restarted.append(time.monotonic())

    try:
        searcher.start()
        delivery = faults.deliver(url, batches, clients=3, deadline_s=300, on_progress=restart)
        back = faults.wait_for(lambda: _healthy(url, shop), 120)
        stop_searching.set()
        searcher.join(10)
        sent = {e["event_id"] for b in batches for e in b}
        assert restarted and back is not None
        assert delivery.acknowledged == sent, list(delivery.rejected.items())[:3]
        load = f"{len(sent)} events and searches, {len(users)} users, 3 + 1 clients"
        result = faults.row(
            "engine stop and start", load, es, shop, boost, users, delivery, restarted[0]
        )
        result.statuses.update({f"search {k}": v for k, v in searches.items()})
        faults.report(result)
        assert result.stored == len(sent) and result.duplicates == 0
        assert result.profiles_differ == 0 and result.recovery_s is not None
        assert searches[200] > 0 and searches.keys() <= {200, 503, 504}, searches
    finally:
        stop_searching.set()
        proxy.kill()
        proxy.wait(10)


def _healthy(url: str, s: config.Settings) -> bool:
    try:
        health = httpx.get(f"{url}/_affinity/health", timeout=2).json()
        search = httpx.post(f"{url}/{s.indices.catalog}/_search", json={}, timeout=5)
    except httpx.HTTPError:
        return False
    return health.get("status") == "ok" and search.status_code == 200
