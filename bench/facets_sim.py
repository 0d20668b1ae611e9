"""A simulated run for `affinity facets report` (issue 11, item 9) on the MovieLens demo data.

Users 1..N (MovieLens ids) search through an in-process proxy with a genre facet; a
simulated user picks their favourite genre when the facet shows it (more often near the top),
and a facet_select event goes to POST /events with the search's query_id. Segments come
from a copy of profiles/movielens.yaml with `facet_select` weighted and two segments by
event count (`heavy` >= 200 rated films, `light` < 50); light users are simulated as rarely
refining by genre, so the report has something to say. Then run
`affinity facets report --since 1h`.

    python bench/facets_sim.py --users 300   # with OPENSEARCH_URL, AFFINITY_INDEX_PREFIX, ...
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import httpx

from rewriter import config
from rewriter.measure.serve_thread import serve_in_thread
from rewriter.serve.app import create_app

ROOT = Path(__file__).resolve().parent.parent
SEGMENTS = """
event_weights: {rating_high: 5, rating_low: 0.5, view: 1, facet_select: 3}
segments:
  heavy: {when: {events: {gte: 200}}}
  light: {when: {events: {lt: 50}}}
"""
WORDS = ["the", "man", "love", "night", "war", "star", "dead", "life", "king", "girl"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--searches", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    base = (ROOT / "profiles" / "movielens.yaml").read_text()
    text = _without_block(base, "event_weights") + SEGMENTS
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "movielens.yaml").write_text(text)
        s = replace(config.load(), boost_dir=Path(tmp), fold_profile="movielens")
        app = create_app(s, boost_dir=tmp)
        index = s.indices.catalog
        picked = shown = 0
        with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=30) as client:
            for user in range(1, args.users + 1):
                headers = {"X-User-Id": str(user), "X-Boost-Profile": "movielens"}
                for _ in range(args.searches):
                    body = {
                        "query": {"match": {"title": rng.choice(WORDS)}},
                        "size": 10,
                        "aggs": {"genres": {"terms": {"field": "category", "size": 8}}},
                    }
                    found = client.post(f"/{index}/_search", json=body, headers=headers).json()
                    shown += 1
                    choice = _pick(found, rng)
                    if choice is None:
                        continue
                    event = {
                        "type": "facet_select",
                        "facet": {"attribute": "category", "value": choice},
                        "query_id": found["personalization"]["query_id"],
                        "timestamp": time.time(),
                    }
                    posted = client.post("/events", json=event, headers=headers)
                    if posted.status_code != 202:
                        raise SystemExit(f"POST /events: {posted.status_code} {posted.text}")
                    picked += 1
            app.state.proxy.impressions.flush(30)
        print(f"{shown} searches, {picked} facet selections")


def _without_block(text: str, key: str) -> str:
    lines, out, skipping = text.splitlines(), [], False
    for line in lines:
        if line.startswith(f"{key}:"):
            skipping = True
            continue
        if skipping and line.startswith(" "):
            continue
        skipping = False
        out.append(line)
    return "\n".join(out) + "\n"


def _pick(found: dict, rng: random.Random) -> str | None:
    """The simulated user: their favourite genre if shown (60% in the top 3, 20% lower);
    light users (thin profiles) pick it 2% of the time; otherwise a random shown genre 5%."""
    info = found["personalization"]
    buckets = found["aggregations"]["genres"]["buckets"]
    favored = [i for i, b in enumerate(buckets) if b.get("favored")]
    light = "light" in info.get("segments", [])
    if favored:
        at = favored[0]
        p = 0.02 if light else 0.6 if at < 3 else 0.2
        if rng.random() < p:
            return buckets[at]["key"]
    if buckets and not light and rng.random() < 0.05:
        return rng.choice(buckets)["key"]
    return None


if __name__ == "__main__":
    main()
