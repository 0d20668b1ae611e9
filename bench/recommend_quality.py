"""Carousel quality on MovieLens, next-item protocol: for each user with at least MIN_RATINGS
ratings, the last rating of 4 or more is held out and everything the user rated before it is
the training log (later ratings are dropped too, so nothing leaks). Profiles and pair tables
are built from the training log in scratch indices (`--prefix`, default `rq-`), then each
user's carousel is asked through the real proxy and judged against the held-out film:

- Hit@10 and NDCG@10 (one relevant item: 1 / log2(rank + 1)), mean over users with a 95%
  t interval (measure/stats.py `mean_ci`);
- catalog coverage: distinct films recommended over all users / films in the catalog;
- intra-list diversity: 1 − the mean pairwise Jaccard similarity of the films' genres.

Rows: `for_you` (personalized), `popularity` (the same request with `X-Personalization: off`:
the catalog by popularity minus what the user rated), `related` to the user's last training
film (co-ratings in sessions, re-ranked by the user's affinity) and `related, no affinity`.

    OPENSEARCH_URL=... AFFINITY_SECRET=... .venv/bin/python bench/recommend_quality.py
"""

from __future__ import annotations

import argparse
import csv
import itertools
import math
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import httpx

from rewriter import config
from rewriter.engine.client import connect
from rewriter.measure import stats
from rewriter.measure.serve_thread import serve_in_thread
from rewriter.recommend import build
from rewriter.serve.app import create_app

ROOT = Path(__file__).resolve().parent.parent
MIN_RATINGS = 5
K = 10


def split(ratings: Path) -> tuple[list[list[str]], dict[str, str], dict[str, str], list[str]]:
    """(training rows, user -> held-out film, user -> last training film, header)."""
    with ratings.open() as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = list(reader)
    by_user: dict[str, list[list[str]]] = defaultdict(list)
    for row in rows:
        by_user[row[0]].append(row)
    train: list[list[str]] = []
    held: dict[str, str] = {}
    last: dict[str, str] = {}
    for user, mine in by_user.items():
        mine.sort(key=lambda r: (int(r[3]), r[1]))
        highs = [i for i, r in enumerate(mine) if float(r[2]) >= 4.0]
        if len(mine) < MIN_RATINGS or not highs or highs[-1] < MIN_RATINGS - 1:
            train += mine
            continue
        cut = highs[-1]
        held[user] = mine[cut][1]
        last[user] = mine[cut - 1][1]
        train += mine[:cut]
    return train, held, last, header


def genres(movies: Path) -> dict[str, frozenset[str]]:
    with movies.open() as f:
        return {r["movieId"]: frozenset(r["genres"].split("|")) for r in csv.DictReader(f)}


def load(prefix: str, train: list[list[str]], header: list[str], movies: Path) -> None:
    env = {**os.environ, "AFFINITY_INDEX_PREFIX": prefix}
    affinity = str(ROOT / ".venv" / "bin" / "affinity")
    with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as f:
        csv.writer(f).writerows([header, *train])
        path = f.name
    for args in (
        ["bootstrap"],
        ["ingest", "catalog", str(movies), "--quiet"],
        [
            "ingest",
            "events",
            path,
            "--format",
            "movielens",
            "--boost-profile",
            "movielens",
            "--quiet",
        ],
    ):
        print("affinity", *args, file=sys.stderr)
        subprocess.run([affinity, *args], env=env, check=True)


def ndcg(ids: list[str], target: str) -> float:
    return 1.0 / math.log2(ids.index(target) + 2) if target in ids else 0.0


def diversity(ids: list[str], g: dict[str, frozenset[str]]) -> float:
    pairs = list(itertools.combinations(ids, 2))
    if not pairs:
        return float("nan")
    sims = [len(g[a] & g[b]) / max(len(g[a] | g[b]), 1) for a, b in pairs]
    return 1.0 - sum(sims) / len(sims)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ratings", type=Path, default=ROOT / "data/movielens/ratings.csv")
    parser.add_argument("--movies", type=Path, default=ROOT / "data/movielens/movies.csv")
    parser.add_argument("--prefix", default="rq-")
    parser.add_argument("--reuse", action="store_true", help="Skip loading (indices exist).")
    parser.add_argument("--users", type=int, default=0, help="Judge the first N users only.")
    parser.add_argument("--models", default="", help="Comma-separated rows to run (default all).")
    parser.add_argument("--profiles", type=Path, default=ROOT / "profiles")
    parser.add_argument("--no-build", action="store_true", help="Keep the pair tables as built.")
    args = parser.parse_args()
    train, held, last, header = split(args.ratings)
    g = genres(args.movies)
    if not args.reuse:
        load(args.prefix, train, header, args.movies)
    s = replace(config.load(), indices=config.Indices(prefix=args.prefix), impressions=False)
    if not args.no_build:
        result = build.build(connect(s, timeout=120), s, full=True)
        print(
            f"pair tables: {result.sessions} sessions, {result.with_neighbors} items with "
            "neighbours",
            file=sys.stderr,
        )
    users = sorted(held, key=int)[: args.users or None]
    runs = {
        "for_you": ({"model": "for_you"}, {}),
        "popularity": ({"model": "for_you"}, {"X-Personalization": "off"}),
        "related": ({"model": "related"}, {}),
        "related, no affinity": ({"model": "related"}, {"X-Personalization": "off"}),
    }
    if args.models:
        runs = {k: v for k, v in runs.items() if k in args.models.split(",")}
    scores: dict[str, dict[str, list[float]]] = {n: defaultdict(list) for n in runs}
    shown: dict[str, set[str]] = {n: set() for n in runs}
    sources: dict[str, dict[str, int]] = {n: defaultdict(int) for n in runs}
    app = create_app(s, boost_dir=str(args.profiles))
    with serve_in_thread(app) as url, httpx.Client(timeout=30) as client:
        for user in users:
            for name, (body, headers) in runs.items():
                req = {**body, "index": s.indices.catalog, "size": K}
                if body["model"] == "related":
                    req["item"] = last[user]
                r = client.post(
                    f"{url}/_affinity/recommend",
                    json=req,
                    headers={"X-User-Id": user, "X-Boost-Profile": "movielens", **headers},
                )
                r.raise_for_status()
                got = r.json()
                ids = [h["_id"] for h in got["hits"]["hits"]]
                scores[name]["hit"].append(float(held[user] in ids))
                scores[name]["ndcg"].append(ndcg(ids, held[user]))
                d = diversity(ids, g)
                if not math.isnan(d):
                    scores[name]["diversity"].append(d)
                shown[name].update(ids)
                sources[name][got["personalization"]["source"]] += 1
    print(f"\nMovieLens next-item, {len(users)} users, catalog {len(g)} films\n")
    print("| carousel | Hit@10 [95% CI] | NDCG@10 [95% CI] | coverage | diversity | sources |")
    print("|---|---|---|---|---|---|")
    for name in runs:
        hit, ndcg_ = stats.mean_ci(scores[name]["hit"]), stats.mean_ci(scores[name]["ndcg"])
        div = sum(scores[name]["diversity"]) / max(len(scores[name]["diversity"]), 1)
        src = ", ".join(f"{k} {v}" for k, v in sorted(sources[name].items()))
        print(
            f"| {name} | {hit[0]:.4f} [{hit[1]:.4f}, {hit[2]:.4f}] | {ndcg_[0]:.4f} "
            f"[{ndcg_[1]:.4f}, {ndcg_[2]:.4f}] | {len(shown[name]) / len(g):.3f} | {div:.3f} "
            f"| {src} |"
        )


if __name__ == "__main__":
    main()
