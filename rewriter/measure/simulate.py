"""A simulated shop to prove the experiment statistics: known preferences, known truth.

The world: items with a brand, a category and a price; users with one favourite brand and
one favourite category, and a click propensity (gamma, mean 1: some users click more than
others, which is what makes impressions of one user correlated). A user searches a category
(their favourite with probability P_FAVOURITE_QUERY) and sees the top 10 of its items.

Rankings. `generic`: by a fixed relevance score per item. `personalized`: relevance +
alpha · [item brand is the user's favourite] (the category is fixed by the query), i.e. the
engine's formula with a profile that knows the true favourite.

Click model (position-based): P(click at rank r) = propensity · EXAMINE[r] · attract, with
attract = ATTRACT_FAVOURITE for the favourite brand, else ATTRACT_OTHER. A click leads to
add_to_cart with P_CART and a cart to a purchase (price × 1) with P_BUY. Clicks and carts
carry the search's query_id; purchases do not (they are attributed to the user's variant).

Because every probability is known, the true CTR of a variant is computed exactly (an
expectation over user types, queries and a quantile grid of propensities), so a simulated
experiment's interval can be checked against the truth. `aa_false_positive_rate` runs many
A/A experiments; at α = 0.05 about 5% should be significant. measure/simulate_proxy.py
sends the same population through the real proxy and engine.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from rewriter.experiments.assignment import Experiment, Variant
from rewriter.measure import experiment_report as er
from rewriter.measure import stats

TOP = 10
EXAMINE = np.array([1.0 / (r + 1) ** 0.7 for r in range(TOP)])
ATTRACT_FAVOURITE = 0.15
ATTRACT_OTHER = 0.08
P_FAVOURITE_QUERY = 0.7
P_CART = 0.3
P_BUY = 0.5
PROPENSITY_SHAPE = 2.0
MEAN_SEARCHES = 2.5
DAY_S = 86_400.0


@dataclass(frozen=True)
class World:
    """Items (brand, category, relevance, price) and the rankings of both variants."""

    brands: int = 6
    categories: int = 8
    per_pair: int = 4
    alpha: float = 1.0
    seed: int = 0

    @cached_property
    def items(self) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(self.seed)
        brand, category = np.meshgrid(np.arange(self.brands), np.arange(self.categories))
        brand = np.repeat(brand.ravel(), self.per_pair)
        category = np.repeat(category.ravel(), self.per_pair)
        n = len(brand)
        return {
            "brand": brand,
            "category": category,
            "relevance": rng.uniform(0.0, 1.5, n),
            "price": np.round(rng.lognormal(3.5, 0.5, n), 2),
        }

    def ranking(self, query: int, brand: int, personalized: bool) -> np.ndarray:
        """Item indices shown for a category query to a user with favourite `brand`."""
        it = self.items
        candidates = np.flatnonzero(it["category"] == query)
        score = it["relevance"][candidates].copy()
        if personalized:
            score += self.alpha * (it["brand"][candidates] == brand)
        return candidates[np.argsort(-score, kind="stable")][:TOP]

    @cached_property
    def _tables(self) -> dict[bool, tuple[np.ndarray, np.ndarray]]:
        """variant -> (shown items [brand, query, TOP], attractiveness [brand, query, TOP])."""
        out = {}
        for personalized in (False, True):
            shown = np.full((self.brands, self.categories, TOP), -1)
            attract = np.zeros((self.brands, self.categories, TOP))
            for b in range(self.brands):
                for q in range(self.categories):
                    ids = self.ranking(q, b, personalized)
                    shown[b, q, : len(ids)] = ids
                    fav = self.items["brand"][ids] == b
                    attract[b, q, : len(ids)] = np.where(fav, ATTRACT_FAVOURITE, ATTRACT_OTHER)
            out[personalized] = (shown, attract)
        return out

    def true_ctr(self, personalized: bool, grid: int = 400) -> float:
        """E[P(≥ 1 click)] per impression, exactly over types and queries, numerically over
        propensity (a quantile grid of the gamma distribution)."""
        _, attract = self._tables[personalized]
        props = _gamma_quantiles(grid)
        q_weight = np.full(
            (self.categories, self.categories), (1 - P_FAVOURITE_QUERY) / self.categories
        )
        q_weight += np.eye(self.categories) * P_FAVOURITE_QUERY  # [favourite category, query]
        total = 0.0
        for fav_cat in range(self.categories):
            for q in range(self.categories):
                p = np.clip(props[:, None, None] * EXAMINE * attract[:, q, :][None], 0, 1)
                ctr = 1 - np.prod(1 - p, axis=-1)  # [propensity, brand]
                total += q_weight[fav_cat, q] * ctr.mean()
        return total / self.categories

    def true_lift(self) -> float:
        return self.true_ctr(True) / self.true_ctr(False) - 1


def _gamma_quantiles(n: int) -> np.ndarray:
    """n equally spaced quantiles of Gamma(shape, scale = 1/shape) (mean 1), by sampling a
    fixed large sample: precise enough for a truth whose error is far below any CI."""
    rng = np.random.default_rng(12345)
    sample = np.sort(rng.gamma(PROPENSITY_SHAPE, 1 / PROPENSITY_SHAPE, 400_000))
    return sample[((np.arange(n) + 0.5) / n * len(sample)).astype(int)]


def experiment(name: str, salt: str, treatment_generic: bool = False) -> Experiment:
    """A 50/50 experiment: generic control vs personalized (or generic again for A/A)."""
    return Experiment(
        name=name,
        index="shop",
        salt=salt,
        start=0.0,
        variants=(
            Variant("control", 50.0, generic=True),
            Variant("treatment", 50.0, generic=treatment_generic),
        ),
        control="control",
    )


@dataclass(frozen=True)
class Run:
    impressions: list[er.ImpressionRow]
    events: list[er.EventRow]


def simulate_run(world: World, exp: Experiment, users: int, seed: int) -> Run:
    """One experiment: `users` users, assigned by the experiment's hash, search and click."""
    rng = np.random.default_rng(seed)
    ids = [f"u{seed}-{i}" for i in range(users)]
    arms = [exp.assign(u) for u in ids]
    personalized = np.array([not v.generic for v in arms])
    variant = [v.name for v in arms]
    fav_brand = rng.integers(0, world.brands, users)
    fav_cat = rng.integers(0, world.categories, users)
    propensity = rng.gamma(PROPENSITY_SHAPE, 1 / PROPENSITY_SHAPE, users)
    searches = 1 + rng.poisson(MEAN_SEARCHES - 1, users)
    owner = np.repeat(np.arange(users), searches)
    n = len(owner)
    random_q = rng.integers(0, world.categories, n)
    query = np.where(rng.random(n) < P_FAVOURITE_QUERY, fav_cat[owner], random_q)
    times = rng.uniform(0, 3 * DAY_S, n)
    shown = np.empty((n, TOP), int)
    attract = np.empty((n, TOP))
    for flag in (False, True):
        rows = np.flatnonzero(personalized[owner] == flag)
        s, a = world._tables[flag]
        shown[rows] = s[fav_brand[owner[rows]], query[rows]]
        attract[rows] = a[fav_brand[owner[rows]], query[rows]]
    p_click = np.clip(propensity[owner][:, None] * EXAMINE * attract, 0, 1)
    clicks = rng.random((n, TOP)) < p_click
    return _rows(world, rng, ids, variant, owner, times, shown, clicks)


