"""The fault suite, short: break something under load, then check that every acknowledged
event is stored, none is folded twice, every profile equals a rebuild from the log, and the
system got there by itself. bench/fault_suite.py runs the same faults long and prints the
table in docs/benchmarks.md.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import orjson
import pytest
from opensearchpy import OpenSearch
from own_indices import own_shop

from rewriter import config
from rewriter.boost.profile import load_boost_profiles
from rewriter.measure import faults
from rewriter.measure.faulty_engine import Faults, faulty_engine
from rewriter.measure.serve_thread import free_port, serve_process

pytestmark = [pytest.mark.engine, pytest.mark.fault]

ITEMS = [f"f{n}" for n in range(50)]
BRANDS = ("acme", "zenit", "nova", "orbit")
CATEGORIES = ("shoes", "hats", "bags")
# a short run in CI; bench/fault_suite.py --long runs the large one
USERS = int(os.environ.get("AFFINITY_FAULT_USERS", "40"))
PER_USER = int(os.environ.get("AFFINITY_FAULT_EVENTS_PER_USER", "30"))


@pytest.fixture(scope="module")
def shop(opensearch: OpenSearch, bootstrapped: config.Settings) -> config.Settings:
    """This module's own indices (bootstrapped) and a small catalog."""
    items = (
        {
            "id": item,
            "title": f"item {n}",
            "brand": BRANDS[n % len(BRANDS)],
            "category": [CATEGORIES[n % len(CATEGORIES)]],
        }
        for n, item in enumerate(ITEMS)
    )
    s = own_shop(opensearch, bootstrapped, "fault-", items)
    return s


@pytest.fixture(scope="module")
def boost(shop: config.Settings):
    return load_boost_profiles(shop.boost_dir)["default"]


def _users(tag: str) -> list[str]:
    return [f"{tag}-u{n}" for n in range(USERS)]


def _settled(es: OpenSearch, s: config.Settings, boost, users: list[str]) -> bool:
    check = faults.profile_problems(es, s, boost, users)
    return not check.differ and check.duplicates == 0


@pytest.fixture()
def proxy(shop: config.Settings) -> Iterator[dict]:
    """`affinity serve` in its own process, restartable on the same port."""
    port = free_port()
    state = {"port": port, "url": f"http://127.0.0.1:{port}"}
    state["proc"] = serve_process(shop, port)
    yield state
    state["proc"].kill()
    state["proc"].wait(10)


def test_proxy_killed_during_http_ingest(
    opensearch: OpenSearch, shop: config.Settings, boost, proxy: dict
) -> None:
    """kill -9 of the proxy mid-ingest: clients retry until acknowledged; a new process
    recovers what the dead one wrote but did not fold."""
    users = _users("pk")
    batches = faults.event_batches(users, ITEMS, PER_USER, 20, prefix="pk")
    killed = threading.Event()
    restarted: list[float] = []

    def kill_then_restart(n: int) -> None:
        if n == len(batches) // 3 and not killed.is_set():
            killed.set()
            proxy["proc"].send_signal(signal.SIGKILL)
            proxy["proc"].wait(10)
            proxy["proc"] = serve_process(shop, proxy["port"])
            restarted.append(time.monotonic())

    delivery = faults.deliver(proxy["url"], batches, clients=4, on_progress=kill_then_restart)
    assert killed.is_set() and restarted
    sent = {e["event_id"] for b in batches for e in b}
    assert delivery.acknowledged == sent, delivery.rejected
    load = f"{len(sent)} events, {len(users)} users, 4 clients"
    result = faults.row(
        "kill -9 of the proxy", load, opensearch, shop, boost, users, delivery, restarted[0]
    )
    faults.report(result)
    assert result.stored == len(sent) and result.duplicates == 0
    assert result.profiles_differ == 0 and result.recovery_s is not None


