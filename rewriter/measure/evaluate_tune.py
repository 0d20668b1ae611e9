"""`affinity evaluate --tune`: search alpha, attribute weights, the horizons' weights and the
half-lives on a validation split, report the test split apart, print the best as a YAML patch.

The splits (leave-last-out twice): each user's last positive event is the *test* case (every
event before it trains the scratch indices, as in `affinity evaluate --cutoff last`); the last
positive event before that is the user's *validation* case, with only the events before it as
history. Tuning reads validation cases only; the test cases score the chosen profile once, so
the validation-vs-test gap says how much the search fitted noise.

Ranking is the reference scorer's (ranking/reference.py, held to the engine's `_score` to
1e-4): the engine answers each case's plain query once (its first `window` hits and their
attributes, from the scratch catalog), and every candidate boost profile re-ranks those hits
in Python, with profiles folded in Python from the case's history (profiles/fold.py
`rebuild`, the events carrying the catalog's attribute values). So a candidate costs no
engine round trip, and a new half-life costs one refold, not a re-ingest.

The search is coordinate descent over GRID, two rounds: weights first, then half-lives, then
alpha. One scratch catalog shard is assumed (the rescore window per shard, decision 22).
"""

from __future__ import annotations

import itertools
import math
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from opensearchpy import OpenSearch

from rewriter import config
from rewriter.boost.horizons import ITEM_FIELD, ITEM_KEY, ItemMemory, SessionIntent
from rewriter.boost.profile import BoostProfile
from rewriter.events.catalog import CatalogRecord, item_attributes
from rewriter.events.event import Event
from rewriter.ingest import catalog_files
from rewriter.measure import evaluate as ev
from rewriter.measure import evaluate_scratch, relevance_scale
from rewriter.measure.evaluate_metrics import Scores, bootstrap_ci
from rewriter.profiles.fold import FoldConfig, fold_config, rebuild
from rewriter.profiles.view import UserAffinity, affinity_view
from rewriter.ranking.reference import (
    Hit,
    Plan,
    affinity,
    hit_from_source,
    plan,
    popularity_term,
    score,
    script_params,
)

Log = Callable[[str], None]
WEIGHTS = (0.0, 0.5, 1.0, 2.0)
GRID: dict[str, tuple[float, ...]] = {
    "attributes": WEIGHTS,
    "session.weights": WEIGHTS,
    "item_memory.weight": WEIGHTS,
    "item_memory.top_k": (3.0, 10.0, 50.0),
    "half_life_days": (7.0, 30.0, 120.0),
    "session.half_life_hours": (0.5, 2.0, 8.0),
    "item_memory.half_life_days": (3.0, 30.0, 180.0),
    "alpha": (0.25, 0.5, 1.0, 2.0, 4.0),
}
"""The values tried per knob (`attributes` and `session.weights`: for each attribute; item
memory's weight and top_k are tried together: a top_k changes nothing at weight 0)."""
ROUNDS = 2
OBJECTIVES = ("guarded", "all")
"""What the search maximizes on validation: NDCG@10 over all cases without lowering NDCG@10
on never-seen items below the starting profile's (less GUARD; `Scorer.guarded`, the default:
the held-out task wants both, and item memory can buy seen items at never-seen ones' cost),
or NDCG@10 over all cases."""
GUARD = 0.005
MAX_SEEN_FETCH = 300


@dataclass(frozen=True)
class TuneCase:
    """One case: the event chosen, the user's events before it (with catalog attributes),
    the plain query's first hits, and the items the user had seen."""

    event: Event
    history: tuple[Event, ...]
    hits: tuple[Hit, ...]
    seen: frozenset[str]

    @property
    def seen_target(self) -> bool:
        return self.event.item_id in self.seen


@dataclass(frozen=True)
class Knob:
    """One tuned setting: its name in the YAML patch, the values tried, how to read and set it
    (a value is a number, or a tuple of numbers for settings tried together)."""

    name: str
    values: tuple[Any, ...]
    get: Callable[[BoostProfile], Any]
    set: Callable[[BoostProfile, Any], BoostProfile]