def _rows(
    world: World,
    rng: np.random.Generator,
    ids: Sequence[str],
    variant: Sequence[str],
    owner: np.ndarray,
    times: np.ndarray,
    shown: np.ndarray,
    clicks: np.ndarray,
) -> Run:
    impressions = [
        er.ImpressionRow(f"q{k}-{ids[u]}", ids[u], variant[u], float(times[k]))
        for k, u in enumerate(owner)
    ]
    events: list[er.EventRow] = []
    for k, r in zip(*np.nonzero(clicks), strict=True):
        user, qid, t = ids[owner[k]], impressions[k].query_id, float(times[k]) + 5 + r
        events.append(er.EventRow(user, er.CLICK, t, qid))
        if rng.random() < P_CART:
            events.append(er.EventRow(user, er.CART, t + 10, qid))
            if rng.random() < P_BUY:
                price = float(world.items["price"][shown[k, r]])
                events.append(er.EventRow(user, er.PURCHASE, t + 60, None, price, 1))
    return Run(impressions, events)


def p_values(groups: dict[str, er.Users], metrics: Sequence[str]) -> dict[str, float]:
    """Treatment vs control p-value per metric (no report rendering: fast for many runs)."""
    cols = {name: er._columns(users) for name, users in groups.items()}
    return {m: er.compare(m, cols["control"], cols["treatment"]).p_value for m in metrics}


