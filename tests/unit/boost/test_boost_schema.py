"""segments: and rules: in profiles/*.yaml: parsed values, and every error at file:line:col."""

from __future__ import annotations

from pathlib import Path

import pytest

from rewriter.boost.profile import BoostProfileError, load_boost_profile, parse_boost_profile
from rewriter.boost.rules import Boost, Bury, Hide, Pin, PinItem, QueryCondition, Where
from rewriter.boost.segments import All, AnyOf, Compare, Not, OneOf, SegmentIs, UserIn

PROFILES = Path(__file__).resolve().parents[3] / "profiles"
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "boost"


def _errors(text: str) -> list[str]:
    with pytest.raises(BoostProfileError) as info:
        parse_boost_profile(text, source="shop.yaml")
    return [str(e) for e in info.value.errors]


def test_retail_example_has_the_issue_examples() -> None:
    profile = load_boost_profile(PROFILES / "retail.yaml")
    kinds = {r.id: r.kind for r in profile.rules}
    assert kinds["promote-new-arrivals"] == "boost"
    assert profile.rule("promote-new-arrivals").segments == ("returning",)  # type: ignore[union-attr]
    assert kinds["highlight-acme-for-high-value"] == "boost"
    assert kinds["winter-jacket-pin"] == "pin"
    assert profile.rule("winter-jacket-pin").schedule.start is not None  # type: ignore[union-attr]
    assert kinds["hide-out-of-stock"] == "hide"
    assert {s.name for s in profile.segments} >= {"returning", "high_value", "new_user"}


def test_segment_conditions_parse_into_types() -> None:
    profile = parse_boost_profile(
        "name: s\nsegments:\n"
        "  a: {when: {sessions: {gte: 3, lt: 9}}}\n"
        "  b: {when: {any: [{device: mobile}, {geo: [DE, AT]}]}, alpha: 2}\n"
        "  c: {when: {not: {segment: a}}, description: not a}\n"
        "  d: {when: {users: [x], events: {eq: 0}}}\n"
    )
    a, b, c, d = profile.segments
    assert a.when == Compare("sessions", gte=3.0, lt=9.0)
    assert b.when == AnyOf((OneOf("device", ("mobile",)), OneOf("geo", ("DE", "AT"))))
    assert b.alpha == 2.0
    assert c.when == Not(SegmentIs("a"))
    assert d.when == All((UserIn(raw=("x",)), Compare("events", eq=0.0)))


