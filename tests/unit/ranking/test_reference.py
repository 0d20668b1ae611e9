"""The reference scorer: hand-computed numbers, window semantics, and drift guards."""

from __future__ import annotations

import math
import re
from dataclasses import replace
from pathlib import Path

import pytest

from rewriter.boost.profile import BoostProfile, ColdStart
from rewriter.profiles.view import UserAffinity
from rewriter.ranking.reference import (
    Hit,
    affinity,
    alpha_eff,
    hit_from_source,
    plan,
    popularity_term,
    score,
    script_params,
)

PAINLESS = Path(__file__).resolve().parents[3] / "painless" / "affinity.painless"

USER = UserAffinity(
    user="u1",
    affinities={
        "brand": {"nike": 1.0, "adidas": 0.5, "puma": 0.0},
        "category": {"shoes": 1.0, "sport": 0.25},
        "color": {"red": 1.0},
    },
    mass=15.0,
)
BOOST = BoostProfile(name="t", alpha=2.0, k=5.0, attributes={"brand": 1.0, "category": 0.5})


def test_alpha_eff() -> None:
    assert alpha_eff(2.0, 15.0, 5.0) == pytest.approx(1.5)
    assert alpha_eff(2.0, 5.0, 5.0) == pytest.approx(1.0)
    assert alpha_eff(2.0, 0.0, 0.0) == 0.0
    assert alpha_eff(2.0, 3.0, 0.0) == 2.0


def test_script_params_keep_weighted_known_values() -> None:
    params = script_params(USER, BOOST)
    assert params == {
        "attributes": {
            "brand": {"weight": 1.0, "values": {"nike": 1.0, "adidas": 0.5}},
            "category": {"weight": 0.5, "values": {"shoes": 1.0, "sport": 0.25}},
        }
    }


def test_script_params_top_k_and_zero_weights() -> None:
    user = UserAffinity("u", {"brand": {"b": 0.5, "a": 0.5, "c": 0.9}, "category": {"x": 1}}, 3)
    boost = BoostProfile(name="t", top_k=2, attributes={"brand": 1.0, "category": 0.0})
    params = script_params(user, boost)
    assert list(params["attributes"]) == ["brand"]
    assert list(params["attributes"]["brand"]["values"].items()) == [("c", 0.9), ("a", 0.5)]


def test_script_params_names_match_the_painless_script() -> None:
    source = PAINLESS.read_text()
    assert "params.attributes" in source
    assert re.search(r"attribute\.get\('values'\)", source)
    assert re.search(r"attribute\.get\('weight'\)", source)
    assert set(script_params(USER, BOOST)) == {"attributes"}
    assert set(script_params(USER, BOOST)["attributes"]["brand"]) == {"weight", "values"}


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ({"brand": ["nike"], "category": ["shoes"]}, 1.0 + 0.5),
        ({"brand": ["adidas", "nike"]}, 1.0),  # multi-valued: the best value counts
        ({"brand": ["adidas"], "category": ["sport", "unknown"]}, 0.5 + 0.125),
        ({"brand": [], "category": ["sport"]}, 0.125),  # empty field
        ({"category": ["toys"]}, 0.0),  # missing field, unknown value
        ({"color": ["red"]}, 0.0),  # attribute not in the boost profile
        ({}, 0.0),
    ],
)
def test_affinity_by_hand(doc: dict[str, list[str]], expected: float) -> None:
    total, _ = affinity(doc, script_params(USER, BOOST))
    assert total == pytest.approx(expected)


def test_affinity_records_the_matched_values() -> None:
    _, matches = affinity({"brand": ["adidas", "nike"], "category": ["toys"]}, BOOST_PARAMS)
    by_name = {m.attribute: m for m in matches}
    assert (by_name["brand"].value, by_name["brand"].affinity) == ("nike", 1.0)
    assert (by_name["category"].value, by_name["category"].contribution) == (None, 0.0)


BOOST_PARAMS = script_params(USER, BOOST)


@pytest.mark.parametrize(
    ("user", "boost", "mode", "reason"),
    [
        (USER, BOOST, "affinity", None),
        (None, BOOST, "popularity", "no_user"),
        (UserAffinity("u", {}, 0.0), BOOST, "popularity", "no_profile_cold_start"),
        (UserAffinity("u", {"brand": {"x": 1}}, 0.0), BOOST, "popularity", "no_profile_cold_start"),
        (UserAffinity("u", {"color": {"x": 1}}, 4.0), BOOST, "popularity", "no_profile_cold_start"),
        (None, BoostProfile(name="t", cold_start=ColdStart("none")), "none", "no_user"),
        (
            None,
            BoostProfile(name="t", cold_start=ColdStart(popularity_weight=0)),
            "none",
            "no_user",
        ),
        (UserAffinity("u", USER.affinities, 9.0, opt_out=True), BOOST, "none", "opt_out"),
        (USER, BoostProfile(name="t", alpha=0.0), "none", "alpha_zero"),
    ],
)
def test_plan(
    user: UserAffinity | None, boost: BoostProfile, mode: str, reason: str | None
) -> None:
    p = plan(user, boost)
    assert (p.mode, p.reason) == (mode, reason)
    assert (p.alpha_eff > 0) == (mode == "affinity")


