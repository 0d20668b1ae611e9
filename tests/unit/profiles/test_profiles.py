"""The affinity math: forward decay, folding, rebases, caps, views and aggregates."""

from __future__ import annotations

import copy
import itertools
import json
import math
import random
from collections.abc import Sequence
from dataclasses import replace

import pytest
from hypothesis import event as note
from hypothesis import given, settings
from hypothesis import strategies as st

from rewriter.events.event import Event
from rewriter.profiles.doc import ProfileDoc, ProfileError, decode, profile_from_source, to_source
from rewriter.profiles.fold import (
    EXPIRE_HALF_LIVES,
    REBASE_HALF_LIVES,
    RECENT_SESSIONS,
    FoldConfig,
    decayed,
    dedupe,
    empty_profile,
    fold,
    popularity_updates,
    rebuild,
    retire,
    store_k_for,
)
from rewriter.profiles.view import affinity_view, segment_priors

H = 3600.0
T0 = 1_700_000_000.0
WEIGHTS = {"view": 1.0, "click": 2.0, "add_to_cart": 5.0, "purchase": 10.0}
CFG = FoldConfig(event_weights=WEIGHTS, half_life_s=H)

_counter = iter(range(10**9))


def ev(
    t: float,
    type: str = "click",
    *,
    brand: str | None = "acme",
    category: Sequence[str] = (),
    user: str = "u1",
    item: str = "i1",
    event_id: str | None = None,
    session: str | None = None,
    value: float | None = None,
    quantity: int | None = None,
    opt_out: bool = False,
) -> Event:
    attributes = {"brand": (brand,)} if brand else {}
    if category:
        attributes["category"] = tuple(category)
    return Event(
        event_id=event_id or f"e{next(_counter)}",
        user_id=user,
        type=type,
        item_id=item,
        timestamp=t,
        session_id=session,
        value=value,
        quantity=quantity,
        opt_out=opt_out,
        attributes=attributes,
    )


def at(profile: ProfileDoc, attribute: str, value: str, when: float) -> float:
    """A stored mass decayed to `when`."""
    g = profile["affinities"].get(attribute, {}).get(value, 0.0)
    return decayed(g, profile["landmark"], when, profile["half_life_s"])


# --- the formula, by hand -----------------------------------------------------------------


def test_one_event_is_its_weight_at_its_time() -> None:
    profile = fold(None, [ev(T0, "purchase", category=["shoes", "sale"])], CFG)
    assert profile["landmark"] == T0
    assert profile["mass"] == 10.0
    assert profile["affinities"] == {
        "brand": {"acme": 10.0},
        "category": {"shoes": 10.0, "sale": 10.0},
    }
    assert at(profile, "brand", "acme", T0 + H) == pytest.approx(5.0, rel=1e-12)
    assert at(profile, "brand", "acme", T0 + 3 * H) == pytest.approx(1.25, rel=1e-12)


def test_normalized_affinity_and_decayed_mass() -> None:
    events = [ev(T0, "purchase", brand="a"), ev(T0 + H, "click", brand="b")]
    view = affinity_view(fold(None, events, CFG), now=T0 + 2 * H, top_k=10)
    # a: 10 at T0 -> 5 one half-life later; b: 2 at T0+H. Normalized by the max (a).
    assert view.affinities["brand"] == pytest.approx({"a": 1.0, "b": 0.4}, rel=1e-12)
    # decayed mass at T0+2H: 10/4 + 2/2
    assert view.mass == pytest.approx(3.5, rel=1e-12)
    assert view.counters == {"events": 2.0, "sessions": 0.0, "purchases": 1.0,
                             "lifetime_value": 0.0}  # fmt: skip


def test_older_event_weighs_half_per_half_life() -> None:
    events = [ev(T0, brand="old"), ev(T0 + 2 * H, brand="new")]
    view = affinity_view(fold(None, events, CFG), now=T0 + 2 * H, top_k=10)
    assert view.affinities["brand"] == pytest.approx({"new": 1.0, "old": 0.25}, rel=1e-12)


