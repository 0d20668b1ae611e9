"""The simulated shop (measure/simulate.py) end to end: real proxy, real engine, real indices.

1. A catalog of World items (title "<category> <filler words>", brand, category, price) is
   indexed into the settings' catalog alias.
2. Every user posts a purchase history through `POST /events` (their favourite brand across
   categories): the proxy folds it into their profile.
3. A 50/50 experiment (generic control vs the `default` boost profile) is put in the proxy,
   which is served over HTTP in a thread. Every user searches categories through
   `POST /{catalog}/_search` with `X-User-Id`; the proxy assigns the variant, ranks, tags
   the response (experiment, variant, query_id) and logs the impression.
4. Users click with the position-biased model of measure/simulate.py (with ATTRACT) on what they
   were shown and
   post clicks and carts with the query_id, purchases without it.
5. The report is built from the impressions and events indices, exactly as
   `affinity experiment report` does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import numpy as np
from opensearchpy import OpenSearch, helpers

from rewriter import config
from rewriter.experiments.assignment import Experiment, ExperimentSet, Variant
from rewriter.measure import experiment_report as er
from rewriter.measure import simulate as sim
from rewriter.measure.serve_thread import serve_in_thread
from rewriter.serve.app import create_app

BRANDS = ("acme", "zenit", "orbit", "nova", "lumen", "vertex", "kite", "delta")
CATEGORIES = ("shoes", "jackets", "hats", "bags", "watches", "gloves", "scarves", "belts")
FILLER = ("classic", "light", "urban", "trail", "soft", "pro", "daily", "warm")
HISTORY = 6
ATTRACT = (0.30, 0.05)
"""Click attractiveness (favourite brand, other brands) of the end-to-end run: stronger brand
loyalty than measure/simulate.py's, so that a few hundred users show the lift plainly."""


@dataclass(frozen=True)
class EndToEnd:
    report: er.Report
    searches: int
    impressions: int
    events_sent: int
    seconds: float


@contextmanager
def serve(settings: config.Settings, experiments: ExperimentSet) -> Iterator[tuple[str, object]]:
    """The proxy app with `experiments`, served over HTTP in a thread: (url, app)."""
    app = create_app(settings)
    app.state.proxy.experiments = experiments
    with serve_in_thread(app) as url:
        yield url, app


def index_catalog(es: OpenSearch, index: str, world: sim.World, seed: int) -> None:
    rng = np.random.default_rng(seed)
    it = world.items
    actions = []
    for i in range(len(it["brand"])):
        words = " ".join(rng.choice(FILLER, int(rng.integers(0, 4)), replace=False))
        doc = {
            "id": str(i),
            "title": f"{CATEGORIES[it['category'][i]]} {words}".strip(),
            "brand": BRANDS[it["brand"][i]],
            "category": [CATEGORIES[it["category"][i]]],
            "price": float(it["price"][i]),
        }
        actions.append({"_index": index, "_id": str(i), "_source": doc})
    helpers.bulk(es, actions, refresh="wait_for")


def _history(world: sim.World, user: str, brand: int, rng: np.random.Generator) -> list[dict]:
    """Past views and purchases of the user's favourite brand, across categories."""
    mine = np.flatnonzero(world.items["brand"] == brand)
    now = time.time()
    return [
        {
            "event_id": f"h-{user}-{k}",
            "user_id": user,
            "item_id": str(int(item)),
            "type": "purchase" if k % 3 == 0 else "view",
            "timestamp": now - 3600 + k,
        }
        for k, item in enumerate(rng.choice(mine, HISTORY, replace=False))
    ]