def _hits() -> list[Hit]:
    return [
        Hit("a", 3.0, {"brand": ["puma"]}),
        Hit("b", 2.0, {"brand": ["adidas"]}),
        Hit("c", 1.0, {"brand": ["nike"], "category": ["shoes"]}),
        Hit("d", 0.5, {"brand": ["nike"]}),
    ]


def test_function_score_shape_boosts_every_hit() -> None:
    scored = score(_hits(), USER, BOOST, shape="function_score")
    # alpha_eff = 2 · 15 / 20 = 1.5; finals: a 3, b 2 + .75, c 1 + 2.25, d .5 + 1.5
    assert [h.id for h in scored] == ["c", "a", "b", "d"]
    assert [h.final for h in scored] == pytest.approx([3.25, 3.0, 2.75, 2.0])
    assert all(h.rescored for h in scored)


def test_rescore_shape_boosts_only_the_window() -> None:
    boost = BoostProfile(name="t", alpha=2.0, window=2, attributes=BOOST.attributes)
    scored = score(_hits(), USER, boost)
    assert [h.id for h in scored] == ["a", "b", "c", "d"]
    assert [h.final for h in scored] == pytest.approx([3.0, 2.75, 1.0, 0.5])
    assert [h.rescored for h in scored] == [True, True, False, False]
    assert scored[2].added == 0.0


def test_rescore_window_is_per_shard() -> None:
    """Window 1 on two shards rescores the first hit of each: with c on its own shard's top,
    c (third in the first pass) gains its affinity and moves up; on one shard only a would."""
    boost = BoostProfile(name="t", alpha=2.0, window=1, attributes=BOOST.attributes)
    assert [h.rescored for h in score(_hits(), USER, boost)] == [True, False, False, False]
    two = [replace(h, shard=n) for h, n in zip(_hits(), [0, 0, 1, 1], strict=True)]
    scored = score(two, USER, boost)
    # shard 0: a (rescored, no known brand), b; shard 1: c (rescored: 1 + 2.25), d
    assert [h.id for h in scored] == ["c", "a", "b", "d"]
    assert [h.final for h in scored] == pytest.approx([3.25, 3.0, 2.0, 0.5])
    assert [h.rescored for h in scored] == [True, True, False, False]


def test_ties_keep_the_plain_order() -> None:
    hits = [Hit("y", 2.0, {}), Hit("z", 2.0, {}), Hit("x", 1.0, {"brand": ["nike"]})]
    user = UserAffinity("u", {"brand": {"nike": 1.0}}, mass=1.0)
    boost = BoostProfile(name="t", alpha=1.0, k=0.0)
    scored = score(hits, user, boost)  # x climbs to 2.0 and ties: plain order breaks it
    assert [(h.id, h.final) for h in scored] == [("y", 2.0), ("z", 2.0), ("x", 2.0)]


def test_popularity_cold_start() -> None:
    hits = [Hit("a", 1.0, popularity=9.0), Hit("b", 1.5), Hit("c", 1.0, popularity=99.0)]
    boost = BoostProfile(name="t", cold_start=ColdStart("popularity", 0.5, "log1p"))
    scored = score(hits, None, boost)
    assert [h.id for h in scored] == ["c", "a", "b"]
    assert [h.final for h in scored] == pytest.approx([2.0, 1.5, 1.5])
    assert (scored[0].mode, scored[0].term, scored[0].weight) == ("popularity", 2.0, 0.5)


@pytest.mark.parametrize(
    ("modifier", "value", "expected"),
    [("none", 4.0, 4.0), ("sqrt", 4.0, 2.0), ("log1p", 99.0, 2.0), ("log1p", None, 0.0)],
)
def test_popularity_modifiers(modifier: str, value: float | None, expected: float) -> None:
    assert popularity_term(value, modifier) == pytest.approx(expected)


def test_no_plan_means_relevance_order() -> None:
    scored = score(_hits(), None, BoostProfile(name="t", cold_start=ColdStart("none")))
    assert [h.final for h in scored] == [3.0, 2.0, 1.0, 0.5]


def test_scored_hit_breakdown() -> None:
    top = score(_hits(), USER, BOOST, shape="function_score")[0]
    assert (top.mode, top.relevance) == ("affinity", 1.0)
    assert top.weight == pytest.approx(1.5)
    assert top.term == pytest.approx(1.5)
    assert math.isclose(top.final, 1.0 + 1.5 * 1.5)
    assert {m.attribute: (m.weight, m.value, m.affinity, m.contribution) for m in top.matches} == {
        "brand": (1.0, "nike", 1.0, 1.0),
        "category": (0.5, "shoes", 1.0, 0.5),
    }


def test_hit_from_source_normalizes_values() -> None:
    source = {"brand": "nike", "category": ["a", None, "b"], "color": None, "popularity": 3}
    hit = hit_from_source("1", 2.0, source, ["brand", "category", "color", "size"])
    assert hit.attributes == {"brand": ["nike"], "category": ["a", "b"]}
    assert hit.popularity == 3.0