def test_unknown_or_zero_weight_types_count_but_add_no_mass() -> None:
    cfg = FoldConfig(event_weights={**WEIGHTS, "view": 0.0}, half_life_s=H)
    profile = fold(None, [ev(T0, "wishlist", brand="w"), ev(T0, "view", brand="v")], cfg)
    assert profile["affinities"] == {}
    assert profile["mass"] == 0.0
    assert profile["counters"]["events"] == 2
    assert profile["last_seen"] == T0


def test_top_k_orders_by_affinity_then_value() -> None:
    events = [ev(T0, "purchase", brand="z"), ev(T0, "click", brand="b"), ev(T0, "click", brand="a")]
    view = affinity_view(fold(None, events, CFG), now=T0, top_k=2)
    assert list(view.affinities["brand"].items()) == [("z", 1.0), ("a", 0.2)]


# --- purity and exactly-once --------------------------------------------------------------


def test_fold_returns_a_new_document_and_never_mutates_input() -> None:
    base = fold(None, [ev(T0, session="s1")], CFG)
    base["segments"] = ["runners"]
    frozen = copy.deepcopy(base)
    batch = [ev(T0 + REBASE_HALF_LIVES * H + H, brand="new", session="s2")]
    after = fold(base, batch, CFG)
    assert base == frozen
    assert after["segments"] == ["runners"] and after["segments"] is not base["segments"]
    assert after["landmark"] != base["landmark"]
    unchanged = fold(base, [], CFG)
    assert unchanged == base and unchanged is not base
    unchanged["affinities"]["brand"]["acme"] = -1.0
    assert base == frozen


def test_duplicates_in_a_batch_are_folded_once() -> None:
    event = ev(T0, "purchase", value=5.0, quantity=2, session="s")
    profile = fold(None, [event, event, event], CFG)
    assert profile["counters"] == {
        "events": 1,
        "sessions": 1,
        "purchases": 1,
        "lifetime_value": 10.0,
    }
    assert profile["mass"] == 10.0


def test_dedupe_keeps_first_delivery_and_skips_seen_ids() -> None:
    a1, a2, b = ev(T0, event_id="a"), ev(T0 + 1, event_id="a"), ev(T0, event_id="b")
    assert dedupe([a1, b, a2]) == [a1, b]
    assert dedupe([a1, b, a2], seen={"b"}) == [a1]


# --- landmark rebase and expiry -----------------------------------------------------------


def test_rebase_keeps_values_and_moves_landmark() -> None:
    gap = (REBASE_HALF_LIVES + 50) * H
    first = fold(None, [ev(T0, "purchase", brand="old")], CFG)
    second = fold(first, [ev(T0 + gap, "click", brand="new")], CFG)
    assert second["landmark"] == T0 + gap
    assert at(second, "brand", "old", T0 + gap) == pytest.approx(10.0 * 2.0**-550, rel=1e-12)
    assert at(second, "brand", "new", T0 + gap) == pytest.approx(2.0, rel=1e-12)
    assert second["mass"] == pytest.approx(2.0 + 10.0 * 2.0**-550, rel=1e-12)
    same = rebuild([ev(T0, "purchase", brand="old"), ev(T0 + gap, "click", brand="new")], CFG)
    assert at(same, "brand", "old", T0 + gap) == pytest.approx(10.0 * 2.0**-550, rel=1e-12)


def test_no_rebase_within_the_bound() -> None:
    first = fold(None, [ev(T0)], CFG)
    assert fold(first, [ev(T0 + REBASE_HALF_LIVES * H)], CFG)["landmark"] == T0


def test_values_decayed_beyond_the_horizon_are_dropped() -> None:
    gap = (EXPIRE_HALF_LIVES + 5) * H
    profile = fold(fold(None, [ev(T0, "purchase", brand="old")], CFG), [ev(T0 + gap)], CFG)
    assert set(profile["affinities"]["brand"]) == {"acme"}
    assert profile["mass"] == pytest.approx(2.0, rel=1e-12)


def test_late_old_events_do_not_move_the_landmark() -> None:
    late = fold(fold(None, [ev(T0 + 10 * H)], CFG), [ev(T0, brand="early")], CFG)
    assert late["landmark"] == T0 + 10 * H
    assert late["first_seen"] == T0
    assert at(late, "brand", "early", T0 + 10 * H) == pytest.approx(2.0 / 1024, rel=1e-12)