def knobs(boost: BoostProfile) -> list[Knob]:
    """The settings searched, in search order: weights, half-lives, alpha."""
    out: list[Knob] = []
    for a in boost.attributes:
        out.append(
            Knob(
                f"attributes.{a}",
                GRID["attributes"],
                lambda b, a=a: b.attributes.get(a, 0.0),
                lambda b, v, a=a: replace(b, attributes={**b.attributes, a: v}),
            )
        )
    for a in [*boost.attributes, ITEM_KEY]:
        out.append(
            Knob(
                f"session.weights.{a}",
                GRID["session.weights"],
                lambda b, a=a: b.session.weights.get(a, 0.0),
                lambda b, v, a=a: replace(
                    b, session=replace(b.session, weights={**b.session.weights, a: v})
                ),
            )
        )
    out += [
        Knob(
            "item_memory.weight, top_k",
            tuple(itertools.product(GRID["item_memory.weight"], GRID["item_memory.top_k"])),
            lambda b: (b.item_memory.weight, float(b.item_memory.top_k or b.top_k)),
            lambda b, v: replace(
                b, item_memory=replace(b.item_memory, weight=v[0], top_k=int(v[1]))
            ),
        ),
        Knob(
            "half_life_days",
            GRID["half_life_days"],
            lambda b: b.half_life_days,
            lambda b, v: replace(b, half_life_days=v),
        ),
        Knob(
            "session.half_life_hours",
            GRID["session.half_life_hours"],
            lambda b: b.session.half_life_hours,
            lambda b, v: replace(b, session=replace(b.session, half_life_hours=v)),
        ),
        Knob(
            "item_memory.half_life_days",
            GRID["item_memory.half_life_days"],
            lambda b: b.item_memory.half_life_days,
            lambda b, v: replace(b, item_memory=replace(b.item_memory, half_life_days=v)),
        ),
        Knob("alpha", GRID["alpha"], lambda b: b.alpha, lambda b, v: replace(b, alpha=v)),
    ]
    return out


# --------------------------------------------------------------------------- splits
def splits(
    events: Sequence[Event], positives: Sequence[str]
) -> tuple[list[Event], list[Event], list[Event]]:
    """(training events of the scratch indices, validation cases, test cases)."""
    train, test = ev.leave_last_out(events, positives)
    _, validation = ev.leave_last_out(train, positives)
    return train, validation, test


def histories(events: Sequence[Event]) -> dict[str, list[Event]]:
    """User -> their events in (timestamp, event id) order."""
    out: dict[str, list[Event]] = defaultdict(list)
    for e in sorted(events, key=lambda e: (e.timestamp, e.event_id)):
        out[e.user_id].append(e)
    return out


def before(history: Sequence[Event], case: Event) -> tuple[Event, ...]:
    """The events of `history` strictly before `case` in (timestamp, event id) order."""
    key = (case.timestamp, case.event_id)
    return tuple(e for e in history if (e.timestamp, e.event_id) < key)


def catalog_attributes(path: Path, names: Sequence[str]) -> dict[str, dict[str, tuple[str, ...]]]:
    """Item id -> its attribute values (of `names`) from a catalog file."""
    parsed = catalog_files.parse_catalog(path, catalog_files.guess_format(path), None)
    return {
        record.id: item_attributes(record.to_doc(), names)
        for _, record in parsed
        if isinstance(record, CatalogRecord)
    }


