"""Segment conditions: facts, comparisons, context, user lists, combinations, references."""

from __future__ import annotations

import pytest

from rewriter.boost.profile import bind_secret, parse_boost_profile
from rewriter.boost.segments import DAY_S, Facts, matched_segments
from rewriter.privacy import pseudonymize
from rewriter.profiles.view import UserAffinity
from rewriter.ranking.facts import facts_for

SECRET = b"unit-test-secret-0123456789abcdef"
NOW = 1_800_000_000.0
UNBOUND = parse_boost_profile(
    """
name: shop
segments:
  returning: {when: {sessions: {gte: 3}}}
  high_value: {when: {lifetime_value: {gte: 500}}, alpha: 2}
  new_user:
    when: {any: [{events: {lt: 3}}, {days_since_first_seen: {lt: 7}}]}
  lapsed: {when: {all: [{segment: returning}, {days_since_last_seen: {gte: 60}}]}}
  mobile_dach: {when: {device: mobile, geo: [DE, AT, CH]}}
  vip: {when: {users: [alice, "0042"]}}
  not_returning: {when: {not: {segment: returning}}}
  heavy: {when: {mass: {gt: 10, lte: 100}}}
""",
    source="shop.yaml",
)
PROFILE = bind_secret(UNBOUND, lambda raw: pseudonymize(raw, SECRET))


def _user(**counters: float) -> UserAffinity:
    return UserAffinity("p-user", {}, counters.pop("mass", 0.0), counters=counters)


def _names(facts: Facts, profile: object = PROFILE) -> list[str]:
    return [s.name for s in matched_segments(profile.segments, facts)]  # type: ignore[attr-defined]


def test_counters_and_combinations() -> None:
    user = UserAffinity(
        "p",
        {},
        50.0,
        counters={"sessions": 4, "lifetime_value": 800, "events": 40},
        first_seen=NOW - 100 * DAY_S,
        last_seen=NOW - 90 * DAY_S,
    )
    assert _names(facts_for(user, now=NOW)) == ["returning", "high_value", "lapsed", "heavy"]


def test_unknown_user_is_new_and_nothing_else() -> None:
    assert _names(facts_for(None, now=NOW)) == ["new_user", "not_returning"]


def test_recency_of_a_user_never_seen_matches_no_comparison() -> None:
    user = UserAffinity("p", {}, 0.0, counters={"sessions": 5, "events": 10})
    assert "lapsed" not in _names(facts_for(user, now=NOW))
    recent = UserAffinity("p", {}, 0.0, counters={"events": 10}, first_seen=NOW - 2 * DAY_S)
    assert "new_user" in _names(facts_for(recent, now=NOW))


@pytest.mark.parametrize(
    ("device", "geo", "member"),
    [
        ("mobile", "DE", True),
        ("Mobile", "at", True),
        ("desktop", "DE", False),
        ("mobile", "FR", False),
        (None, "DE", False),
    ],
)
def test_context_is_compared_ignoring_case(device: str | None, geo: str, member: bool) -> None:
    facts = facts_for(None, now=NOW, device=device, geo=geo)
    assert ("mobile_dach" in _names(facts)) is member


def test_user_lists_match_pseudonyms_after_binding() -> None:
    bound = PROFILE
    alice = pseudonymize("alice", SECRET)
    assert "vip" in _names(facts_for(None, now=NOW, pseudonym=alice), bound)
    assert "vip" in _names(facts_for(None, now=NOW, pseudonym=pseudonymize("0042", SECRET)), bound)
    assert "vip" not in _names(facts_for(None, now=NOW, pseudonym="0" * 32), bound)
    assert "alice" not in repr(bound.segments)  # raw ids are gone once bound


def test_unbound_user_list_refuses_to_evaluate() -> None:
    with pytest.raises(RuntimeError, match="bind_user_lists"):
        _names(facts_for(None, now=NOW, pseudonym="x"), UNBOUND)


def test_pseudonyms_listed_directly() -> None:
    alice = pseudonymize("alice", SECRET)
    profile = parse_boost_profile(f"name: s\nsegments:\n  v: {{when: {{pseudonyms: [{alice}]}}}}\n")
    assert _names(facts_for(None, now=NOW, pseudonym=alice), profile) == ["v"]


def test_facts_prefer_the_request_pseudonym_and_copy_profile_facts() -> None:
    user = UserAffinity("stored", {}, 3.0, counters={"events": 2}, first_seen=1.0, last_seen=2.0)
    facts = facts_for(user, now=NOW, pseudonym="request", device="tv")
    assert (facts.user, facts.mass, facts.first_seen, facts.last_seen) == ("request", 3.0, 1, 2)
    assert facts.number("events") == 2 and facts.number("purchases") == 0
    assert facts.number("days_since_first_seen") == pytest.approx((NOW - 1.0) / DAY_S)
