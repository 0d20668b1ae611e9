"""Autocomplete quality on MovieLens (issue 11, item 4): for each user's held-out next liked
film (their last `rating_high`), type the first 1..4 characters of its title and find the
film among the suggestions (`size` 8), personalized vs generic (`X-Personalization: off`).
MRR counts 1/rank within the list (0 when absent), Hit@8 whether it is there.

Nothing of the held-out ratings leaks: profiles are folded from each user's earlier events,
and the suggestions' popularity (distinct users per film) is counted from those events
only. Everything lives under its own index prefix (`prepare` bootstraps it).
"""

from __future__ import annotations

import csv
import statistics
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
from opensearchpy import OpenSearch, helpers

from rewriter import config, privacy
from rewriter.boost.profile import BoostProfile
from rewriter.engine.bootstrap import bootstrap_cluster
from rewriter.events.catalog import CatalogRecord
from rewriter.events.event import Event
from rewriter.events.fields import Rejection
from rewriter.events.formats import parse_movielens_movies, parse_movielens_ratings
from rewriter.ingest import suggestions
from rewriter.profiles.doc import to_source
from rewriter.profiles.fold import fold, fold_config

MODES = ("generic", "personalized")


@dataclass(frozen=True)
class Case:
    user: str  # the raw MovieLens user id
    item: str
    title: str


@dataclass(frozen=True)
class Row:
    chars: int
    mode: str
    mrr: float
    hit: float
    cases: int


def prepare(
    es: OpenSearch,
    s: config.Settings,
    data: Path,
    boost: BoostProfile,
    log: Callable[[str], None] = print,
) -> list[Case]:
    """Catalog, training events and profiles, and the suggestions index; the cases."""
    bootstrap_cluster(es, s)
    movies = {r.id: r for _, r in _read(data / "movies.csv", parse_movielens_movies)}
    docs = (
        {"_index": s.indices.catalog, "_id": m.id, "_source": _movie_doc(m)}
        for m in movies.values()
    )
    helpers.bulk(es, docs, chunk_size=2000, refresh="wait_for")
    by_user: dict[str, list[Event]] = defaultdict(list)
    for _, event in _read(data / "ratings.csv", parse_movielens_ratings):
        if isinstance(event, Event) and event.item_id in movies:
            genres = movies[event.item_id].category
            by_user[event.user_id].append(event.with_attributes({"category": genres}))
    cases, train = _split(by_user, movies)
    log(f"{len(movies)} films, {len(cases)} users with a held-out liked film")
    secret = config.user_secret(s)
    cfg = fold_config(boost)
    events, profiles = [], []
    for user, history in train.items():
        pseudo = privacy.pseudonymize(user, secret)
        mine = [e.with_user(pseudo) for e in history]
        events += [
            {"_index": s.indices.events, "_id": e.event_id, "_source": e.to_doc()} for e in mine
        ]
        doc = to_source(fold(None, mine, cfg))
        profiles.append({"_index": s.indices.profiles, "_id": pseudo, "_source": doc})
    helpers.bulk(es, events, chunk_size=5000, refresh="wait_for", request_timeout=120)
    helpers.bulk(es, profiles, chunk_size=500, refresh="wait_for", request_timeout=120)
    build = suggestions.BuildConfig(s.indices.catalog, tuple(boost.attributes), min_users=3)
    for line in suggestions.build(es, s, build).lines():
        log(line)
    return cases


def _read(path: Path, parse: Callable) -> list:  # type: ignore[type-arg]
    with path.open(newline="", encoding="utf-8") as handle:
        return [(n, r) for n, r in parse(handle) if not isinstance(r, Rejection)]


def _movie_doc(movie: CatalogRecord) -> dict[str, object]:
    return {"title": movie.title, "category": list(movie.category)}


def _split(
    by_user: Mapping[str, list[Event]], movies: Mapping[str, CatalogRecord]
) -> tuple[list[Case], dict[str, list[Event]]]:
    """Each user's last liked film held out; their events before it are the training set."""
    cases, train = [], {}
    for user in sorted(by_user, key=lambda u: int(u) if u.isdigit() else 0):
        history = sorted(by_user[user], key=lambda e: (e.timestamp, e.event_id))
        liked = [i for i, e in enumerate(history) if e.type == "rating_high"]
        if not liked or liked[-1] == 0:
            train[user] = history
            continue
        last = liked[-1]
        held = history[last]
        cases.append(Case(user, held.item_id, movies[held.item_id].title or ""))
        train[user] = history[:last]
    return cases, train


def evaluate(
    url: str,
    index: str,
    cases: Sequence[Case],
    boost: str,
    max_chars: int = 4,
    size: int = 8,
) -> list[Row]:
    """MRR and Hit@`size` per number of typed characters, generic and personalized."""
    ranks: dict[tuple[int, str], list[int | None]] = defaultdict(list)
    with httpx.Client(base_url=url, timeout=30) as client:
        for case in cases:
            for k in range(1, max_chars + 1):
                prefix = case.title[:k]
                for mode in MODES:
                    headers = {"X-User-Id": case.user, "X-Boost-Profile": boost}
                    if mode == "generic":
                        headers["X-Personalization"] = "off"
                    params = {"index": index, "q": prefix, "size": str(size)}
                    found = client.get("/_affinity/suggest", params=params, headers=headers)
                    ranks[(k, mode)].append(_rank(found.json().get("suggestions", []), case))
    return [
        Row(k, mode, _mrr(r), statistics.fmean(x is not None for x in r), len(r))
        for (k, mode), r in sorted(ranks.items())
    ]


def _rank(found: Sequence[Mapping[str, object]], case: Case) -> int | None:
    want = case.title.casefold()
    texts = [str(s.get("text", "")).casefold() for s in found if s.get("kind") != "recent"]
    return texts.index(want) + 1 if want in texts else None


def _mrr(ranks: Sequence[int | None]) -> float:
    return statistics.fmean(1.0 / r if r else 0.0 for r in ranks)


def report(rows: Sequence[Row], size: int = 8) -> str:
    lines = [f"{'chars':>5} {'mode':<13} {'MRR':>7} {f'Hit@{size}':>7} {'cases':>6}"]
    lines += [f"{r.chars:>5} {r.mode:<13} {r.mrr:7.4f} {r.hit:7.4f} {r.cases:>6}" for r in rows]
    for mode in MODES:
        mine = [r for r in rows if r.mode == mode]
        mrr = statistics.fmean(r.mrr for r in mine)
        hit = statistics.fmean(r.hit for r in mine)
        lines.append(f"{'all':>5} {mode:<13} {mrr:7.4f} {hit:7.4f} {sum(r.cases for r in mine):>6}")
    return "\n".join(lines)


def write_csv(rows: Sequence[Row], path: Path) -> None:
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["chars", "mode", "mrr", "hit", "cases"])
        out.writerows([r.chars, r.mode, f"{r.mrr:.6f}", f"{r.hit:.6f}", r.cases] for r in rows)