# --- caps, sessions, counters -------------------------------------------------------------


def test_cap_keeps_the_largest_masses_ties_by_value() -> None:
    cfg = FoldConfig(event_weights=WEIGHTS, half_life_s=H, store_k=2)
    events = [ev(T0, "purchase", brand="p"), ev(T0, "view", brand="v"), ev(T0, brand="c2"),
              ev(T0, brand="c1")]  # fmt: skip
    assert fold(None, events, cfg)["affinities"]["brand"] == {"p": 10.0, "c1": 2.0}
    assert store_k_for(10) == 100 and store_k_for(50) == 200


def test_sessions_are_distinct_ids() -> None:
    first = fold(None, [ev(T0, session="s1"), ev(T0 + 1, session="s1"), ev(T0 + 2)], CFG)
    second = fold(first, [ev(T0 + 3, session="s1"), ev(T0 + 4, session="s2")], CFG)
    assert (first["counters"]["sessions"], second["counters"]["sessions"]) == (1, 2)
    assert second["recent_sessions"] == {"s1": T0 + 3, "s2": T0 + 4}


def test_session_memory_is_bounded_to_the_most_recent() -> None:
    n = RECENT_SESSIONS + 6
    events = [ev(T0 + i, session=f"s{i:03d}") for i in range(n)]
    profile = fold(None, events, CFG)
    assert profile["counters"]["sessions"] == n
    assert len(profile["recent_sessions"]) == RECENT_SESSIONS
    assert (
        "s000" not in profile["recent_sessions"] and f"s{n - 1:03d}" in profile["recent_sessions"]
    )


def test_purchases_and_lifetime_value() -> None:
    cfg = FoldConfig(event_weights=WEIGHTS, half_life_s=H, purchase_types=("purchase", "rent"))
    events = [ev(T0, "purchase", value=3.0, quantity=4), ev(T0, "rent", value=2.5),
              ev(T0, "purchase"), ev(T0, "click", value=99.0)]  # fmt: skip
    counters = fold(None, events, cfg)["counters"]
    assert (counters["purchases"], counters["lifetime_value"]) == (3, 14.5)


# --- opt-out, errors, documents -----------------------------------------------------------


def test_a_purchase_too_large_for_a_double_keeps_lifetime_value_finite() -> None:
    """value 1e308 × quantity 10 is inf, which JSON stores as null: every later fold of the
    user and every search for them failed on it. The fold bounds what it adds."""
    huge = [ev(T0, "purchase", value=1e308, quantity=10), ev(T0 + 1, "purchase", value=1e308)]
    doc = fold(None, huge, CFG)
    spent = doc["counters"]["lifetime_value"]
    assert math.isfinite(spent) and spent > 0
    again = fold(json.loads(json.dumps(doc)), [huge[0], ev(T0 + 2, "purchase", value=5.0)], CFG)
    assert math.isfinite(again["counters"]["lifetime_value"])


def _broken(path: Sequence[str], value: object) -> dict:
    """A stored, readable profile with one number replaced (as an older version stored it)."""
    doc = json.loads(json.dumps(to_source(fold(None, [ev(T0, "purchase", value=3.0)], CFG))))
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return decode(doc)


BROKEN = [
    (("counters", "lifetime_value"), None),
    (("counters", "events"), -3),
    (("mass",), float("nan")),
    (("landmark",), "soon"),
    (("affinities", "brand"), {"acme": float("inf")}),
]


@pytest.mark.parametrize(("path", "value"), BROKEN)
def test_a_stored_profile_with_a_bad_number_is_refused_by_name(
    path: Sequence[str], value: object
) -> None:
    """Not a TypeError deep in the math: a ProfileError naming the profile, the field and
    the repair, for the writer to quarantine that one profile and the proxy to serve the
    user without personalization."""
    doc = _broken(path, value)
    for use in (
        lambda: fold(doc, [ev(T0 + 5)], CFG),  # type: ignore[arg-type]
        lambda: affinity_view(doc, T0, 10),  # type: ignore[arg-type]
        lambda: profile_from_source(to_source(doc)),
    ):
        with pytest.raises(ProfileError) as caught:
            use()
        assert path[0] in str(caught.value) and "affinity profile rebuild" in str(caught.value)
        assert "u1" in str(caught.value)


