"""The pair tables' math: sessions, counts, merge, LLR and neighbours."""

from __future__ import annotations

import math

import pytest

from rewriter.cooccurrence.pairs import (
    PairCounts,
    SessionRow,
    count,
    llr,
    neighbors,
    pair_score,
    prune,
    sessions,
)


def test_sessions_cut_by_user_session_id_and_gap() -> None:
    rows = [
        SessionRow("u1", None, 0, "a"),
        SessionRow("u1", None, 60, "b"),
        SessionRow("u1", None, 60 + 3600, "c"),  # an hour later: a new session
        SessionRow("u2", None, 61 + 3600, "d"),  # another user
        SessionRow("u3", "s1", 0, "e"),
        SessionRow("u3", "s1", 99999, "f"),  # same session id: same session despite the gap
        SessionRow("u3", "s2", 100000, "g"),
    ]
    assert list(sessions(rows)) == [["a", "b"], ["c"], ["d"], ["e", "f"], ["g"]]


def test_counts_once_per_session_and_within_the_window() -> None:
    counts = count([["a", "b", "a", "c"], ["a", "b"]], window=1)
    assert counts.sessions == 2
    assert dict(counts.item_sessions) == {"a": 2, "b": 2, "c": 1}
    assert counts.co["a"] == {"b": 2}  # a-c are 2 apart in the first session: outside window 1
    assert counts.co["b"] == {"a": 2, "c": 1}
    every = count([["a", "b", "c"]], window=None)
    assert every.co["a"] == {"b": 1, "c": 1}


def test_merge_equals_counting_everything_at_once() -> None:
    first, second = [["a", "b"], ["b", "c", "a"]], [["a", "c"], ["d"]]
    merged = count(first)
    merged.merge(count(second))
    whole = count(first + second)
    assert merged.sessions == whole.sessions
    assert dict(merged.item_sessions) == dict(whole.item_sessions)
    assert {k: dict(v) for k, v in merged.co.items()} == {k: dict(v) for k, v in whole.co.items()}


def test_llr_matches_a_hand_computed_table() -> None:
    # G² = 2 Σ k ln(k / E) for [[10, 0], [0, 10]]: every expected cell is 5.
    assert llr(10, 0, 0, 10) == pytest.approx(2 * 20 * math.log(2))
    assert llr(5, 5, 5, 5) == pytest.approx(0.0, abs=1e-9)  # independence


def test_best_seller_does_not_top_the_list() -> None:
    """A best-seller meets x often by sheer volume; a niche item meets x nearly every time
    it appears. Significance ranks the niche item first; raw counts would not."""
    counts = PairCounts()
    for _ in range(40):
        counts.add_session(["best"])
    for _ in range(20):
        counts.add_session(["x", "best"])
    for _ in range(6):
        counts.add_session(["x", "niche"])
    for _ in range(30):
        counts.add_session(["other"])
    assert counts.co["x"]["best"] > counts.co["x"]["niche"]
    assert pair_score(counts, "x", "best") > 0
    got = neighbors(counts, "x")
    assert [n.id for n in got] == ["niche", "best"]
    assert got[0].co_sessions == 6


def test_negatively_associated_and_rare_pairs_are_left_out() -> None:
    counts = PairCounts()
    for _ in range(50):
        counts.add_session(["a", "c"])
    counts.add_session(["a", "b"])
    counts.add_session(["a", "b"])
    for _ in range(50):
        counts.add_session(["b", "d"])
    assert pair_score(counts, "a", "b") == 0.0  # rarer together than chance
    assert neighbors(counts, "c", min_count=51) == []
    assert [n.id for n in neighbors(counts, "c")] == ["a"]
    assert neighbors(counts, "unknown") == []


def test_prune_keeps_the_largest_counts() -> None:
    counts = count([["a", "b"], ["a", "b"], ["a", "c"], ["a", "d"]], window=None)
    prune(counts, 2)
    assert counts.co["a"] == {"b": 2, "c": 1}
