"""Session intent and item memory: horizons folded beside the long-term affinities."""

from __future__ import annotations

import itertools
import json
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rewriter.boost.horizons import ITEM_KEY, ItemMemory, SessionIntent
from rewriter.boost.profile import BoostProfile, BoostProfileError, parse_boost_profile
from rewriter.events.event import Event
from rewriter.profiles.doc import HorizonState, UnreadableProfile, profile_from_source, to_source
from rewriter.profiles.fold import (
    FoldConfig,
    HorizonConfig,
    decayed,
    fold,
    fold_config,
    rebuild,
    without_masses,
)
from rewriter.profiles.view import affinity_view

HOUR = 3600.0
DAY = 86_400.0
T0 = 1_700_000_000.0
WEIGHTS = {"view": 1.0, "add_to_cart": 5.0, "purchase": 10.0}
SESSION = HorizonConfig("session", 2 * HOUR, ("brand",), items=True, store_k=50)
ITEMS = HorizonConfig("items", 30 * DAY, (), items=True, store_k=50)
CFG = FoldConfig(event_weights=WEIGHTS, half_life_s=30 * DAY, horizons=(SESSION, ITEMS))
_ids = itertools.count()


def ev(t: float, item: str, brand: str, type: str = "view", user: str = "u1") -> Event:
    return Event(
        event_id=f"e{next(_ids)}",
        user_id=user,
        type=type,
        item_id=item,
        timestamp=t,
        attributes={"brand": (brand,)},
    )


def test_the_session_forgets_in_hours_what_the_long_term_keeps() -> None:
    # Yesterday: three views of acme; an hour ago: one view of zenith.
    events = [ev(T0 - DAY + n, f"a{n}", "acme") for n in range(3)] + [ev(T0 - HOUR, "z", "zenith")]
    view = affinity_view(rebuild(events, CFG), T0, top_k=10)
    assert view.affinities["brand"] == pytest.approx({"acme": 1.0, "zenith": 1 / 3}, rel=0.05)
    session = view.horizons["session"]["brand"]
    # zenith leads the session, faded by an hour since the last event (2 h half-life).
    assert session["zenith"] == pytest.approx(2**-0.5)
    assert session["acme"] < 1e-3  # 3 views, 12 half-lives ago
    assert set(view.horizons["session"][ITEM_KEY]) == {"a0", "a1", "a2", "z"}


def test_item_memory_counts_each_item_by_event_weight() -> None:
    events = [ev(T0, "i1", "acme"), ev(T0, "i1", "acme", "add_to_cart"), ev(T0, "i2", "acme")]
    profile = rebuild(events, CFG)
    view = affinity_view(profile, T0, top_k=10)
    assert view.horizons["items"][ITEM_KEY] == pytest.approx({"i1": 1.0, "i2": 1 / 6})
    # A day later the horizon fades by the time since the last event: 2^(-1/30).
    later = affinity_view(profile, T0 + DAY, top_k=10)
    assert later.horizons["items"][ITEM_KEY]["i1"] == pytest.approx(2 ** (-1 / 30))


def test_a_day_after_the_session_the_session_term_is_negligible() -> None:
    profile = rebuild([ev(T0, "i1", "acme")], CFG)
    assert affinity_view(profile, T0 + DAY, top_k=10).horizons["session"]["brand"]["acme"] < 1e-3


def test_horizons_are_bounded_by_their_store_k() -> None:
    small = FoldConfig(
        event_weights=WEIGHTS, horizons=(HorizonConfig("items", DAY, (), True, store_k=5),)
    )
    profile = rebuild([ev(T0 + n, f"i{n}", "acme") for n in range(40)], small)
    kept = profile["horizons"]["items"]["affinities"][ITEM_KEY]
    assert sorted(kept) == [f"i{n}" for n in range(35, 40)]  # the most recent: largest masses


def test_a_profile_without_horizons_in_its_config_stores_none() -> None:
    profile = rebuild([ev(T0, "i1", "acme")], CFG)
    bare = FoldConfig(event_weights=WEIGHTS, horizons=())
    plain = fold(profile, [ev(T0 + 1, "i2", "acme")], bare)
    assert "horizons" not in plain
    assert "horizons" not in without_masses(profile)
    assert "horizons" not in rebuild([ev(T0, "i1", "acme")], bare)


def test_a_horizon_with_another_half_life_starts_again() -> None:
    profile = rebuild([ev(T0, "i1", "acme")], CFG)
    shorter = HorizonConfig("items", DAY, (), items=True)
    cfg = FoldConfig(event_weights=WEIGHTS, half_life_s=30 * DAY, horizons=(shorter,))
    again = fold(profile, [ev(T0 + 1, "i2", "acme")], cfg)
    assert again["horizons"]["items"]["half_life_s"] == DAY
    assert list(again["horizons"]["items"]["affinities"][ITEM_KEY]) == ["i2"]


