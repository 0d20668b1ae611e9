"""The reference scorer with rules: numbers computed by hand."""

from __future__ import annotations

import pytest

from rewriter.boost.profile import BoostProfile
from rewriter.profiles.view import UserAffinity
from rewriter.ranking.reference import Hit, ranking, score
from rewriter.ranking.resolve import ActiveFilter, ActivePin, RulePlan

USER = UserAffinity("u", {"brand": {"acme": 1.0, "zenit": 0.5}}, 10.0)
BOOST = BoostProfile(name="t", alpha=1.0, k=0.0, attributes={"brand": 1.0})
RULES = RulePlan(
    boosts=(ActiveFilter("acme", {"term": {"brand": "acme"}}, 2.0),),
    buries=(ActiveFilter("refurb", {"term": {"category": "refurbished"}}, 0.5),),
    hides=(ActiveFilter("oos", {"term": {"in_stock": False}}),),
)


def _hit(hit_id: str, relevance: float, **source: object) -> Hit:
    attributes = {"brand": [str(source["brand"])]} if "brand" in source else {}
    return Hit(hit_id, relevance, attributes, None, source)


HITS = [
    _hit("a", 3.0, brand="zenit", category="refurbished"),
    _hit("b", 2.0, brand="acme"),
    _hit("c", 1.8, brand="acme", in_stock=False),
    _hit("d", 1.0, brand="zenit"),
]


def test_function_score_formula() -> None:
    scored = score(HITS, USER, BOOST, "function_score", RULES, now=0.0)
    # a: 3·0.5 + 0.5·0.5 = 1.75; b: 2 + 2 + 1 = 5; c hidden; d: 1 + 0.5 = 1.5
    assert [(h.id, h.final) for h in scored] == [("b", 5.0), ("a", 1.75), ("d", 1.5)]
    a = scored[1]
    assert (a.boost, a.bury, a.added, a.rules) == (0.0, 0.5, 0.25, ("refurb",))
    assert scored[0].rules == ("acme",)


def test_rescore_window_is_taken_over_the_first_pass() -> None:
    boost = BoostProfile(name="t", alpha=1.0, k=0.0, attributes={"brand": 1.0}, window=1)
    scored = score(HITS, USER, boost, "rescore", RULES, now=0.0)
    # first pass: b 4, a 1.5, d 1 -> only b gets its affinity
    assert [(h.id, h.final, h.rescored) for h in scored] == [
        ("b", 5.0, True),
        ("a", 1.5, False),
        ("d", 1.0, False),
    ]


def test_segment_alpha_replaces_the_profile_alpha() -> None:
    plan = RulePlan(alpha=3.0)
    [d] = score([HITS[3]], USER, BOOST, "function_score", plan)
    assert d.final == pytest.approx(1.0 + 3.0 * 0.5)


def test_ranking_places_pins_and_drops_them_from_the_organic_list() -> None:
    plan = RulePlan(
        pins=(ActivePin("p", "x", 1), ActivePin("p", "b", 3), ActivePin("p", "gone", 4))
    )
    scored = score(HITS, USER, BOOST, "function_score", plan, now=0.0)
    assert "b" not in [h.id for h in scored]
    available = {"x": Hit("x", 0.0), "b": HITS[1]}
    assert ranking(scored, plan, available) == [
        ("x", 1),
        ("a", None),
        ("b", 3),
        ("c", None),
        ("d", None),
    ]
