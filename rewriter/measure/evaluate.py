"""`affinity evaluate`: offline replay. Would personalization have ranked what users chose?

1. Split the events at `--cutoff`: a time (every event before it trains, positive events
   from it on are tested), `user:F` (per user, in time order, the first F of their events
   train and the positives among the rest are tested: every tested user has a history), or
   `last` (leave-last-out: each user's last positive event is tested, every event before it
   trains, later events are dropped). Positive types: `--positives` (a shop log: view,
   add_to_cart, purchase).
2. Build scratch indices from the training events only (measure/evaluate_scratch.py; own prefix).
3. For a sample of tested positive interactions (user, item, time), ask the engine for a
   ranking of a query, through the same rewrite the proxy uses, for each method:
   `generic` (the query as is), `popularity` (the cold-start popularity rewrite for
   everyone: the non-personal baseline) and `alpha=A` (the boost profile with that alpha;
   users without a profile get the profile's cold start, as in production).
4. Score where the chosen item landed: NDCG@10 and HitRate@10 (one relevant item, so
   NDCG = 1/log2(1 + rank)), MRR over the top DEPTH (0 beyond), and coverage (distinct items
   in any top 10 / catalog size). With `exclude_seen` (MovieLens: a user does not rate a film
   twice) items the user interacted with before are removed from every ranking first; a shop
   keeps them (shoppers come back to items), and the results are split by whether the chosen
   item was seen before the cutoff and by the user's history length (evaluate_metrics.py),
   with 95% intervals from a bootstrap over users.

The query. An event's own `query` is used when it has one (multi_match on title and
description). With the `category_words` fallback (a shop), an event without one asks the
words of the item's category path (`electronics.audio.headphone` -> "electronics audio
headphone"; the title's words when it has no category) as a multi_match on title and
description, as the held-out shop task does: BM25 then prefers the leaf category. Otherwise
(MovieLens has no queries) the query is one of the item's categories (for MovieLens, a
genre), picked by a hash of the event id, as a `term` query: "the user browsed Comedy and
then chose this film". That reveals only what a user typing the genre reveals: every
candidate shares the genre, so no method gains from it. Words of the title are not used:
they would nearly name the answer. Relevance is then the same for all items of the genre, so
the generic ranking is the index's tie order, and a `rescore` profile re-ranks only the
first `window` of those ties; `--shape function_score` ranks the whole genre.

Profiles are read as of each interaction's time (decay), built only from events before the
cutoff, and not updated during the test period.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from opensearchpy import OpenSearch

from rewriter import config
from rewriter.boost.profile import BoostProfile, ColdStart, Shape
from rewriter.events.event import Event
from rewriter.events.fields import iso, parse_timestamp
from rewriter.ingest import event_files
from rewriter.measure import evaluate_scratch
from rewriter.measure.evaluate_metrics import (
    DEPTH,
    Row,
    Scores,
    SegmentRow,
    recommend,
    render,
    render_segments,
    segments,
    summarize,
)
from rewriter.profiles.view import affinity_view
from rewriter.ranking.rewrite import RequestContext, rewrite

MAX_SEEN_FETCH = 900
BATCH_CASES = 20
POSITIVE_TYPES = ("rating_high", "click", "add_to_cart", "purchase")
WEIGHT_GRID = (0.0, 0.5, 1.0, 2.0)
HISTORY_BUCKETS: tuple[tuple[int, int | None], ...] = ((0, 0), (1, 4), (5, 19), (20, None))
"""Training events of the case's user, inclusive bounds (None: no upper bound)."""
Body = dict[str, Any]


# --------------------------------------------------------------------------- split, sample
@dataclass(frozen=True)
class Cutoff:
    time: float | None = None
    user_fraction: float | None = None
    last: bool = False

    def __str__(self) -> str:
        if self.last:
            return "last (leave-last-out)"
        return iso(self.time) if self.time is not None else f"user:{self.user_fraction}"


def parse_cutoff(text: str) -> Cutoff:
    """`2016-01-01`, ISO 8601 or epoch seconds; `user:0.8`; or `last`."""
    if text == "last":
        return Cutoff(last=True)
    if text.startswith("user:"):
        fraction = float(text.removeprefix("user:"))
        if not 0 < fraction < 1:
            raise ValueError(f"--cutoff {text}: the fraction must be between 0 and 1")
        return Cutoff(user_fraction=fraction)
    try:
        return Cutoff(time=parse_timestamp(text))
    except ValueError as err:
        raise ValueError(f"--cutoff {text!r} {err}; or use user:0.8 or last") from None