# --------------------------------------------------------------------------- the first pass
def first_pass(
    es: OpenSearch,
    index: str,
    cases: Sequence[tuple[Event, tuple[Event, ...]]],
    items: Mapping[str, Mapping[str, Any]],
    boost: BoostProfile,
    fallback: str,
    exclude_seen: bool,
) -> list[TuneCase]:
    """The plain query's first hits of each case (cases with no query are left out)."""
    fields = sorted({*boost.attributes, ITEM_FIELD})
    out: list[TuneCase] = []
    batch: list[tuple[Event, tuple[Event, ...], frozenset[str]]] = []
    lines: list[dict[str, Any]] = []

    def flush() -> None:
        if not batch:
            return
        responses = es.msearch(body=lines, index=index)["responses"]
        for (event, history, seen), response in zip(batch, responses, strict=True):
            if "error" in response:
                raise RuntimeError(f"the engine refused a tuning query: {response['error']}")
            hits = tuple(
                hit_from_source(h["_id"], h["_score"], h.get("_source") or {}, fields)
                for h in response["hits"]["hits"]
            )
            out.append(TuneCase(event, history, hits, seen))
        batch.clear()
        lines.clear()

    for event, history in cases:
        query = ev.query_for(event, items.get(event.item_id), fallback)
        if query is None:
            continue
        seen = frozenset(e.item_id for e in history)
        size = max(boost.window, 10) + (min(len(seen), MAX_SEEN_FETCH) if exclude_seen else 0)
        lines += [{}, {**query[1], "size": size, "_source": [*fields, "popularity"]}]
        batch.append((event, history, seen))
        if len(batch) >= ev.BATCH_CASES:
            flush()
    flush()
    return out


# --------------------------------------------------------------------------- scoring
def _folding(boost: BoostProfile) -> FoldConfig:
    """Fold settings with every horizon attribute on: weights then only change scoring, so a
    weight change costs no refold (a weight-0 attribute is folded but never sent)."""
    names = [*boost.attributes, ITEM_KEY]
    session = SessionIntent(boost.session.half_life_hours, dict.fromkeys(names, 1.0))
    items = ItemMemory(1.0, boost.item_memory.half_life_days)
    return fold_config(replace(boost, session=session, item_memory=items))


class Scorer:
    """NDCG@10 of candidate boost profiles on a list of cases, profiles folded per case and
    viewed at the case's time, cached per fold settings and top_k (the last few)."""

    def __init__(self, cases: Sequence[TuneCase], exclude_seen: bool) -> None:
        self.cases = list(cases)
        self.exclude_seen = exclude_seen
        self._views: OrderedDict[tuple[FoldConfig, int], list[UserAffinity | None]]
        self._views = OrderedDict()
        self._terms: OrderedDict[tuple[FoldConfig, int, int | None], list[np.ndarray]]
        self._terms = OrderedDict()

    def views(self, cfg: FoldConfig, top_k: int) -> list[UserAffinity | None]:
        key = (cfg, top_k)
        if key not in self._views:
            self._views[key] = [self._view(c, cfg, top_k) for c in self.cases]
            if len(self._views) > 4:
                self._views.popitem(last=False)
        self._views.move_to_end(key)
        return self._views[key]

    @staticmethod
    def _view(case: TuneCase, cfg: FoldConfig, top_k: int) -> UserAffinity | None:
        if not case.history:
            return None
        return affinity_view(rebuild(list(case.history), cfg), case.event.timestamp, top_k)

    def scores(
        self, boost: BoostProfile, relevance: str = "additive", exact: bool = False
    ) -> Scores:
        """Per-case metrics; `relevance` the shape combining relevance and affinity
        (measure/relevance_scale.py; the engine's is `additive`). `exact` ranks with
        reference.score itself; else with the term table (`terms`), the same numbers faster."""
        out = Scores()
        views = self.views(_folding(boost), boost.top_k)
        table = None if exact else self.terms(boost, views)
        weights = term_weights(boost)
        for n, (case, user) in enumerate(zip(self.cases, views, strict=True)):
            if table is None:
                ranked = relevance_scale.rerank(score(case.hits, user, boost), relevance)
            else:
                ranked = _rank(case, plan(user, boost), table[n], weights, boost, relevance)
            removed = case.seen if self.exclude_seen else frozenset()
            out.add(case.event.item_id, ranked, removed, False)
        return out

    def terms(self, boost: BoostProfile, views: list[UserAffinity | None]) -> list[np.ndarray]:
        """Per case, hits × TERMS: the best affinity of each term (reference.affinity with every
        weight 1). Affinity is linear in the weights, so a candidate's is this table times
        its `term_weights`. Cached per fold settings and top_k values."""
        key = (_folding(boost), boost.top_k, boost.item_memory.top_k)
        if key not in self._terms:
            unit = _unit_weights(boost)
            self._terms[key] = [
                _term_table(c, u, unit) for c, u in zip(self.cases, views, strict=True)
            ]
            if len(self._terms) > 4:
                self._terms.popitem(last=False)
        self._terms.move_to_end(key)
        return self._terms[key]

    def ndcg(self, boost: BoostProfile) -> float:
        return float(np.mean(self.scores(boost).ndcg)) if self.cases else math.nan

    def guarded(self, floor: float) -> Callable[[BoostProfile], float]:
        """NDCG@10 over all cases, for profiles whose NDCG@10 on never-seen items stays at or
        above `floor`; any profile below it scores less than every one above (-1 + NDCG)."""

        def objective(boost: BoostProfile) -> float:
            means = segment_means(self.cases, self.scores(boost))
            never = means["never seen"]
            ok = math.isnan(never) or never >= floor
            return means["all"] if ok else means["all"] - 1.0

        return objective


