"""The proxy fuzzer against a real proxy and a real engine: every hand-written hostile request,
then schemathesis cases from the proxy's OpenAPI description and their mutants. No 5xx, no
hang, no private document in a response, and the engine's data unchanged except for what the
accepted events and the logged searches explain (rewriter/measure/fuzz.py).

AFFINITY_FUZZ_REQUESTS sets the number of requests (default 3,000); the long run is
`python bench/fuzz_proxy.py --requests 100000`.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import replace

import httpx
import pytest
from opensearchpy import OpenSearch

from rewriter import config
from rewriter.engine.bootstrap import bootstrap_cluster
from rewriter.measure import fuzz, fuzz_cases, fuzz_generate
from rewriter.measure.serve_thread import serve_in_thread
from rewriter.serve.app import create_app

pytestmark = pytest.mark.engine

REQUESTS = int(os.environ.get("AFFINITY_FUZZ_REQUESTS", "3000"))
SCHEMA_CASES = 150  # schemathesis draws ~20-40 ms each here; mutants cost ~0.1 ms
SEED = int(os.environ.get("AFFINITY_FUZZ_SEED", "20261130"))


@pytest.fixture(scope="module")
def fuzz_settings(
    opensearch: OpenSearch, bootstrapped: config.Settings
) -> Iterator[config.Settings]:
    """Indices of its own (the fuzz world writes a catalog, events and profiles)."""
    settings = replace(
        bootstrapped, indices=config.Indices(prefix=f"{bootstrapped.indices.prefix}fz-")
    )
    bootstrap_cluster(opensearch, settings)
    yield settings
    opensearch.indices.delete(index=f"{settings.indices.prefix}*", ignore_unavailable=True)


def _requests(world: fuzz_cases.World, spec: dict) -> Iterator[fuzz_cases.RawRequest]:
    hostile = fuzz_cases.hostile(world)
    drafts = fuzz_generate.generated(spec, world, SCHEMA_CASES, SEED)
    rest = max(REQUESTS - len(hostile), len(drafts))
    return itertools.chain(hostile, fuzz_generate.fuzzed(drafts, rest, SEED, world))


def test_no_5xx_no_hang_no_leak_and_only_accepted_writes(
    opensearch: OpenSearch, fuzz_settings: config.Settings
) -> None:
    report = fuzz.run(fuzz_settings, opensearch, _requests)
    assert report.ok, report.summary()
    statuses = report.tally.statuses
    # the fuzz reached every layer: searches answered, events stored, refusals of each kind
    assert statuses["200"] > 100 and statuses["202"] > 5, report.summary()
    assert {"400", "403", "405", "413"} <= set(statuses), report.summary()
    assert report.tally.unshaped_count == 0, report.summary()
    assert report.tally.impressions_expected > 100, report.summary()


def test_events_with_numbers_past_64_bits_do_not_fail_the_batch(
    fuzz_settings: config.Settings,
) -> None:
    """Found by the fuzzer: one event with a position of 2**70 failed the group commit's
    bulk request (orjson refuses integers past 64 bits), so every event committed with it got
    a 503. Now it is rejected by name, and the others are stored."""
    good = {"user_id": "big-1", "type": "view", "item_id": "i1", "timestamp": 1_700_000_000}
    bad = {**good, "event_id": "big-pos", "position": 2**70}
    body = [dict(good, event_id="fine"), bad]
    with serve_in_thread(create_app(fuzz_settings)) as url:
        r = httpx.post(f"{url}/events", json=body, timeout=60)
    assert r.status_code == 202, r.text
    summary = r.json()
    assert summary["accepted"] == 1
    assert [(x["index"], x["field"]) for x in summary["rejections"]] == [(1, "position")]