def test_opt_out_is_a_sticky_tombstone() -> None:
    profile = fold(None, [ev(T0, "purchase", session="s")], CFG)
    gone = fold(profile, [ev(T0 + 1, opt_out=True)], CFG, now=T0 + 5)
    assert gone["opt_out"] is True
    assert (gone["affinities"], gone["mass"], gone["counters"]["events"]) == ({}, 0.0, 0)
    assert (gone["updated_at"], gone["user"]) == (T0 + 5, "u1")
    assert fold(gone, [ev(T0 + 2, "purchase")], CFG)["affinities"] == {}
    view = affinity_view(gone, now=T0, top_k=5)
    assert (view.opt_out, view.mass, dict(view.affinities)) == (True, 0.0, {})
    assert rebuild([ev(T0, opt_out=True), ev(T0 + 1)], CFG)["opt_out"] is True


def test_half_life_change_requires_a_rebuild() -> None:
    profile = fold(None, [ev(T0)], CFG)
    other = FoldConfig(event_weights=WEIGHTS, half_life_s=2 * H)
    with pytest.raises(ProfileError, match="rebuild it from the events log"):
        fold(profile, [ev(T0 + 1)], other)


def test_profiles_name_the_boost_profile_that_folded_them() -> None:
    shop = FoldConfig(event_weights=WEIGHTS, half_life_s=H, source="shop")
    profile = fold(None, [ev(T0)], shop)
    assert profile["fold_profile"] == "shop"
    assert "fold_profile" not in fold(None, [ev(T0)], CFG)  # settings of no boost profile
    other = FoldConfig(event_weights=WEIGHTS, half_life_s=2 * H, source="slow")
    with pytest.raises(ProfileError) as err:
        fold(profile, [ev(T0 + 1)], other)
    assert "built (by boost profile 'shop')" in str(err.value)
    assert "boost profile 'slow' says" in str(err.value)
    assert "affinity profile rebuild --boost-profile slow" in str(err.value)


def test_events_of_another_user_are_refused() -> None:
    with pytest.raises(ProfileError, match="belongs to user u2"):
        fold(None, [ev(T0), ev(T0, user="u2")], CFG)
    with pytest.raises(ProfileError, match="at least one event"):
        fold(None, [], CFG)


def test_rebuild_without_events_needs_the_user() -> None:
    assert rebuild([], CFG, user="u9", now=T0) == {**empty_profile("u9", CFG), "updated_at": T0}
    with pytest.raises(ProfileError, match="user id"):
        rebuild([], CFG)


