"""Which rules apply to a request: segments, query text, schedules, pin conflicts, filters."""

from __future__ import annotations

import pytest

from rewriter.boost.profile import parse_boost_profile
from rewriter.boost.rules import QueryCondition, Schedule, Where
from rewriter.ranking.facts import facts_for
from rewriter.ranking.resolve import query_text, resolve

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z
PROFILE = parse_boost_profile(
    """
name: shop
segments:
  returning: {when: {sessions: {gte: 3}}, alpha: 2.5}
  mobile: {when: {device: mobile}, alpha: 9}
rules:
  - id: new-for-returning
    segment: returning
    boost: {created_within: 30d, weight: 1.5}
  - id: jackets-pin
    query: [jacket, winter coat]
    schedule: {start: 2027-01-01, end: 2027-02-01}
    pin: [{item: a, position: 1}, {item: b, position: 3}]
  - id: later-pin
    segments: [returning, mobile]
    pin: [{item: c, position: 1}, {item: a, position: 2}, {item: d, position: 4}]
  - id: expired
    schedule: {end: 2026-01-01}
    hide: {brand: gone}
  - id: disabled
    enabled: false
    hide: {brand: acme}
  - id: bury-refurb
    bury: {category: refurbished, factor: 0.5}
  - id: out-of-stock
    hide: {terms: {in_stock: false}}
""",
)


def _resolve(text: str = "", sessions: int = 0, device: str | None = None):  # type: ignore[no-untyped-def]
    from rewriter.profiles.view import UserAffinity

    user = UserAffinity("p", {}, 1.0, counters={"sessions": sessions})
    return resolve(PROFILE, facts_for(user, now=NOW, device=device), text)


def test_rules_without_conditions_always_fire() -> None:
    plan = _resolve()
    assert plan.fired == ("bury-refurb", "out-of-stock")
    assert plan.buries[0].filter == {"terms": {"category": ["refurbished"]}}
    assert plan.buries[0].value == 0.5
    assert plan.hides[0].filter == {"terms": {"in_stock": [False]}}
    assert (plan.segments, plan.alpha, plan.alpha_segment) == ((), None, None)


def test_segment_rules_and_the_first_segment_alpha() -> None:
    plan = _resolve(sessions=5, device="mobile")
    assert plan.segments == ("returning", "mobile")
    assert (plan.alpha, plan.alpha_segment) == (2.5, "returning")
    since = int((NOW - 30 * 86400) * 1000)
    assert plan.boosts[0].filter == {
        "range": {"created_at": {"gte": since, "format": "epoch_millis"}}
    }
    assert "new-for-returning" in plan.fired and "later-pin" in plan.fired


def test_pins_first_rule_wins_a_position_and_an_item_is_pinned_once() -> None:
    plan = _resolve("warm winter coat", sessions=5)
    assert [(p.item, p.position, p.rule) for p in plan.pins] == [
        ("a", 1, "jackets-pin"),
        ("b", 3, "jackets-pin"),
        ("d", 4, "later-pin"),
    ]


def test_query_condition_contains_and_exact() -> None:
    contains = QueryCondition(("winter coat",))
    assert contains.holds("Warm WINTER coat!") and not contains.holds("coat winter")
    exact = QueryCondition(("jacket",), "exact")
    assert exact.holds(" Jacket ") and not exact.holds("red jacket")
    assert not QueryCondition(("x",)).holds("")


def test_schedule_is_start_inclusive_end_exclusive() -> None:
    s = Schedule(start=10.0, end=20.0)
    assert [s.active(t) for t in (9.9, 10.0, 19.9, 20.0)] == [False, True, True, False]
    assert Schedule().active(0.0)


def test_where_renders_every_part_and_combines_with_bool_filter() -> None:
    where = Where(
        terms=(("brand", ("acme",)),),
        created_within_s=86400.0,
        dsl={"range": {"price": {"lte": 50}}},
    )
    assert where.render(86400.0 * 2) == {
        "bool": {
            "filter": [
                {"terms": {"brand": ["acme"]}},
                {"range": {"created_at": {"gte": 86_400_000, "format": "epoch_millis"}}},
                {"range": {"price": {"lte": 50}}},
            ]
        }
    }


@pytest.mark.parametrize(
    ("query", "text"),
    [
        ({"match": {"title": "red shoe"}}, "red shoe"),
        ({"match": {"title": {"query": "red", "operator": "and"}}}, "red"),
        ({"multi_match": {"query": "winter coat", "fields": ["title"]}}, "winter coat"),
        (
            {
                "bool": {
                    "must": [{"match_phrase": {"t": "a b"}}],
                    "should": [{"query_string": {"query": "c"}}],
                }
            },
            "a b c",
        ),
        ({"term": {"brand": "acme"}}, ""),
        (None, ""),
    ],
)
def test_query_text_collects_full_text_queries(query: object, text: str) -> None:
    assert query_text(query) == text