def parse_positives(text: str, known: Sequence[str]) -> tuple[str, ...]:
    """`view,add_to_cart,purchase` -> the event types tested; each must be one the profile knows."""
    wanted = tuple(t.strip() for t in text.split(",") if t.strip())
    unknown = [t for t in wanted if t not in known]
    if not wanted or unknown:
        raise ValueError(
            f"--positives {text!r}: {', '.join(unknown) or 'no type'} is not an event type of "
            f"the boost profile (known: {', '.join(known)})"
        )
    return wanted


def _by_user(events: Sequence[Event]) -> list[list[Event]]:
    by_user: dict[str, list[Event]] = defaultdict(list)
    for e in events:
        by_user[e.user_id].append(e)
    for evs in by_user.values():
        evs.sort(key=lambda e: (e.timestamp, e.event_id))
    return list(by_user.values())


def leave_last_out(
    events: Sequence[Event], positives: Sequence[str]
) -> tuple[list[Event], list[Event]]:
    """Per user: the last positive event is tested, every event before it trains."""
    train, test = [], []
    for evs in _by_user(events):
        last = max((n for n, e in enumerate(evs) if e.type in positives), default=None)
        if last is None:
            train += evs
            continue
        train += evs[:last]
        test.append(evs[last])
    return train, test


def split(
    events: Sequence[Event], cutoff: Cutoff, positives: Sequence[str] = POSITIVE_TYPES
) -> tuple[list[Event], list[Event]]:
    """(train, test) by a global time, per user by a fraction, or leave-last-out."""
    if cutoff.last:
        return leave_last_out(events, positives)
    if cutoff.time is not None:
        return (
            [e for e in events if e.timestamp < cutoff.time],
            [e for e in events if e.timestamp >= cutoff.time],
        )
    train, test = [], []
    for evs in _by_user(events):
        n_train = max(1, math.floor(len(evs) * (cutoff.user_fraction or 0.0)))
        train += evs[:n_train]
        test += evs[n_train:]
    return train, test


def sample(events: Sequence[Event], n: int, seed: int) -> list[Event]:
    """Up to n events, uniformly without replacement, in time order."""
    if len(events) <= n:
        return sorted(events, key=lambda e: e.timestamp)
    picked = np.random.default_rng(seed).choice(len(events), n, replace=False)
    return sorted((events[i] for i in picked), key=lambda e: e.timestamp)


# --------------------------------------------------------------------------- queries
FALLBACKS = ("category", "category_by_popularity", "category_words")
_PATH_SEPARATORS = re.compile(r"[\s./>|_,-]+")


def category_words(item: Mapping[str, Any]) -> str:
    """The words of an item's category paths, each once, in order; else of its title."""
    values = item.get("category") or []
    values = values if isinstance(values, list) else [values]
    text = " ".join(str(v) for v in values) or str(item.get("title") or "")
    words = (w.lower() for w in _PATH_SEPARATORS.split(text) if w)
    return " ".join(dict.fromkeys(words))


def _match(text: str) -> Body:
    return {"query": {"multi_match": {"query": text, "fields": ["title^2", "description"]}}}


def query_for(
    event: Event, item: Mapping[str, Any] | None, fallback: str = "category"
) -> tuple[str, Body] | None:
    """(query text, query) for one interaction; None when there is nothing to ask."""
    if event.query:
        return event.query, _match(event.query)
    if fallback == "category_words":
        words = category_words(item or {})
        return (words, _match(words)) if words else None
    values = (item or {}).get("category") or []
    values = values if isinstance(values, list) else [values]
    if not values:
        return None
    pick = int(hashlib.sha256(event.event_id.encode()).hexdigest()[:8], 16) % len(values)
    term: Body = {"term": {"category": values[pick]}}
    if fallback == "category_by_popularity":
        factor = {"field": "popularity", "modifier": "log1p", "missing": 0}
        functions = [{"field_value_factor": factor}]
        term = {"function_score": {"query": term, "functions": functions, "boost_mode": "sum"}}
    return str(values[pick]), {"query": term}


def popularity_profile(boost: BoostProfile) -> BoostProfile:
    """The boost profile with a popularity cold start (the non-personal baseline)."""
    cold = boost.cold_start
    if cold.strategy == "popularity" and cold.popularity_weight > 0:
        return boost
    return replace(boost, cold_start=ColdStart("popularity", 1.0, cold.modifier))


@dataclass(frozen=True)
class Case:
    event: Event
    query: str
    body: Body
    seen: frozenset[str]
    profile: Mapping[str, Any] | None
    history: int = 0

    @property
    def warm(self) -> bool:
        return self.profile is not None

    @property
    def seen_target(self) -> bool:
        """The chosen item was one the user interacted with before the cutoff."""
        return self.event.item_id in self.seen


Method = Callable[[Case], tuple[Body, bool]]