def compare_shapes(
    on_validation: Scorer, on_test: Scorer, boost: BoostProfile, seed: int
) -> list[str]:
    """Each relevance shape at its best alpha on validation (GRID's, and a wider range:
    a normalized or multiplicative alpha is on another scale), then on test."""
    lines = []
    alphas = sorted({*GRID["alpha"], 0.05, 0.1, 8.0, 16.0})
    for shape in relevance_scale.SHAPES:

        def on(b: BoostProfile, s: str = shape) -> float:
            return float(np.mean(on_validation.scores(b, s).ndcg))

        alpha = max(alphas, key=lambda a: on(replace(boost, alpha=a)))
        best = replace(boost, alpha=alpha)
        name = f"{shape} (alpha {alpha:g})"
        lines.append(split_line(name, on_test.cases, on_test.scores(best, shape), seed))
    return lines


def _term_keys(boost: BoostProfile) -> list[str]:
    """The terms of Affinity (AttributeMatch.key): long-term attributes, session, items."""
    session = [
        f"session.{ITEM_FIELD if a == ITEM_KEY else a}" for a in [*boost.attributes, ITEM_KEY]
    ]
    return [*boost.attributes, *session, f"items.{ITEM_FIELD}"]


def term_weights(boost: BoostProfile) -> np.ndarray:
    """The candidate's weight of each of `_term_keys`."""
    session = [boost.session.weights.get(a, 0.0) for a in [*boost.attributes, ITEM_KEY]]
    long_term = [boost.attributes[a] for a in boost.attributes]
    return np.array([*long_term, *session, boost.item_memory.weight], dtype=np.float64)


def _unit_weights(boost: BoostProfile) -> BoostProfile:
    names = [*boost.attributes, ITEM_KEY]
    return replace(
        boost,
        attributes=dict.fromkeys(boost.attributes, 1.0),
        session=replace(boost.session, weights=dict.fromkeys(names, 1.0)),
        item_memory=replace(boost.item_memory, weight=1.0),
    )


def _term_table(case: TuneCase, user: UserAffinity | None, unit: BoostProfile) -> np.ndarray:
    keys = _term_keys(unit)
    table = np.zeros((len(case.hits), len(keys)), dtype=np.float64)
    if user is None:
        return table
    params = script_params(user, unit)
    column = {k: n for n, k in enumerate(keys)}
    for row, hit in enumerate(case.hits):
        for match in affinity(hit.attributes, params)[1]:
            table[row, column[match.key]] = match.affinity
    return table


def _rank(
    case: TuneCase,
    p: Plan,
    table: np.ndarray,
    weights: np.ndarray,
    boost: BoostProfile,
    relevance: str,
) -> list[str]:
    """reference.score's order for a query without rules on one shard, from the term table."""
    rel = np.array([h.relevance for h in case.hits], dtype=np.float64)
    term = np.zeros(len(rel))
    if p.mode == "affinity":
        term = p.alpha_eff * (table @ weights)
    elif p.mode == "popularity":
        modifier = boost.cold_start.modifier
        pops = [popularity_term(h.popularity, modifier) for h in case.hits]
        term = p.popularity_weight * np.array(pops, dtype=np.float64)
    window = boost.window if boost.shape == "rescore" else len(rel)
    term[window:] = 0.0
    final = relevance_scale.combine(rel, term, relevance)
    return [case.hits[i].id for i in np.argsort(-final, kind="stable")]