def test_horizons_are_stored_as_arrays_and_read_back() -> None:
    profile = rebuild([ev(T0, "i1", "acme"), ev(T0 + 5, "i2", "zenith")], CFG)
    source = json.loads(json.dumps(to_source(profile)))
    stored = source["horizons"]["session"]["affinities"][ITEM_KEY]
    assert stored == {"values": ["i1", "i2"], "masses": stored["masses"]}
    assert profile_from_source(source) == profile


def test_a_bad_number_in_a_horizon_is_refused_by_name() -> None:
    profile = rebuild([ev(T0, "i1", "acme")], CFG)
    source = to_source(profile)
    source["horizons"]["items"]["affinities"][ITEM_KEY]["masses"] = [None]
    with pytest.raises(UnreadableProfile, match=r"horizons\.items\.affinities\.item\['i1'\]"):
        profile_from_source(source)


def test_fold_config_of_a_boost_profile() -> None:
    boost = BoostProfile(
        name="b",
        top_k=7,
        session=SessionIntent(
            half_life_hours=3, weights={"brand": 1.0, "category": 0.0, "item": 2}
        ),
        item_memory=ItemMemory(weight=0.5, half_life_days=10),
    )
    assert fold_config(boost).horizons == (
        HorizonConfig("session", 3 * HOUR, ("brand",), items=True, store_k=7),
        HorizonConfig("items", 10 * DAY, (), items=True, store_k=100),
    )
    plain = BoostProfile(name="plain", session=SessionIntent(weights={}))
    assert fold_config(plain).horizons == ()
    # the built-in session weight on brand is ignored by a profile without brand
    assert fold_config(BoostProfile(name="ml", attributes={"category": 1.0})).horizons == ()


def test_boost_profile_yaml_for_horizons() -> None:
    text = """
name: s
attributes: {brand: 1, category: 0}
session: {half_life_hours: 1.5, weights: {brand: 0.5, item: 1}}
item_memory: {weight: 0.3, half_life_days: 14}
"""
    boost = parse_boost_profile(text)
    assert boost.session == SessionIntent(1.5, {"brand": 0.5, "item": 1.0})
    assert boost.item_memory == ItemMemory(0.3, 14.0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("session: {weights: {color: 1}}", r"session.weights: 'color' is not one of"),
        ("session: {half_life_hours: 0}", r"session.half_life_hours"),
        ("item_memory: {weight: -1}", r"item_memory.weight"),
        ("item_memory: {half_life: 3}", r"half_life"),
    ],
)
def test_bad_horizon_settings_are_named(text: str, message: str) -> None:
    with pytest.raises(BoostProfileError, match=message):
        parse_boost_profile(f"name: s\n{text}\n")


# --- exactness: incremental folds equal one rebuild, whatever the batches ------------------


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[Event], list[list[Event]]]:
    rows = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["i1", "i2", "i3", "i4"]),
                st.sampled_from(["acme", "zenith"]),
                st.sampled_from(list(WEIGHTS)),
                st.one_of(st.floats(0, 10 * HOUR), st.floats(0, 200 * DAY)),
            ),
            min_size=1,
            max_size=30,
        )
    )
    events = [ev(T0 + t, item, brand, etype) for item, brand, etype, t in rows]
    deliveries = draw(st.permutations(events))
    cuts = sorted(draw(st.lists(st.integers(0, len(deliveries)), max_size=6)))
    bounds = [0, *cuts, len(deliveries)]
    return events, [deliveries[a:b] for a, b in itertools.pairwise(bounds)]


def _at(state: HorizonState, attribute: str, value: str, when: float) -> float:
    g = state["affinities"].get(attribute, {}).get(value, 0.0)
    return decayed(g, state["landmark"], when, state["half_life_s"])


@settings(max_examples=150, deadline=None)
@given(streams())
def test_incremental_horizons_equal_rebuild(stream: tuple[list[Event], list[list[Event]]]) -> None:
    events, batches = stream
    profile = None
    for batch in batches:
        if batch:
            profile = fold(profile, batch, CFG)
    shuffled = list(events)
    random.Random(0).shuffle(shuffled)
    rebuilt = rebuild(shuffled, CFG)
    assert profile is not None
    when = rebuilt["last_seen"]
    assert when is not None
    for name in ("session", "items"):
        got, want = profile["horizons"][name], rebuilt["horizons"][name]
        for attribute, values in want["affinities"].items():
            for value in set(values) | set(got["affinities"].get(attribute, {})):
                a = _at(got, attribute, value, when)
                b = _at(want, attribute, value, when)
                # 1e-7: a session horizon folded over hundreds of its half-lives was found
                # 1e-9 apart (2.4e-171 in both); the engine scores in float32 (1.2e-7)
                assert math.isclose(a, b, rel_tol=1e-7, abs_tol=1e-300), (name, value, a, b)