def test_updated_at_is_the_callers_clock_or_the_newest_event() -> None:
    assert fold(None, [ev(T0)], CFG)["updated_at"] == T0
    assert fold(None, [ev(T0)], CFG, now=T0 + 60)["updated_at"] == T0 + 60


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"half_life_s": 0.0}, "half_life_s"),
        ({"half_life_s": math.inf}, "half_life_s"),
        ({"event_weights": {"view": -1.0}}, "'view'"),
        ({"event_weights": {"view": math.nan}}, "'view'"),
        ({"store_k": 0}, "store_k"),
    ],
)
def test_fold_config_is_validated(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FoldConfig(**kwargs)  # type: ignore[arg-type]


def test_document_is_json_and_reads_back() -> None:
    events = [
        ev(T0, "purchase", category=["x", "y"], session="s", value=1.5),
        ev(T0 + 5, "view", category=["values"], session="t"),
    ]
    profile = fold(None, events, CFG)
    source = to_source(profile)
    # stored as arrays: no brand, category or session id becomes a JSON field name
    assert source["affinities"]["category"]["values"] == list(profile["affinities"]["category"])
    assert source["recent_sessions"] == {"ids": ["s", "t"], "last": [T0, T0 + 5]}
    stored = profile_from_source(json.loads(json.dumps(source)))
    assert stored == profile
    assert fold(stored, [ev(T0 + 1)], CFG)["counters"]["events"] == 3
    schema_1 = {**json.loads(json.dumps(profile)), "schema": 1}  # still read: objects
    assert profile_from_source(schema_1) == {**profile, "schema": 1}
    assert decode(source) == profile
    with pytest.raises(ProfileError, match="schema 3"):
        profile_from_source({**source, "schema": 3})
    with pytest.raises(ProfileError, match="lacks 'mass'"):
        profile_from_source({k: v for k, v in profile.items() if k != "mass"})


def test_decayed_saturates_instead_of_overflowing() -> None:
    assert decayed(1.0, T0, T0 - 5000 * H, H) == pytest.approx(1.7976931348623157e308)
    assert decayed(1.0, T0, T0 + 5000 * H, H) == 0.0
    assert decayed(0.0, None, T0, H) == 0.0


# --- aggregates ---------------------------------------------------------------------------


def test_popularity_updates() -> None:
    events = [ev(T0, "purchase", item="a", event_id="x"), ev(T0, item="a", event_id="x"),
              ev(T0 + H, item="b"), ev(T0, "purchase", item="c", opt_out=True),
              ev(T0, "wishlist", item="d")]  # fmt: skip
    masses = popularity_updates(events, CFG, landmark=T0)
    assert masses == pytest.approx({"a": 10.0, "b": 4.0}, rel=1e-12)
    with pytest.raises(ProfileError, match="rebase the catalog's popularity"):
        popularity_updates([ev(T0 + 1000 * H)], CFG, landmark=T0)


def test_segment_priors_average_normalized_affinities() -> None:
    a = {**fold(None, [ev(T0, "purchase", brand="x"), ev(T0, brand="y")], CFG), "segments": ["s"]}
    b = {**fold(None, [ev(T0, brand="y", user="u2")], CFG), "segments": ["s"]}
    c = {**fold(None, [ev(T0, brand="z", user="u3")], CFG), "segments": []}
    d = {**fold(None, [ev(T0, brand="q", user="u4", opt_out=True)], CFG), "segments": ["s"]}

    def first_segment(p: ProfileDoc) -> str | None:
        return p["segments"][0] if p["segments"] else None

    priors = segment_priors([a, b, c, d], first_segment)
    assert priors == {"s": {"brand": pytest.approx({"x": 0.5, "y": 0.6}, rel=1e-12)}}
    assert list(segment_priors([a, b], first_segment, top_k=1)["s"]["brand"]) == ["y"]


# --- the exactness property ---------------------------------------------------------------

USERS = ("u1", "u2", "u3")
ITEMS = {  # item -> (brand, categories)
    "i1": ("acme", ("shoes",)),
    "i2": ("acme", ("shoes", "sale")),
    "i3": ("zeta", ("hats",)),
    "i4": ("omni", ("hats", "sale")),
    "i5": ("omni", ()),
    "i6": ("", ("misc",)),
}
TYPES = ("view", "click", "add_to_cart", "purchase", "wishlist")
ABS_TOL = max(WEIGHTS.values()) * 2.0 ** (10 - EXPIRE_HALF_LIVES)


@st.composite
def event_streams(draw: st.DrawFn) -> tuple[FoldConfig, list[Event], list[list[Event]]]:
    half_life = draw(st.sampled_from([60.0, 3600.0, 86_400.0]))
    # Half-life offsets: clusters (0-3) and far jumps (up to 1500) to force rebases and expiry.
    offset = st.one_of(st.floats(0, 3), st.floats(0, 1500), st.integers(0, 1500).map(float))
    rows = draw(
        st.lists(
            st.tuples(
                st.sampled_from(USERS),
                st.sampled_from(TYPES),
                st.sampled_from(sorted(ITEMS)),
                offset,
                st.sampled_from([None, "s1", "s2", "s3"]),
                st.sampled_from([None, 0.0, 9.99, 120.0]),
            ),
            min_size=1,
            max_size=40,
        )
    )
    events = []
    for index, (user, etype, item, off, session, value) in enumerate(rows):
        brand, categories = ITEMS[item]
        attributes = {"brand": (brand,), "category": categories}
        events.append(
            Event(
                event_id=f"e{index}",
                user_id=user,
                type=etype,
                item_id=item,
                timestamp=T0 + off * half_life,
                session_id=session,
                value=value,
                quantity=2 if value else None,
                attributes={k: v for k, v in attributes.items() if v and v[0]},
            )
        )
    duplicates = draw(st.lists(st.sampled_from(events), max_size=15))
    deliveries = draw(st.permutations(events + duplicates))
    cuts = sorted(draw(st.lists(st.integers(0, len(deliveries)), max_size=8)))
    bounds = [0, *cuts, len(deliveries)]
    batches = [deliveries[a:b] for a, b in itertools.pairwise(bounds)]
    cfg = FoldConfig(event_weights=WEIGHTS, half_life_s=half_life, store_k=1000)
    return cfg, events, batches


def fold_incrementally(batches: list[list[Event]], cfg: FoldConfig) -> dict[str, ProfileDoc]:
    """As the pipeline does: the events log admits each id once; each batch folds per user."""
    logged: set[str] = set()
    profiles: dict[str, ProfileDoc] = {}
    for batch in batches:
        fresh = [e for e in batch if e.event_id not in logged]  # duplicates within stay
        logged.update(e.event_id for e in fresh)
        for user in {e.user_id for e in fresh}:
            mine = [e for e in fresh if e.user_id == user]
            profiles[user] = fold(profiles.get(user), mine, cfg)
    return profiles


def assert_equivalent(got: ProfileDoc, want: ProfileDoc) -> None:
    when = want["last_seen"]
    assert when is not None and got["last_seen"] == when
    assert got["first_seen"] == want["first_seen"]
    for attribute in set(got["affinities"]) | set(want["affinities"]):
        values = set(got["affinities"].get(attribute, {})) | set(want["affinities"][attribute])
        for value in values:
            a, b = at(got, attribute, value, when), at(want, attribute, value, when)
            assert math.isclose(a, b, rel_tol=1e-9, abs_tol=ABS_TOL), (attribute, value, a, b)
    got_mass = decayed(got["mass"], got["landmark"], when, got["half_life_s"])
    want_mass = decayed(want["mass"], want["landmark"], when, want["half_life_s"])
    assert math.isclose(got_mass, want_mass, rel_tol=1e-9, abs_tol=ABS_TOL)
    got_counters, want_counters = dict(got["counters"]), dict(want["counters"])
    assert math.isclose(got_counters.pop("lifetime_value"), want_counters.pop("lifetime_value"))
    assert got_counters == want_counters
    assert got["recent_sessions"] == want["recent_sessions"]
    assert_views_equivalent(got, want, when)


def assert_views_equivalent(got: ProfileDoc, want: ProfileDoc, when: float) -> None:
    """Normalized affinities agree to 1e-9 relative wherever the attribute is alive."""
    got_view = affinity_view(got, when, top_k=1000)
    want_view = affinity_view(want, when, top_k=1000)
    for attribute, values in want_view.affinities.items():
        peak = max(at(want, attribute, v, when) for v in values)
        if peak < 2.0**-400:  # the whole attribute sits near the expiry horizon
            continue
        for value, aff in values.items():
            other = got_view.affinities[attribute].get(value, 0.0)
            assert math.isclose(other, aff, rel_tol=1e-9, abs_tol=1e-50), (value, other, aff)


@settings(max_examples=300, deadline=None)
@given(event_streams())
def test_incremental_folds_equal_rebuild(
    stream: tuple[FoldConfig, list[Event], list[list[Event]]],
) -> None:
    cfg, events, batches = stream
    incremental = fold_incrementally(batches, cfg)
    assert set(incremental) == {e.user_id for e in events}
    for user, profile in incremental.items():
        deliveries = [e for batch in batches for e in batch if e.user_id == user]
        random.Random(0).shuffle(deliveries)
        rebuilt = rebuild(deliveries, cfg)
        if rebuilt["landmark"] != profile["landmark"]:
            note("landmark histories differ")
        assert_equivalent(profile, rebuilt)
        assert_equivalent(rebuilt, profile)


def test_scripted_stream_with_rebases_equals_rebuild() -> None:
    """A fixed case of the property, so a regression shows without hypothesis' search."""
    spans = [0, 2, 300, 520, 521, 900, 901.5, 1450, 1, 1399]
    events = [
        ev(T0 + s * H, TYPES[i % 4], brand=f"b{i % 3}", category=[f"c{i % 2}"], session=f"s{i % 2}")
        for i, s in enumerate(spans)
    ]
    incremental = None
    for chunk in (events[:3], events[3:5], events[5:6], events[6:]):
        incremental = fold(incremental, chunk, CFG)
    assert incremental is not None
    assert incremental["landmark"] == T0 + 1450 * H  # 300 H, then 900 H, then 1450 H
    assert_equivalent(incremental, rebuild(list(reversed(events)), CFG))


@settings(max_examples=200, deadline=None)
@given(event_streams(), st.randoms(use_true_random=False))
def test_a_rebuild_from_retired_totals_equals_one_from_every_event(
    stream: tuple[FoldConfig, list[Event], list[list[Event]]], rng: random.Random
) -> None:
    """Retention replaces the events that lie more than EXPIRE_HALF_LIVES before the user's
    newest by their retired totals (in any split, in any order): the rebuild is the same."""
    cfg, events, _ = stream
    for user in {e.user_id for e in events}:
        mine = [e for e in events if e.user_id == user]
        cut = max(e.timestamp for e in mine) - EXPIRE_HALF_LIVES * cfg.half_life_s
        old = [e for e in mine if e.timestamp < cut]
        if not old:
            note("nothing to retire")
            continue
        rng.shuffle(old)
        split = rng.randrange(1, len(old) + 1)
        retired = retire(None, old[:split], cfg)
        if old[split:]:
            retired = retire(retired, old[split:], cfg)
        rest = [e for e in mine if e.timestamp >= cut]
        note("retired")
        assert_equivalent(rebuild(rest, cfg, retired=retired), rebuild(mine, cfg))


def test_retired_totals_keep_counters_and_sessions_but_no_masses() -> None:
    old = [
        ev(T0, "purchase", session="s1", value=20.0, quantity=2),
        ev(T0 + H, "click", session="s2"),
    ]
    new = [ev(T0 + 2 * H, "view", brand="zeta", session="s2")]
    retired = retire(None, old, CFG)
    assert (retired["mass"], retired["affinities"], retired["landmark"]) == (0.0, {}, None)
    assert retired["counters"] == {
        "events": 2,
        "sessions": 2,
        "purchases": 1,
        "lifetime_value": 40.0,
    }
    assert "fold_profile" not in retire(None, old, replace(CFG, source="default"))
    rebuilt = rebuild(new, CFG, retired=retired, now=T0 + 3 * H)
    whole = rebuild(old + new, CFG, now=T0 + 3 * H)
    assert rebuilt["counters"] == whole["counters"]  # s2 spans the cut: counted once
    assert (rebuilt["first_seen"], rebuilt["last_seen"]) == (T0, T0 + 2 * H)
    assert rebuilt["recent_sessions"] == whole["recent_sessions"]
    # within the horizon, the retired events' masses are what a rebuild loses
    assert rebuilt["affinities"] == {"brand": {"zeta": pytest.approx(1.0)}}
    assert set(whole["affinities"]["brand"]) == {"acme", "zeta"}


def test_a_rebuild_of_retired_totals_alone_has_counters_and_no_masses() -> None:
    retired = retire(None, [ev(T0, "purchase", value=5.0)], CFG)
    other = FoldConfig(event_weights=WEIGHTS, half_life_s=2 * H, source="slow")
    rebuilt = rebuild([], other, retired=retired, now=T0 + H)
    assert rebuilt["counters"]["purchases"] == 1 and rebuilt["mass"] == 0.0
    assert (rebuilt["half_life_s"], rebuilt["fold_profile"]) == (2 * H, "slow")
    assert (rebuilt["updated_at"], rebuilt["last_seen"]) == (T0 + H, T0)
    later = fold(rebuilt, [ev(T0 + 2 * H)], other)  # folds on with the new half-life
    assert later["counters"]["events"] == 2 and later["landmark"] == T0 + 2 * H


def test_fold_defaults_are_the_boost_profile_defaults() -> None:
    """One set of defaults: profiles once kept top_k 25 (boost profiles: 50) and their own
    copy of the event weights; a FoldConfig() now folds as a boost profile that sets nothing."""
    from rewriter.boost.profile import BoostProfile
    from rewriter.profiles.fold import fold_config

    assert FoldConfig() == fold_config(BoostProfile(name="default"))