def coordinate_search(
    start: BoostProfile, objective: Callable[[BoostProfile], float], log: Log
) -> tuple[BoostProfile, float]:
    """Coordinate descent over `knobs(start)`, ROUNDS rounds or until nothing improves."""
    best, best_value = start, objective(start)
    log(f"tune: start {best_value:.4f}")
    for n in range(ROUNDS):
        improved = False
        for knob in knobs(start):
            for value in knob.values:
                if knob.get(best) == value:
                    continue
                trial = knob.set(best, value)
                got = objective(trial)
                if got > best_value + 1e-9:
                    best, best_value, improved = trial, got, True
                    log(f"tune: round {n + 1} {knob.name} = {value}: {got:.4f}")
        if not improved:
            break
    return best, best_value


# --------------------------------------------------------------------------- report
def yaml_patch(boost: BoostProfile) -> str:
    """The tuned keys of a boost profile as YAML to paste over profiles/*.yaml."""

    def num(x: float) -> str:
        return f"{x:g}"

    def mapping(m: Mapping[str, float]) -> str:
        return "{" + ", ".join(f"{k}: {num(v)}" for k, v in m.items()) + "}"

    return "\n".join(
        [
            f"alpha: {num(boost.alpha)}",
            f"half_life_days: {num(boost.half_life_days)}",
            f"attributes: {mapping(boost.attributes)}",
            "session:",
            f"  half_life_hours: {num(boost.session.half_life_hours)}",
            f"  weights: {mapping(boost.session.weights)}",
            "item_memory:",
            f"  weight: {num(boost.item_memory.weight)}",
            f"  half_life_days: {num(boost.item_memory.half_life_days)}",
            *([f"  top_k: {boost.item_memory.top_k}"] if boost.item_memory.top_k else []),
        ]
    )


def segment_means(cases: Sequence[TuneCase], s: Scores) -> dict[str, float]:
    ndcg = np.array(s.ndcg)
    seen = np.array([c.seen_target for c in cases], dtype=bool)
    return {
        "all": float(ndcg.mean()) if len(ndcg) else math.nan,
        "seen": float(ndcg[seen].mean()) if seen.any() else math.nan,
        "never seen": float(ndcg[~seen].mean()) if (~seen).any() else math.nan,
    }


def gap_line(rows: Mapping[str, tuple[Sequence[TuneCase], Scores]]) -> str:
    """Validation minus test, per segment, for the start and the tuned profile: tuning that
    fitted noise shows a larger gap for the tuned profile than for the start."""
    m = {k: segment_means(c, s) for k, (c, s) in rows.items()}
    parts = []
    for segment in ("all", "seen", "never seen"):
        tuned = m["tuned, validation"][segment] - m["tuned, test"][segment]
        start = m["start, validation"][segment] - m["start, test"][segment]
        if math.isnan(tuned) or math.isnan(start):
            parts.append(f"{segment} -")
        else:
            parts.append(f"{segment} {tuned:+.4f} (start {start:+.4f})")
    return "validation - test gap: " + "; ".join(parts)


def split_line(name: str, cases: Sequence[TuneCase], s: Scores, seed: int) -> str:
    """NDCG@10 overall, seen and never seen, with 95% intervals over users."""
    users = [c.event.user_id for c in cases]
    parts = []
    for label, keep in (
        ("all", [True] * len(cases)),
        ("seen", [c.seen_target for c in cases]),
        ("never seen", [not c.seen_target for c in cases]),
    ):
        values = [v for v, k in zip(s.ndcg, keep, strict=True) if k]
        groups = [u for u, k in zip(users, keep, strict=True) if k]
        if not values:
            parts.append(f"{label} -")
            continue
        mean, low, high = bootstrap_ci(values, groups, seed)
        parts.append(f"{label} {mean:.4f} [{low:.3f}, {high:.3f}] (n={len(values)})")
    return f"{name:<24} " + "; ".join(parts)