def _session(
    client: httpx.Client,
    catalog: str,
    world: sim.World,
    user: str,
    prefs: tuple[int, int, float, int],
    seed: int,
    attract: tuple[float, float] = ATTRACT,
) -> tuple[int, int]:
    """One user's searches and the events they lead to; (searches, events sent)."""
    brand, category, propensity, searches = prefs
    rng = np.random.default_rng(seed)
    events: list[dict] = []
    for _ in range(searches):
        query = category if rng.random() < sim.P_FAVOURITE_QUERY else rng.integers(0, 8)
        body = {"query": {"match": {"title": CATEGORIES[int(query)]}}, "size": sim.TOP}
        r = client.post(f"/{catalog}/_search", json=body, headers={"X-User-Id": user})
        r.raise_for_status()
        response = r.json()
        qid = response["personalization"]["query_id"]
        for rank, hit in enumerate(response["hits"]["hits"]):
            fav = world.items["brand"][int(hit["_id"])] == brand
            if rng.random() < propensity * sim.EXAMINE[rank] * attract[0 if fav else 1]:
                events += _after_click(user, hit["_id"], qid, rank + 1, world, rng)
    if events:
        client.post("/events", json=events).raise_for_status()
    return searches, len(events)


def _after_click(
    user: str, item: str, qid: str, position: int, world: sim.World, rng: np.random.Generator
) -> list[dict]:
    now = time.time()
    base = {"user_id": user, "item_id": item, "timestamp": now}
    out = [{**base, "type": "click", "query_id": qid, "position": position}]
    if rng.random() < sim.P_CART:
        out.append({**base, "type": "add_to_cart", "query_id": qid, "timestamp": now + 1})
        if rng.random() < sim.P_BUY:
            price = float(world.items["price"][int(item)])
            out.append({**base, "type": "purchase", "value": price, "timestamp": now + 2})
    return out


def run(
    es: OpenSearch,
    settings: config.Settings,
    users: int = 400,
    seed: int = 7,
    log: Callable[[str], None] = lambda m: None,
) -> EndToEnd:
    """The whole simulation; the settings' indices must be bootstrapped."""
    t0 = time.monotonic()
    world = sim.World(brands=len(BRANDS), categories=len(CATEGORIES), seed=seed)
    index_catalog(es, settings.indices.catalog, world, seed)
    rng = np.random.default_rng(seed)
    ids = [f"sim-{seed}-{i}" for i in range(users)]
    brand = rng.integers(0, world.brands, users)
    category = rng.integers(0, world.categories, users)
    propensity = rng.gamma(sim.PROPENSITY_SHAPE, 1 / sim.PROPENSITY_SHAPE, users)
    searches = 1 + rng.poisson(sim.MEAN_SEARCHES - 1, users)
    exp = Experiment(
        name=f"sim-e2e-{seed}",
        index=settings.indices.catalog,
        salt=f"e2e-{seed}",
        start=time.time() - 5,
        control="control",
        variants=(
            Variant("control", 50.0, generic=True),
            Variant("personalized", 50.0, boost_profile="default"),
        ),
    )
    with serve(settings, ExperimentSet([exp])) as (url, app), httpx.Client(base_url=url) as client:
        history = [e for i, u in enumerate(ids) for e in _history(world, u, int(brand[i]), rng)]
        client.post("/events", json=history, timeout=60).raise_for_status()
        log(f"{len(history)} history events posted for {users} users")
        prefs = [
            (int(brand[i]), int(category[i]), float(propensity[i]), int(searches[i]))
            for i in range(users)
        ]
        with ThreadPoolExecutor(8) as pool:
            done = list(
                pool.map(
                    lambda i: _session(
                        client, settings.indices.catalog, world, ids[i], prefs[i], seed + i
                    ),
                    range(users),
                )
            )
        writer = app.state.proxy.impressions  # type: ignore[attr-defined]
        if not writer.flush(30):
            raise RuntimeError("impressions were not written within 30 s")
    impressions, events = er.fetch(es, settings, exp, time.time() + 5)
    log(
        f"{sum(d[0] for d in done)} searches, {len(impressions)} impressions, "
        f"{sum(d[1] for d in done)} events through the proxy"
    )
    report = er.build_report(exp, impressions, events)
    return EndToEnd(
        report,
        sum(d[0] for d in done),
        len(impressions),
        sum(d[1] for d in done),
        time.monotonic() - t0,
    )
