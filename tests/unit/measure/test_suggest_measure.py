"""The autocomplete bench's keystrokes and the quality run's split and metrics."""

from __future__ import annotations

import pytest

from rewriter.events.catalog import CatalogRecord
from rewriter.events.event import Event
from rewriter.measure.suggest_bench import keystrokes
from rewriter.measure.suggest_quality import Case, Row, _mrr, _rank, _split, report


def test_keystrokes_type_each_text_one_to_six_characters() -> None:
    out = keystrokes(["heat", "the matrix"], n=100, seed=1)
    want = ["h", "he", "hea", "heat", "t", "th", "the", "the ", "the m", "the ma"]
    assert sorted(out) == sorted(want)  # a space is a keystroke too
    assert len(keystrokes(["abcdefgh"] * 5, n=7)) == 7


def _event(user: str, item: str, t: float, kind: str = "rating_high") -> Event:
    return Event(event_id=f"{user}-{item}-{t}", user_id=user, type=kind, item_id=item, timestamp=t)


def test_the_last_liked_film_is_held_out_and_nothing_after_it_is_trained_on() -> None:
    movies = {i: CatalogRecord(id=i, title=f"film {i}") for i in "abcd"}
    history = [
        _event("1", "a", 1),
        _event("1", "b", 2),
        _event("1", "c", 3, "rating_low"),
        _event("1", "d", 4),
        _event("2", "a", 1),  # one liked film only: nothing to train on, no case
    ]
    by_user: dict[str, list[Event]] = {}
    for e in history:
        by_user.setdefault(e.user_id, []).append(e)
    cases, train = _split(by_user, movies)
    assert cases == [Case("1", "d", "film d")]
    assert [e.item_id for e in train["1"]] == ["a", "b", "c"]
    assert [e.item_id for e in train["2"]] == ["a"]


def test_rank_ignores_recent_searches_and_case() -> None:
    case = Case("1", "d", "Heat (1995)")
    found = [
        {"text": "heat (1995)", "kind": "recent"},
        {"text": "Heathers (1989)", "kind": "title"},
        {"text": "HEAT (1995)", "kind": "title"},
    ]
    assert _rank(found, case) == 2
    assert _rank(found[:2], case) is None
    assert _mrr([1, 2, None, 4]) == pytest.approx((1 + 0.5 + 0 + 0.25) / 4)


def test_report_has_a_line_per_prefix_length_and_mode_and_the_means() -> None:
    rows = [Row(1, "generic", 0.1, 0.2, 10), Row(1, "personalized", 0.3, 0.4, 10)]
    text = report(rows)
    assert "    1 generic        0.1000  0.2000     10" in text
    assert "  all personalized   0.3000  0.4000     10" in text