@dataclass(frozen=True)
class Tuning:
    best: BoostProfile
    validation: float
    test: float
    start_validation: float
    start_test: float
    report: str
    on_validation: Scorer
    on_test: Scorer


def run(
    es: OpenSearch,
    settings: config.Settings,
    boost: BoostProfile,
    opts: ev.Options,
    log: Log = lambda m: None,
) -> Tuning:
    """Split, build the scratch catalog from the training events, fetch each case's first
    pass, tune on validation, score validation and test with the start and the best."""
    if not opts.cutoff.last:
        raise ValueError("--tune needs --cutoff last (a validation case before each test case)")
    events, rejected = ev.load_events(opts.events, boost)
    train, validation, test = splits(events, opts.positive_types)
    validation = ev.sample(validation, opts.sample_size, opts.seed)
    test = ev.sample(test, opts.sample_size, opts.seed)
    log(
        f"tune: {len(events)} events ({rejected} rejected), {len(validation)} validation and "
        f"{len(test)} test cases"
    )
    scratch = evaluate_scratch.scratch_settings(settings, opts.prefix)
    evaluate_scratch.build(es, scratch, opts.catalog, train, boost, opts.reuse, log)
    attributes = catalog_attributes(opts.catalog, list(boost.attributes))
    by_user = {
        user: tuple(e.with_attributes(attributes.get(e.item_id, {})) for e in evs)
        for user, evs in histories(train).items()
    }
    wanted = [e.item_id for e in [*validation, *test]]
    items = evaluate_scratch.items(es, scratch, wanted)
    catalog = scratch.indices.catalog

    def cases(tested: Sequence[Event]) -> list[TuneCase]:
        pairs = [(e, before(by_user.get(e.user_id, ()), e)) for e in tested]
        return first_pass(es, catalog, pairs, items, boost, opts.fallback, opts.exclude_seen)

    on_validation = Scorer(cases(validation), opts.exclude_seen)
    on_test = Scorer(cases(test), opts.exclude_seen)
    if opts.tune_objective not in OBJECTIVES:
        raise ValueError(f"--tune-objective {opts.tune_objective!r}: use one of {OBJECTIVES}")
    objective = on_validation.ndcg
    if opts.tune_objective == "guarded":
        start = segment_means(on_validation.cases, on_validation.scores(boost))["never seen"]
        objective = on_validation.guarded(start - GUARD)
    best, best_validation = coordinate_search(boost, objective, log)
    rows = {
        "start, validation": (on_validation.cases, on_validation.scores(boost)),
        "start, test": (on_test.cases, on_test.scores(boost)),
        "tuned, validation": (on_validation.cases, on_validation.scores(best)),
        "tuned, test": (on_test.cases, on_test.scores(best)),
    }
    mean = {k: float(np.mean(s.ndcg)) if s.ndcg else math.nan for k, (_, s) in rows.items()}
    lines = [split_line(k, c, s, opts.seed) for k, (c, s) in rows.items()]
    report = "\n".join(
        [
            f"tune: boost profile {boost.name}, {opts.events.name}, positives "
            f"{','.join(opts.positive_types)}, query fallback {opts.fallback}, seed {opts.seed}, "
            f"objective {opts.tune_objective} (reference scorer over the engine's first pass)",
            *lines,
            gap_line(rows),
            "",
            "relevance shape, tuned profile at each shape's best alpha on validation; test:",
            *compare_shapes(on_validation, on_test, best, opts.seed),
            "",
            "# best boost profile (YAML patch)",
            yaml_patch(best),
        ]
    )
    return Tuning(
        best,
        best_validation,
        mean["tuned, test"],
        mean["start, validation"],
        mean["start, test"],
        report,
        on_validation,
        on_test,
    )
