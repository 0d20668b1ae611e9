"""The reference scorer's session and item-memory terms (painless/affinity.painless twin)."""

from __future__ import annotations

import pytest

from rewriter.boost.horizons import ItemMemory, SessionIntent
from rewriter.boost.profile import BoostProfile
from rewriter.profiles.view import UserAffinity
from rewriter.ranking.reference import affinity, plan, script_fields, script_params

BOOST = BoostProfile(
    name="h",
    top_k=2,
    attributes={"brand": 1.0},
    session=SessionIntent(weights={"brand": 0.5, "item": 2.0}),
    item_memory=ItemMemory(weight=3.0),
)
USER = UserAffinity(
    "u",
    {"brand": {"acme": 1.0}},
    10.0,
    horizons={
        "session": {"brand": {"zenith": 0.8}, "item": {"i1": 0.9, "i2": 0.1, "i3": 0.05}},
        "items": {"item": {"i2": 1.0}},
    },
)


def test_script_params_carry_each_horizon_with_item_ids_as_the_id_field() -> None:
    params = script_params(USER, BOOST)
    assert params["horizons"] == {
        "session": {
            "brand": {"weight": 0.5, "values": {"zenith": 0.8}},
            "id": {"weight": 2.0, "values": {"i1": 0.9, "i2": 0.1}},  # top_k 2
        },
        "items": {"id": {"weight": 3.0, "values": {"i2": 1.0}}},
    }
    assert script_fields(params) == ["brand", "id"]


def test_no_horizons_key_without_weights_or_values() -> None:
    plain = BoostProfile(name="plain", session=SessionIntent(weights={}))
    assert "horizons" not in script_params(USER, plain)
    bare = UserAffinity("u", {"brand": {"acme": 1.0}}, 10.0)
    assert "horizons" not in script_params(bare, BOOST)


def test_affinity_adds_every_horizon_by_max_over_values() -> None:
    params = script_params(USER, BOOST)
    total, matches = affinity({"brand": ["zenith"], "id": ["i2"]}, params)
    # long-term brand 0; session brand 0.5 · 0.8; session item 2 · 0.1; item memory 3 · 1
    assert total == pytest.approx(0.4 + 0.2 + 3.0)
    assert [m.key for m in matches] == ["brand", "session.brand", "session.id", "items.id"]


def test_a_user_known_only_through_a_horizon_is_personalized() -> None:
    user = UserAffinity("u", {}, 10.0, horizons={"items": {"item": {"i1": 1.0}}})
    assert plan(user, BOOST).mode == "affinity"
    plain = BoostProfile(name="plain", session=SessionIntent(weights={}))
    assert plan(user, plain).reason == "no_profile_cold_start"