def test_rules_parse_into_types() -> None:
    profile = parse_boost_profile(
        "name: s\nrules:\n"
        "  - {id: b, query: {terms: [a b], match: exact}, boost: {brand: [x, y], weight: 2}}\n"
        "  - {id: u, bury: {terms: {sku: 0042, n: 3}, factor: 0.25}}\n"
        "  - {id: h, hide: {filter: {term: {in_stock: false}}}}\n"
        "  - {id: p, pin: [{item: 356, position: 2}]}\n"
    )
    b, u, h, p = profile.rules
    assert b.query == QueryCondition(("a b",), "exact")
    assert b.action == Boost(Where(terms=(("brand", ("x", "y")),)), 2.0)
    assert u.action == Bury(Where(terms=(("sku", ("0042",)), ("n", (3,)))), 0.25)
    assert h.action == Hide(Where(dsl={"term": {"in_stock": False}}))
    assert p.action == Pin((PinItem("356", 2),))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("segments:\n  a: {wen: {sessions: {gte: 1}}}\n", "3:7: segments.a: unknown key 'wen'"),
        ("segments:\n  a: {when: {sesions: {gte: 1}}}\n", "did you mean 'sessions'?"),
        ("segments:\n  a: {when: {sessions: 3}}\n", "3:24: segments.a.when.sessions: compare"),
        ("segments:\n  a: {when: {sessions: {gte: 5, lt: 2}}}\n", "can never hold"),
        ("segments:\n  a: {alpha: 1}\n", "missing required key 'when'"),
        ("segments:\n  a: {when: {segment: b}}\n", "3:23: segments.a.when.segment: unknown seg"),
        ("segments:\n  a: {when: {segment: b}}\n  b: {when: {segment: a}}\n", "a -> b -> a"),
        ("segments:\n  a: {when: {pseudonyms: [bob]}}\n", "is not a pseudonym"),
        ("segments:\n  a b: {when: {device: x}}\n", "segment name 'a b'"),
        (
            "rules:\n  - {boost: {brand: x, weight: 1}}\n",
            "3:5: rules[0]: missing required key 'id'",
        ),
        ("rules:\n  - {id: a}\n", "a rule needs one action"),
        ("rules:\n  - {id: a, hide: {brand: x}, pin: [{item: 1, position: 1}]}\n", "one action"),
        ("rules:\n  - {id: a, boost: {brand: x}}\n", "missing required key 'weight'"),
        ("rules:\n  - {id: a, boost: {weight: 2}}\n", "boost needs a filter"),
        ("rules:\n  - {id: a, boost: {brand: x, weight: -1}}\n", "must be in (0, 1000]"),
        ("rules:\n  - {id: a, bury: {brand: x, factor: 1.5}}\n", "factor: must be in (0, 1]"),
        ("rules:\n  - {id: a, boost: {created_within: 30 days, weight: 1}}\n", "duration like 30d"),
        ("rules:\n  - {id: a, hide: {filter: {match: {title: x}}}}\n", "not supported"),
        ("rules:\n  - {id: a, hide: {brand: x}, segment: nope}\n", "unknown segment 'nope'"),
        ("rules:\n  - {id: a, hide: {brand: x}, schedule: {start: someday}}\n", "a date like"),
        ("rules:\n  - {id: a, pin: [{item: x, position: 0}]}\n", "between 1 and 1000"),
        (
            "rules:\n  - {id: a, pin: [{item: x, position: 1}, {item: x, position: 2}]}\n",
            "this item is already pinned",
        ),
        (
            "rules:\n  - {id: a, hide: {brand: x}}\n  - {id: a, hide: {brand: y}}\n",
            "4:5: rules[1]: duplicate rule id 'a'",
        ),
        ("rules:\n  - {id: 'a b', hide: {brand: x}}\n", "rule id 'a b'"),
        ("rules: {id: a}\n", "rules must be a list"),
    ],
)
def test_errors_name_the_place_and_the_fix(text: str, expected: str) -> None:
    messages = _errors("name: shop\n" + text)
    assert any(expected in m for m in messages), messages
    assert all(m.startswith("shop.yaml:") for m in messages)


def test_overlapping_pins_across_rules_with_the_same_conditions() -> None:
    text = (
        "name: shop\nrules:\n"
        "  - {id: a, pin: [{item: x, position: 1}]}\n"
        "  - {id: b, pin: [{item: y, position: 1}]}\n"
        "  - {id: c, query: [coat], pin: [{item: z, position: 1}]}\n"
    )
    [message] = _errors(text)
    assert message.startswith("shop.yaml:4:19: rules: overlapping pins: position 1")
    assert "rule 'b' and by rule 'a' (line 3)" in message


def test_disjoint_schedules_may_pin_the_same_position() -> None:
    parse_boost_profile(
        "name: shop\nrules:\n"
        "  - {id: a, schedule: {end: 2026-12-01}, pin: [{item: x, position: 1}]}\n"
        "  - {id: b, schedule: {start: 2026-12-01}, pin: [{item: y, position: 1}]}\n"
    )


def test_five_mistakes_give_five_messages_with_lines() -> None:
    with pytest.raises(BoostProfileError) as info:
        load_boost_profile(FIXTURES / "five_mistakes.yaml")
    got = [(e.line, e.column, e.message.split(":")[0]) for e in info.value.errors]
    assert got == [
        (3, 8, "alpha"),
        (4, 1, "unknown key 'windw' in boost profile; did you mean 'window'? (valid keys"),
        (12, 14, "rules[0].segment"),
        (16, 40, "rules[1].schedule.end"),
        (19, 9, "rules[1].pin[1]"),
    ]


def test_every_problem_of_a_file_is_reported_once() -> None:
    messages = _errors("alpha: -1\nwindow: 0\ncold_start: {strategy: off, modifier: x}\n")
    assert len(messages) == 5, messages  # alpha, window, strategy, modifier, missing name
    assert messages[0].startswith("shop.yaml:1:1: missing required key 'name'")