def test_importer_killed_mid_file(
    opensearch: OpenSearch, shop: config.Settings, boost, tmp_path: Path
) -> None:
    """kill -9 of `affinity ingest events` mid-file, then the same command again: every
    event of the file is stored once and every profile equals a rebuild."""
    users = _users("ik")
    batches = faults.event_batches(users, ITEMS, PER_USER * 4, 1000, prefix="ik")
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(e) for b in batches for e in b) + b"\n")
    env = {
        **os.environ,
        "OPENSEARCH_URL": shop.opensearch_url,
        "AFFINITY_INDEX_PREFIX": shop.indices.prefix,
        "AFFINITY_SECRET": shop.secret or "",
        "AFFINITY_PROFILES_DIR": str(shop.boost_dir),
    }
    cmd = [sys.executable, "-m", "cli", "ingest", "events", str(path), "--quiet"]
    first = subprocess.Popen(cmd, env=env, cwd=config.ROOT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and first.poll() is None:
        opensearch.indices.refresh(index=shop.indices.events)
        stored = opensearch.count(index=shop.indices.events, q="event_id:ik-*")["count"]
        if stored > 0:
            break
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    restarted = time.monotonic()
    again = subprocess.run(cmd, env=env, cwd=config.ROOT, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    sent = {e["event_id"] for b in batches for e in b}
    delivery = faults.Delivery(acknowledged=sent)  # an import acknowledges its whole file
    load = f"{len(sent)} events in a file, {len(users)} users"
    result = faults.row(
        "kill -9 of the importer", load, opensearch, shop, boost, users, delivery, restarted, 10
    )
    faults.report(result)
    assert result.stored == len(sent) and result.duplicates == 0
    assert result.profiles_differ == 0


def test_read_only_events_index_during_ingest(
    opensearch: OpenSearch, shop: config.Settings, boost, proxy: dict
) -> None:
    """A full disk (OpenSearch's read-only-allow-delete block on the events index) while
    clients send: nothing is acknowledged that is not stored, and once the block is lifted
    the clients' retries get through and every profile equals a rebuild."""
    users = _users("ro")
    batches = faults.event_batches(users, ITEMS, PER_USER, 20, prefix="ro")
    block = {"index.blocks.read_only_allow_delete": True}
    blocked = threading.Event()
    lifted: list[float] = []

    def lift() -> None:
        unblock = {"index.blocks.read_only_allow_delete": None}
        opensearch.indices.put_settings(index=shop.indices.events, body=unblock)
        lifted.append(time.monotonic())

    def block_for_a_while(n: int) -> None:
        if n == 2 and not blocked.is_set():  # early: the run is short
            blocked.set()
            opensearch.indices.put_settings(index=shop.indices.events, body=block)
            timer = threading.Timer(8.0, lift)  # longer than the pipeline's 429 back-off (3.5 s)
            timer.start()

    delivery = faults.deliver(proxy["url"], batches, clients=4, on_progress=block_for_a_while)
    sent = {e["event_id"] for b in batches for e in b}
    assert blocked.is_set()
    assert delivery.acknowledged == sent, list(delivery.rejected.items())[:3]
    assert delivery.statuses[503] > 0, delivery.statuses  # the block reached the clients
    load = f"{len(sent)} events, {len(users)} users, 4 clients, 8 s block"
    result = faults.row(
        "read-only events index (full disk)",
        load,
        opensearch,
        shop,
        boost,
        users,
        delivery,
        lifted[0],
    )
    faults.report(result)
    assert result.stored == len(sent) and result.duplicates == 0
    assert result.profiles_differ == 0 and result.recovery_s is not None


def test_engine_answering_per_document_errors_and_429s(
    opensearch: OpenSearch, shop: config.Settings, boost
) -> None:
    """The engine (behind a faulty proxy) answers 30% of _mget documents with per-document
    errors and refuses 20% of _bulk requests with 429: nothing acknowledged is lost, and no
    event is stored or folded as if its item were not in the catalog."""
    users = _users("pe")
    batches = faults.event_batches(users, ITEMS, PER_USER, 20, prefix="pe")
    injected = Faults(mget_error_share=0.3, bulk_429_share=0.2)
    sent = {e["event_id"] for b in batches for e in b}
    fault = "per-document _mget errors and _bulk 429s"
    with faulty_engine(shop.opensearch_url, injected) as url:
        port = free_port()
        proc = serve_process(replace(shop, url=url), port)
        try:
            started = time.monotonic()
            delivery = faults.deliver(f"http://127.0.0.1:{port}", batches, clients=4)
            assert delivery.acknowledged == sent, list(delivery.rejected.items())[:3]
            load = f"{len(sent)} events, {len(users)} users, 4 clients; {injected.injected}"
            # the proxy keeps running (behind the faulty engine): its recovery folds what
            # a refused profile write left pending
            result = faults.row(fault, load, opensearch, shop, boost, users, delivery, started)
        finally:
            proc.kill()
            proc.wait(10)
    assert injected.injected["mget_errors"] > 0 and injected.injected["bulk_429"] > 0
    faults.report(result)
    assert result.stored == len(sent) and result.duplicates == 0
    assert result.profiles_differ == 0 and result.recovery_s is not None
    unknown = opensearch.count(
        index=shop.indices.events, body={"query": {"term": {"known_item": False}}}
    )
    assert unknown["count"] == 0