def naive_ctr_p(groups: dict[str, er.Users]) -> float:
    """The wrong test, for contrast: CTR as if every impression were an independent trial."""
    c, t = groups["control"].values(), groups["treatment"].values()
    return stats.two_proportion_ztest(
        sum(len(u.clicked) for u in c),
        sum(u.impressions for u in c),
        sum(len(u.clicked) for u in t),
        sum(u.impressions for u in t),
    ).p_value


@dataclass(frozen=True)
class FalsePositives:
    runs: int
    rates: dict[str, float]
    naive_ctr_rate: float


def aa_false_positive_rate(
    runs: int = 200,
    users: int = 2000,
    metrics: Sequence[str] = ("ctr", "conversion_rate", "revenue_per_user"),
    seed: int = 0,
) -> FalsePositives:
    """Share of A/A experiments (both arms generic) with p < 0.05, per metric."""
    world = World(seed=seed)
    hits = dict.fromkeys(metrics, 0)
    naive = 0
    for i in range(runs):
        exp = experiment("aa", f"aa-{seed}-{i}", treatment_generic=True)
        run = simulate_run(world, exp, users, seed * 100_003 + i)
        groups, _ = er.attribute(exp, run.impressions, run.events)
        for m, p in p_values(groups, metrics).items():
            hits[m] += p < stats.ALPHA
        naive += naive_ctr_p(groups) < stats.ALPHA
    return FalsePositives(runs, {m: h / runs for m, h in hits.items()}, naive / runs)


def ab_report(users: int = 4000, seed: int = 1, alpha: float = 1.0) -> tuple[er.Report, float]:
    """One A/B experiment (generic vs personalized) and the true relative CTR lift."""
    world = World(alpha=alpha, seed=seed)
    exp = experiment("sim-ab", f"ab-{seed}")
    run = simulate_run(world, exp, users, seed)
    return er.build_report(exp, run.impressions, run.events), world.true_lift()


def coverage(runs: int = 100, users: int = 2000, seed: int = 2) -> float:
    """Share of A/B runs whose 95% interval of the relative CTR lift covers the truth."""
    world = World(seed=seed)
    truth = world.true_lift()
    covered = 0
    for i in range(runs):
        exp = experiment("cov", f"cov-{seed}-{i}")
        run = simulate_run(world, exp, users, seed * 100_003 + i)
        groups, _ = er.attribute(exp, run.impressions, run.events)
        cols = {name: er._columns(u) for name, u in groups.items()}
        c, t = er.estimate("ctr", cols["control"]), er.estimate("ctr", cols["treatment"])
        lift = stats.relative_lift(c.value, c.se, t.value, t.se)
        covered += lift.low <= truth <= lift.high
    return covered / runs


def describe_rates(fp: FalsePositives) -> str:
    rates = ", ".join(f"{m} {r:.1%}" for m, r in fp.rates.items())
    se = math.sqrt(0.05 * 0.95 / fp.runs)
    return (
        f"A/A false-positive rate over {fp.runs} runs (expected 5.0% ± {1.96 * se:.1%}): "
        f"{rates}; naive per-impression CTR test: {fp.naive_ctr_rate:.1%}"
    )
