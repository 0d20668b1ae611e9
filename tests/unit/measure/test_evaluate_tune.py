"""`affinity evaluate --tune` without an engine: splits, the search, the scorer, the patch."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from rewriter.boost.horizons import ItemMemory, SessionIntent
from rewriter.boost.profile import BoostProfile, parse_boost_profile
from rewriter.events.event import Event
from rewriter.measure import evaluate_tune as tune
from rewriter.ranking.reference import Hit

T0 = 1_700_000_000.0


def ev(n: int, item: str, type: str = "view", user: str = "u", brand: str = "acme") -> Event:
    return Event(
        event_id=f"{user}-{n}",
        user_id=user,
        type=type,
        item_id=item,
        timestamp=T0 + 60 * n,
        attributes={"brand": (brand,)},
    )


def test_validation_is_the_positive_before_the_tested_one() -> None:
    events = [ev(0, "a"), ev(1, "b"), ev(2, "c", "add_to_cart"), ev(3, "d")]
    train, validation, test = tune.splits(events, ("add_to_cart",))
    assert [e.item_id for e in test] == ["c"]
    assert [e.item_id for e in train] == ["a", "b"]
    assert validation == []  # no positive before the tested one
    train, validation, test = tune.splits(events, ("view", "add_to_cart"))
    assert [e.item_id for e in test] == ["d"] and [e.item_id for e in validation] == ["c"]
    assert [e.item_id for e in tune.before(train, validation[0])] == ["a", "b"]


def _case(
    history: list[Event], target: str, ids: list[str], brands: dict[str, str]
) -> tune.TuneCase:
    hits = tuple(
        Hit(i, 1.0 - n * 1e-3, {"brand": [brands[i]], "id": [i]}) for n, i in enumerate(ids)
    )
    event = ev(99, target)
    return tune.TuneCase(event, tuple(history), hits, frozenset(e.item_id for e in history))


BOOST = BoostProfile(name="t", attributes={"brand": 1.0}, session=SessionIntent(weights={}))


def test_item_memory_brings_back_an_item_seen_before() -> None:
    ids = [f"i{n}" for n in range(20)]
    brands = dict.fromkeys(ids, "acme")
    case = _case([ev(0, "i15"), ev(1, "i15"), ev(2, "i3")], "i15", ids, brands)
    scorer = tune.Scorer([case], exclude_seen=False)
    assert scorer.ndcg(BOOST) == 0.0  # rank 16: every item has the same brand
    remembered = replace(BOOST, item_memory=ItemMemory(weight=1.0))
    assert scorer.ndcg(remembered) == 1.0


def test_session_intent_follows_the_current_session() -> None:
    ids = [f"i{n}" for n in range(20)]
    brands = {i: ("zenith" if i == "i12" else "acme") for i in ids}
    # days ago: ten acme views; just now: one zenith view (of another item)
    history = [replace(ev(n, "i1"), timestamp=T0 - 3 * 86_400 + n) for n in range(10)]
    history.append(ev(98, "i2", brand="zenith"))
    case = _case(history, "i12", ids, brands)
    scorer = tune.Scorer([case], exclude_seen=False)
    assert scorer.ndcg(BOOST) == 0.0
    session = replace(BOOST, session=SessionIntent(weights={"brand": 2.0}))
    assert scorer.ndcg(session) == 1.0


def test_guarded_objective_refuses_what_costs_never_seen_items() -> None:
    ids = [f"i{n}" for n in range(20)]
    brands = dict.fromkeys(ids, "acme")
    seen_case = _case([ev(0, "i15")], "i15", ids, brands)
    unseen = _case([ev(0, "i15")], "i0", ids, brands)
    scorer = tune.Scorer([seen_case, unseen], exclude_seen=False)
    remembered = replace(BOOST, item_memory=ItemMemory(weight=1.0))
    assert scorer.ndcg(remembered) > scorer.ndcg(BOOST)  # 1 + 1/log2(3) vs 1
    guarded = scorer.guarded(floor=1.0)  # BOOST ranks the never-seen i0 first
    assert guarded(BOOST) == pytest.approx(0.5)
    assert guarded(remembered) < guarded(BOOST)


def test_coordinate_search_finds_the_best_grid_point() -> None:
    start = replace(BOOST, alpha=1.0)
    best, value = tune.coordinate_search(
        start, lambda b: -abs(b.alpha - 2.0) - abs(b.half_life_days - 120), lambda m: None
    )
    assert (best.alpha, best.half_life_days, value) == (2.0, 120.0, 0.0)


def test_the_yaml_patch_is_a_valid_boost_profile() -> None:
    best = replace(
        BOOST,
        alpha=2.0,
        session=SessionIntent(0.5, {"brand": 0.5, "item": 2.0}),
        item_memory=ItemMemory(1.0, 3.0, 10),
    )
    parsed = parse_boost_profile("name: t\n" + tune.yaml_patch(best))
    assert (parsed.alpha, parsed.session, parsed.item_memory) == (
        best.alpha,
        best.session,
        best.item_memory,
    )


def test_the_term_table_ranks_as_the_reference_scorer() -> None:
    """Scorer's fast path (Affinity = term table · weights) against reference.score itself,
    on random histories, hits and candidate profiles, for every relevance shape."""
    rng = random.Random(3)
    brands = ["acme", "zenith", "orbis"]
    cases = []
    for c in range(40):
        user = f"u{c}"
        history = [
            replace(ev(n, f"i{rng.randrange(30)}", user=user, brand=rng.choice(brands)),
                    timestamp=T0 - rng.uniform(0, 5 * 86_400))
            for n in range(rng.randrange(0, 12))
        ]  # fmt: skip
        hits = tuple(
            Hit(
                f"i{n}",
                round(rng.uniform(0, 3), 1),
                {"brand": [rng.choice(brands)], "id": [f"i{n}"]},
                popularity=rng.uniform(0, 50),
            )
            for n in rng.sample(range(30), 20)
        )
        hits = tuple(sorted(hits, key=lambda h: -h.relevance))
        cases.append(tune.TuneCase(ev(99, "i1", user=user), tuple(history), hits, frozenset()))
    scorer = tune.Scorer(cases, exclude_seen=False)
    for _ in range(12):
        candidate = replace(
            BOOST,
            alpha=rng.choice([0.5, 2.0]),
            window=rng.choice([5, 100]),
            shape=rng.choice(["rescore", "function_score"]),
            attributes={"brand": rng.choice([0.0, 1.0])},
            session=SessionIntent(
                rng.choice([0.5, 8.0]), {"brand": rng.choice([0.0, 1.0]), "item": 1.0}
            ),
            item_memory=ItemMemory(rng.choice([0.0, 2.0]), 3.0, rng.choice([None, 2])),
        )
        for shape in ("additive", "normalized", "multiplicative"):
            fast = scorer.scores(candidate, shape)
            exact = scorer.scores(candidate, shape, exact=True)
            assert fast.ndcg == exact.ndcg and fast.rr == exact.rr, (candidate, shape)
