"""The reference scorer: what OpenSearch computes for a rewritten query, in plain Python.

Pure (no I/O). Three layers, each used by ranking/rewrite.py or the proxy so nothing can drift:

- `script_params(user, boost)`: the params of the stored script `affinity`
  (painless/affinity.painless). ranking/rewrite.py sends exactly this dict.
- `plan(user, boost)`: affinity, cold-start popularity, or nothing, and why. ranking/rewrite.py
  follows the same plan.
- `affinity(doc, params)` mirrors the Painless script line for line; `score(hits, ...)`
  combines it with relevance the way each engine shape does (rescore: only the first
  `window` hits of each shard's first pass, `query_weight` 1, `score_mode` total;
  function_score: every hit, `boost_mode` sum) and returns hits in engine order, each a
  `ScoredHit` with its parts. `?explain=true` (ranking/explain.py) takes an engine response
  apart with the same functions (`affinity`, `rule_effects`, `popularity_term`).
- rules (boost/rules.py): `score(..., rules=)` removes hidden and pinned items, adds the weights
  of matching boosts and multiplies by the factors of matching buries, deciding matches with
  boost/dsl_eval.py on each hit's `_source`: final = (relevance + boosts + added) · buries, the
  window taken over the first pass ((relevance + boosts) · buries). `ranking()` then places
  the pins with pins.layout, as the proxy does.

Assumptions, as in the engine test: hits are given in the *plain* app query's order (score
desc, ties in index order), each with the shard it lives on (`Hit.shard`, 0 on a one-shard
index). OpenSearch applies the rescore window per shard, so `score` rescores the first
`window` hits *of each shard* (decision 22): with N shards, up to N × window hits.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, NotRequired, TypedDict

import numpy as np

from rewriter.boost import dsl_eval
from rewriter.boost.horizons import ITEM_FIELD, ITEM_KEY
from rewriter.boost.profile import BoostProfile, Shape
from rewriter.profiles.view import UserAffinity
from rewriter.ranking import pins
from rewriter.ranking.resolve import EMPTY_PLAN, RulePlan

SCRIPT_ID = "affinity"
POPULARITY_FIELD = "popularity"

Mode = Literal["affinity", "popularity", "none"]


class AttributeParams(TypedDict):
    """params.attributes[a] of the Painless script."""

    weight: float
    values: dict[str, float]


class ScriptParams(TypedDict):
    """params of the Painless script `affinity`: the long-term `attributes`, and `horizons`
    (only when the user has any): horizon name -> catalog field -> weight and values, scored
    by the same "max over the item's values" form. A `related` path for never-seen items
    would be one more horizon here: field `related` (the catalog's co-viewed item ids),
    values the user's item affinities."""

    attributes: dict[str, AttributeParams]
    horizons: NotRequired[dict[str, dict[str, AttributeParams]]]


def alpha_eff(alpha: float, mass: float, k: float) -> float:
    """alpha · m / (m + k): thin profiles are personalized less; no mass, no boost."""
    if mass <= 0:
        return 0.0
    return alpha * mass / (mass + k)


def script_params(user: UserAffinity | None, boost: BoostProfile) -> ScriptParams:
    """The script's params: per attribute of the boost profile with weight > 0 that the user
    has values for, the weight and the user's top `boost.top_k` values with affinity > 0
    (highest first, ties by value, so the dict is deterministic)."""
    attributes: dict[str, AttributeParams] = {}
    if user is None:
        return {"attributes": attributes}
    for name, weight in boost.attributes.items():
        values = _top_values(user.affinities.get(name, {}), boost.top_k)
        if weight > 0 and values:
            attributes[name] = {"weight": float(weight), "values": values}
    params: ScriptParams = {"attributes": attributes}
    horizons = _horizon_params(user, boost)
    if horizons:
        params["horizons"] = horizons
    return params


def _horizon_params(
    user: UserAffinity, boost: BoostProfile
) -> dict[str, dict[str, AttributeParams]]:
    """The session and item-memory terms (boost/horizons.py): per horizon, each weighted
    attribute the user has values for, item ids as the catalog's ITEM_FIELD."""
    weights = {
        "session": boost.session.used(boost.attributes),
        "items": {ITEM_KEY: boost.item_memory.weight},
    }
    out: dict[str, dict[str, AttributeParams]] = {}
    for horizon, by_name in weights.items():
        known = user.horizons.get(horizon, {})
        terms: dict[str, AttributeParams] = {}
        top_k = boost.item_memory.top_k if horizon == "items" else None
        for name, weight in by_name.items():
            values = _top_values(known.get(name, {}), top_k or boost.top_k)
            if weight > 0 and values:
                field_name = ITEM_FIELD if name == ITEM_KEY else name
                terms[field_name] = {"weight": float(weight), "values": values}
        if terms:
            out[horizon] = terms
    return out


def copy_params(params: ScriptParams) -> ScriptParams:
    """A copy of `params` sharing no dict with it (each rewritten body owns its params),
    made with plain dict copies: copy.deepcopy of a profile's values cost ~1 ms a search."""

    def attributes(terms: Mapping[str, AttributeParams]) -> dict[str, AttributeParams]:
        return {f: {"weight": a["weight"], "values": dict(a["values"])} for f, a in terms.items()}

    out: ScriptParams = {"attributes": attributes(params["attributes"])}
    if "horizons" in params:
        out["horizons"] = {h: attributes(t) for h, t in params["horizons"].items()}
    return out


def script_fields(params: ScriptParams) -> list[str]:
    """The catalog fields the script reads for these params (each once, in order)."""
    names = list(params["attributes"])
    for terms in params.get("horizons", {}).values():
        names += terms
    return list(dict.fromkeys(names))


def _top_values(affinities: Mapping[str, float], top_k: int) -> dict[str, float]:
    known = [(v, float(a)) for v, a in affinities.items() if math.isfinite(a) and a > 0]
    known.sort(key=lambda pair: (-pair[1], pair[0]))
    return dict(known[:top_k])


@dataclass(frozen=True)
class Plan:
    """What the rewrite adds for this user: the affinity term, a cold-start popularity term,
    or nothing. `reason` says why it is not the affinity term (None when it is)."""

    mode: Mode
    reason: str | None
    alpha_eff: float
    params: ScriptParams
    popularity_weight: float = 0.0


def plan(user: UserAffinity | None, boost: BoostProfile) -> Plan:
    """Decide the term. Order: opt-out wins; then cold start (no user, no mass, or no known
    value of a weighted attribute) falls back to popularity if the profile says so; then
    alpha 0 means nothing."""
    params = script_params(user, boost)
    if user is not None and user.opt_out:
        return Plan("none", "opt_out", 0.0, params)
    known = params["attributes"] or params.get("horizons")
    if user is None or user.mass <= 0 or not known:
        reason = "no_user" if user is None else "no_profile_cold_start"
        cold = boost.cold_start
        if cold.strategy == "popularity" and cold.popularity_weight > 0:
            return Plan("popularity", reason, 0.0, params, cold.popularity_weight)
        return Plan("none", reason, 0.0, params)
    a_eff = alpha_eff(boost.alpha, user.mass, boost.k)
    if a_eff <= 0:
        return Plan("none", "alpha_zero", 0.0, params)
    return Plan("affinity", None, a_eff, params)


@dataclass(frozen=True)
class AttributeMatch:
    """One attribute's part of Affinity: the item's best-known value and its affinity;
    `horizon` is "" for the long-term attributes, else `session` or `items`."""

    attribute: str
    weight: float
    value: str | None
    affinity: float
    horizon: str = ""

    @property
    def key(self) -> str:
        """`brand` for a long-term attribute, `session.brand` for a horizon's."""
        return f"{self.horizon}.{self.attribute}" if self.horizon else self.attribute

    @property
    def contribution(self) -> float:
        return self.weight * self.affinity


def affinity(
    doc: Mapping[str, Sequence[str]], params: ScriptParams
) -> tuple[float, tuple[AttributeMatch, ...]]:
    """painless/affinity.painless, line for line; `doc` maps field -> the item's values
    (absent or empty when the item has none). Also returns each attribute's best match."""
    matches: list[AttributeMatch] = []
    total = _sum_of(doc, params["attributes"], "", matches)
    for horizon, terms in params.get("horizons", {}).items():
        total += _sum_of(doc, terms, horizon, matches)
    return total, tuple(matches)


def _sum_of(
    doc: Mapping[str, Sequence[str]],
    attributes: Mapping[str, AttributeParams],
    horizon: str,
    matches: list[AttributeMatch],
) -> float:
    """The script's sumOf: Σ over `attributes` of weight · the item's best-known value."""
    total = 0.0
    for field_name, attribute in attributes.items():
        if field_name not in doc or len(doc[field_name]) == 0:
            continue
        known = attribute["values"]
        best = 0.0
        best_value: str | None = None
        for value in doc[field_name]:
            aff = known.get(value)
            if aff is not None and float(aff) > best:
                best = float(aff)
                best_value = value
        weight = float(attribute["weight"])
        total += weight * best
        matches.append(AttributeMatch(field_name, weight, best_value, best, horizon))
    return total


def popularity_term(popularity: float | None, modifier: str) -> float:
    """field_value_factor with `missing: 0`, factor 1 and the profile's modifier."""
    x = 0.0 if popularity is None else float(popularity)
    if modifier == "log1p":
        return math.log10(1.0 + x)  # OpenSearch's log1p modifier is base 10
    if modifier == "sqrt":
        return math.sqrt(x)
    return x


@dataclass(frozen=True)
class Hit:
    """One hit of the plain app query: id, its `_score`, its attribute values, the number of
    the shard that holds it (the rescore window is per shard)."""

    id: str
    relevance: float
    attributes: Mapping[str, Sequence[str]] = field(default_factory=dict)
    popularity: float | None = None
    source: Mapping[str, object] = field(default_factory=dict)  # for rule filters
    shard: int = 0


def hit_from_source(
    hit_id: str,
    relevance: float,
    source: Mapping[str, object],
    attributes: Sequence[str],
    shard: int = 0,
) -> Hit:
    """Build a Hit from a `_source`: single values become one-element lists, null/missing
    become absent (what doc values hold for the same keyword fields)."""
    values: dict[str, list[str]] = {}
    for name in attributes:
        raw = source.get(name)
        items = raw if isinstance(raw, list) else [raw]
        present = [str(v) for v in items if v is not None]
        if present:
            values[name] = present
    popularity = source.get(POPULARITY_FIELD)
    pop = float(popularity) if isinstance(popularity, int | float) else None
    return Hit(hit_id, relevance, values, pop, dict(source), shard)


@dataclass(frozen=True)
class ScoredHit:
    """A hit as the rewritten query scores it: final = (relevance + boost) · bury + added,
    where added is weight · term · bury inside the rescore window (every hit for
    function_score), else 0.

    term: Affinity(u, i) in affinity mode, modifier(popularity) in popularity mode, 0 when
    nothing is added; weight: alpha_eff or popularity_weight; boost: the summed weights of
    the boost rules the hit matches; bury: the product of their bury factors; rules: the ids
    of the boost and bury rules it matches."""

    id: str
    mode: Mode
    relevance: float
    term: float
    weight: float
    added: float
    final: float
    rescored: bool
    matches: tuple[AttributeMatch, ...] = ()
    boost: float = 0.0
    bury: float = 1.0
    rules: tuple[str, ...] = ()


def score(
    hits: Sequence[Hit],
    user: UserAffinity | None,
    boost: BoostProfile,
    shape: Shape | None = None,
    rules: RulePlan = EMPTY_PLAN,
    now: float | None = None,
) -> list[ScoredHit]:
    """Final scores and engine order (score desc, ties keep the plain order) of the hits of
    the rewritten query, hidden and pinned items left out. `shape` overrides boost.shape (the
    rewrite's collapse fallback); `rules` is the request's RulePlan (rewrite's
    `result.rules`); `now` dates `now-30d` in rule filters (default: the clock)."""
    at = time.time() if now is None else now
    p = plan(user, boost if rules.alpha is None else replace(boost, alpha=rules.alpha))
    weight = {"affinity": p.alpha_eff, "popularity": p.popularity_weight}.get(p.mode, 0.0)
    pinned = {pin.item for pin in rules.pins}
    hits = [h for h in hits if h.id not in pinned and not _hidden(h, rules, at)]
    effects = [rule_effects(h, rules, at) for h in hits]
    terms = [_term(hit, p, boost) for hit in hits]
    relevance = np.array([hit.relevance for hit in hits], dtype=np.float64)
    boosts = np.array([e[0] for e in effects], dtype=np.float64)
    buries = np.array([e[1] for e in effects], dtype=np.float64)
    term = np.array([t[0] for t in terms], dtype=np.float64)
    first = (relevance + boosts) * buries
    # The hits come in the plain query's order; rules that change scores re-sort the first pass.
    reorder = bool(rules.boosts or rules.buries)
    first_order = np.argsort(-first, kind="stable") if reorder else np.arange(len(hits))
    window = boost.window if (shape or boost.shape) == "rescore" else len(hits)
    rescored = _in_window(first_order, [hit.shard for hit in hits], window)
    added = np.where(rescored, weight * term * buries, 0.0)
    final = first + added
    order = first_order[np.argsort(-final[first_order], kind="stable")]
    return [
        ScoredHit(
            id=hits[i].id,
            mode=p.mode,
            relevance=float(relevance[i]),
            term=float(term[i]),
            weight=weight,
            added=float(added[i]),
            final=float(final[i]),
            rescored=bool(rescored[i]),
            matches=terms[i][1],
            boost=float(boosts[i]),
            bury=float(buries[i]),
            rules=effects[i][2],
        )
        for i in order
    ]


def _in_window(first_order: np.ndarray, shards: Sequence[int], window: int) -> np.ndarray:
    """Which hits a rescore reaches: the first `window` of each shard's first pass (OpenSearch
    applies `window_size` on every shard, before the shards' hits are merged)."""
    shard = np.asarray(shards, dtype=np.int64)
    rescored = np.zeros(len(shard), dtype=bool)
    for number in np.unique(shard):
        on_shard = first_order[shard[first_order] == number]
        rescored[on_shard[:window]] = True
    return rescored


def _hidden(hit: Hit, rules: RulePlan, now: float) -> bool:
    return any(dsl_eval.matches(h.filter, hit.source, hit.id, now) for h in rules.hides)


def rule_effects(hit: Hit, rules: RulePlan, now: float) -> tuple[float, float, tuple[str, ...]]:
    """(Σ weights of matching boosts, Π factors of matching buries, their rule ids)."""
    boost, bury, fired = 0.0, 1.0, []
    for b in rules.boosts:
        if dsl_eval.matches(b.filter, hit.source, hit.id, now):
            boost += b.value
            fired.append(b.rule)
    for b in rules.buries:
        if dsl_eval.matches(b.filter, hit.source, hit.id, now):
            bury *= b.value
            fired.append(b.rule)
    return boost, bury, tuple(fired)


def ranking(
    scored: Sequence[ScoredHit], rules: RulePlan, available: Mapping[str, Hit]
) -> list[tuple[str, int | None]]:
    """The whole result list as the proxy serves it: (id, pinned position or None). `scored`
    is score()'s output; `available` the catalog items by id that pins may show (existing
    and not hidden: the pinned fetch)."""
    present = [(p.position, p.item) for p in rules.pins if p.item in available]
    organic = [h.id for h in scored]
    page = pins.layout(present, organic, 0, 0, len(organic) + len(present), len(organic))
    return list(page)


def _term(hit: Hit, p: Plan, boost: BoostProfile) -> tuple[float, tuple[AttributeMatch, ...]]:
    """The unweighted term and, in affinity mode, each attribute's match."""
    if p.mode == "affinity":
        return affinity(hit.attributes, p.params)
    if p.mode == "popularity":
        return popularity_term(hit.popularity, boost.cold_start.modifier), ()
    return 0.0, ()