def methods(
    boost: BoostProfile, alphas: Sequence[float], named: Sequence[BoostProfile] = ()
) -> dict[str, Method]:
    """name -> (case -> (body to send, personalized by the affinity term?)): generic,
    popularity, `boost` at each alpha, and each `named` profile at its own alpha."""
    pop = popularity_profile(boost)
    ctx = RequestContext()

    def generic(case: Case) -> tuple[Body, bool]:
        return case.body, False

    def popularity(case: Case) -> tuple[Body, bool]:
        return rewrite(case.body, None, pop, ctx).body, False

    def personalized(profile: BoostProfile) -> Method:
        def run(case: Case) -> tuple[Body, bool]:
            user = None
            if case.profile is not None:
                user = affinity_view(case.profile, case.event.timestamp, profile.top_k)
            result = rewrite(case.body, user, profile, ctx)
            return result.body, result.log.get("mode") == "affinity"

        return run

    out: dict[str, Method] = {"generic": generic, "popularity": popularity}
    out.update({f"alpha={a:g}": personalized(replace(boost, alpha=a)) for a in alphas})
    out.update({p.name: personalized(p) for p in named if p.name not in out})
    return out


def replay(
    es: OpenSearch,
    index: str,
    cases: Sequence[Case],
    named: Mapping[str, Method],
    exclude_seen: bool = True,
) -> dict[str, Scores]:
    """Every case through every method, `BATCH_CASES` cases per _msearch; with
    `exclude_seen`, the user's seen items are taken out of each ranking first."""
    scores = {name: Scores() for name in named}
    for start in range(0, len(cases), BATCH_CASES):
        batch = cases[start : start + BATCH_CASES]
        lines: list[Body] = []
        applied: list[bool] = []
        for case in batch:
            size = DEPTH + (min(len(case.seen), MAX_SEEN_FETCH) if exclude_seen else 0)
            for method in named.values():
                body, used = method(case)
                lines += [{}, {**body, "size": size, "_source": False}]
                applied.append(used)
        responses = es.msearch(body=lines, index=index)["responses"]
        for n, response in enumerate(responses):
            if "error" in response:
                raise RuntimeError(f"the engine refused an evaluation query: {response['error']}")
            case, name = batch[n // len(named)], list(named)[n % len(named)]
            ids = [h["_id"] for h in response["hits"]["hits"]]
            removed = case.seen if exclude_seen else frozenset()
            scores[name].add(case.event.item_id, ids, removed, applied[n])
    return scores


# --------------------------------------------------------------------------- weights
def tune_weights(
    boost: BoostProfile,
    alpha: float,
    score: Callable[[BoostProfile], float],
    rounds: int = 2,
    log: Callable[[str], None] = lambda m: None,
) -> tuple[dict[str, float], float]:
    """Coordinate search over attribute weights (WEIGHT_GRID each), alpha fixed."""
    weights = dict(boost.attributes)
    best = score(replace(boost, alpha=alpha, attributes=weights))
    for _ in range(rounds):
        changed = False
        for attribute in list(weights):
            for w in WEIGHT_GRID:
                trial = {**weights, attribute: w}
                if w == weights[attribute] or not any(trial.values()):
                    continue
                value = score(replace(boost, alpha=alpha, attributes=trial))
                log(f"  weights {trial}: NDCG@10 {value:.4f}")
                if value > best + 1e-9:
                    weights, best, changed = trial, value, True
        if not changed:
            break
    return weights, best


def case_list(
    tested: Sequence[Event],
    train: Sequence[Event],
    items: Mapping[str, Mapping[str, Any]],
    profiles: Mapping[str, Mapping[str, Any]],
    fallback: str = "category",
) -> list[Case]:
    """The cases to replay: tested events with a query, their user's seen items and profile."""
    seen: dict[str, set[str]] = defaultdict(set)
    history: dict[str, int] = defaultdict(int)
    for e in train:
        seen[e.user_id].add(e.item_id)
        history[e.user_id] += 1
    cases = []
    for e in tested:
        query = query_for(e, items.get(e.item_id), fallback)
        if query is not None:
            text, body = query
            user_seen, profile = frozenset(seen[e.user_id]), profiles.get(e.user_id)
            cases.append(Case(e, text, body, user_seen, profile, history[e.user_id]))
    return cases


# --------------------------------------------------------------------------- the whole run
@dataclass(frozen=True)
class Options:
    events: Path
    catalog: Path
    cutoff: Cutoff
    alphas: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 2.0)
    prefix: str = "eval-"
    sample_size: int = 2000
    seed: int = 0
    reuse: bool = False
    shape: Shape | None = None
    tune_weights: bool = False
    fallback: str = "category"
    positive_types: tuple[str, ...] = POSITIVE_TYPES
    exclude_seen: bool = True
    compare: tuple[BoostProfile, ...] = ()
    tune_objective: str = "guarded"


@dataclass(frozen=True)
class Evaluation:
    rows: list[Row]
    scores: dict[str, Scores]
    report: str
    recommended_alpha: float | None
    weights: dict[str, float] | None = None
    segments: list[SegmentRow] = field(default_factory=list)


