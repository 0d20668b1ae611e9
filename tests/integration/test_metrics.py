"""`/_affinity/metrics` against the real engine: counts per endpoint and mode, latency
histograms, rejected events by reason, the profile cache, queues, engine errors."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import replace

import httpx
import pytest
from opensearchpy import OpenSearch, helpers
from prometheus_client.parser import text_string_to_metric_families

from rewriter import config
from rewriter.engine.bootstrap import bootstrap_cluster
from rewriter.measure.serve_thread import free_port, serve_in_thread
from rewriter.serve.app import create_app
from rewriter.serve.metrics import CONTENT_TYPE

pytestmark = pytest.mark.engine

SEARCH = {"query": {"match": {"title": "running"}}, "size": 5}


@pytest.fixture(scope="module")
def mx(opensearch: OpenSearch, bootstrapped: config.Settings) -> config.Settings:
    s = replace(bootstrapped, indices=config.Indices(prefix=f"{bootstrapped.indices.prefix}mx-"))
    bootstrap_cluster(opensearch, s)
    docs = (
        {
            "_index": s.indices.catalog,
            "_id": f"i{n}",
            "_source": {"id": f"i{n}", "title": f"item {n} running", "brand": f"b{n % 3}"},
        }
        for n in range(20)
    )
    helpers.bulk(opensearch, docs, refresh=True)
    return s


@pytest.fixture(scope="module")
def url(mx: config.Settings) -> Iterator[str]:
    with serve_in_thread(create_app(mx)) as base:
        yield base


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_searches_by_mode_and_events_by_reason(url: str, mx: config.Settings) -> None:
    path = f"/{mx.indices.catalog}/_search"
    user = "mx-user"
    events = [
        {"event_id": f"mx-{n}", "user_id": user, "type": "purchase", "item_id": "i1"}
        for n in range(3)
    ]
    events.append({"event_id": "mx-bad", "user_id": user, "type": "teleport", "item_id": "i1"})
    for event in events:
        event["timestamp"] = time.time()
    r = httpx.post(f"{url}/events?wait_for_profiles=true", json=events, timeout=30)
    assert r.status_code == 202 and r.json()["rejected"] == 1, r.text
    for _ in range(3):  # personalized by the user's profile
        assert httpx.post(f"{url}{path}", json=SEARCH, headers={"X-User-Id": user}).is_success
    for _ in range(2):
        off = {"X-User-Id": user, "X-Personalization": "off"}
        assert httpx.post(f"{url}{path}", json=SEARCH, headers=off).is_success
    modes = [httpx.post(f"{url}{path}", json=SEARCH, headers=off).json()["personalization"]]
    assert httpx.get(f"{url}/_cat/indices").status_code == 403

    r = httpx.get(f"{url}/_affinity/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"] == CONTENT_TYPE
    m = _samples(r.text)
    search = "/{index}/_search"
    total = "affinity_requests_total"
    assert _value(m, total, endpoint=search, mode="affinity", status="200") == 3
    off_mode = modes[0].get("mode") or "none"
    assert _value(m, total, endpoint=search, mode=off_mode, status="200") == 3
    assert _value(m, total, endpoint="/events", mode="-", status="202") == 1
    assert _value(m, total, endpoint="/{path:path}", mode="-", status="403") == 1
    count = _value(m, "affinity_request_seconds_count", endpoint=search, mode="affinity")
    assert count == 3
    fast = _value(m, "affinity_request_seconds_bucket", endpoint=search, mode="affinity", le="+Inf")
    assert fast == 3
    assert _value(m, "affinity_events_rejected_total", reason="type") == 1
    assert _value(m, "affinity_fold_lag_events") == 0  # the request waited for its fold
    assert ("affinity_events_pending", ()) in m
    assert (
        _value(m, "affinity_profile_cache_hits_total")
        + _value(m, "affinity_profile_cache_misses_total")
        >= 3
    )
    assert ("affinity_impressions_dropped_total", ()) in m
    assert ("affinity_impressions_queued", ()) in m
    assert _value(m, "affinity_engine_errors_total", kind="unavailable") == 0


def test_engine_errors_are_counted(mx: config.Settings) -> None:
    dead = replace(mx, url=f"http://127.0.0.1:{free_port()}", timeout=2.0)
    app = create_app(dead)

    async def go() -> str:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://proxy") as c:
            r = await c.post(f"/{mx.indices.catalog}/_search", json=SEARCH)
            assert r.status_code == 503
            return (await c.get("/_affinity/metrics")).text

    m = _samples(asyncio.run(go()))
    assert _value(m, "affinity_engine_errors_total", kind="unavailable") >= 1
    assert _value(
        m, "affinity_requests_total", endpoint="/{index}/_search", mode="popularity", status="503"
    )