def load_events(path: Path, boost: BoostProfile) -> tuple[list[Event], int]:
    """Valid events of the file (format from its name) and the number rejected."""
    fmt = event_files.guess_format(path)
    with path.open(encoding="utf-8", newline="") as handle:
        parsed = list(event_files.parse_events(handle, fmt, tuple(boost.event_weights)))
    events = [e for _, e in parsed if isinstance(e, Event)]
    return events, len(parsed) - len(events)


def run(
    es: OpenSearch,
    settings: config.Settings,
    boost: BoostProfile,
    opts: Options,
    log: Callable[[str], None] = lambda m: None,
) -> Evaluation:
    """Split, build the scratch indices, replay, summarize, recommend (and tune weights)."""
    events, rejected = load_events(opts.events, boost)
    train, test = split(events, opts.cutoff, opts.positive_types)
    positives = [e for e in test if e.type in opts.positive_types]
    tested = sample(positives, opts.sample_size, opts.seed)
    log(
        f"{len(events)} events ({rejected} rejected): {len(train)} train, {len(test)} test, "
        f"{len(positives)} positive; replaying {len(tested)}"
    )
    scratch = evaluate_scratch.scratch_settings(settings, opts.prefix)
    evaluate_scratch.build(es, scratch, opts.catalog, train, boost, opts.reuse, log)
    items = evaluate_scratch.items(es, scratch, [e.item_id for e in tested])
    profiles = evaluate_scratch.profiles(es, scratch, [e.user_id for e in tested])
    cases = case_list(tested, train, items, profiles, opts.fallback)
    if not cases:
        raise ValueError(
            f"nothing to replay: no {'/'.join(opts.positive_types)} events at or after the "
            f"cutoff ({opts.cutoff}) whose item is in the catalog with a query or a category"
        )
    boost = replace(boost, shape=opts.shape) if opts.shape else boost
    t0 = time.monotonic()
    named = methods(boost, opts.alphas, (boost, *opts.compare))
    scores = replay(es, scratch.indices.catalog, cases, named, opts.exclude_seen)
    log(f"replayed {len(cases)} cases x {len(scores)} methods in {time.monotonic() - t0:.1f} s")
    warm_flags = [c.warm for c in cases]
    rows = summarize(scores, warm_flags, evaluate_scratch.count(es, scratch.indices.catalog))
    alpha, text = recommend(rows, scores)
    warm = sum(c.warm for c in cases)
    header = (
        f"offline replay: {opts.events.name}, cutoff {opts.cutoff}, boost profile {boost.name} "
        f"(shape {boost.shape}, window {boost.window}), {len(cases)} interactions "
        f"({warm} by users with a profile, 'warm'), query fallback {opts.fallback}, "
        f"positives {','.join(opts.positive_types)}, seen items "
        f"{'excluded' if opts.exclude_seen else 'kept'}, seed {opts.seed}"
    )
    weights = None
    if opts.tune_weights and alpha is not None:
        weights, text = _tune(es, scratch, boost, alpha, cases, text, log)
    split_rows = segments(scores, [c.event.user_id for c in cases], _segment_of(cases), opts.seed)
    report = render(rows, header, text) + "\n\n" + render_segments(split_rows)
    return Evaluation(rows, scores, report, alpha, weights, split_rows)


def _segment_of(cases: Sequence[Case]) -> dict[str, list[bool]]:
    """Segment name -> which cases belong to it: all, seen / never seen, history buckets."""
    out = {
        "all": [True] * len(cases),
        "seen": [c.seen_target for c in cases],
        "never seen": [not c.seen_target for c in cases],
    }
    for low, high in HISTORY_BUCKETS:
        name = f"history {low}" + ("+" if high is None else f"-{high}" if high > low else "")
        out[name] = [low <= c.history and (high is None or c.history <= high) for c in cases]
    return out


def _tune(
    es: OpenSearch,
    scratch: config.Settings,
    boost: BoostProfile,
    alpha: float,
    cases: Sequence[Case],
    text: str,
    log: Callable[[str], None],
) -> tuple[dict[str, float] | None, str]:
    if len(boost.attributes) < 2:
        return None, text + "\nweights: one attribute only; its weight just rescales alpha"

    def score(candidate: BoostProfile) -> float:
        named = {"p": methods(candidate, (candidate.alpha,))[f"alpha={candidate.alpha:g}"]}
        return float(np.mean(replay(es, scratch.indices.catalog, cases, named)["p"].ndcg))

    weights, best = tune_weights(boost, alpha, score, log=log)
    return (
        weights,
        text + f"\nweights (coordinate search, alpha {alpha:g}): {weights}, NDCG@10 {best:.4f}",
    )
