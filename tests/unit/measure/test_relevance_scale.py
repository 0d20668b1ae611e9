"""The relevance shapes `affinity evaluate --tune` compares (measure/relevance_scale.py)."""

from __future__ import annotations

import pytest

from rewriter.measure.relevance_scale import rerank
from rewriter.ranking.reference import ScoredHit


def hit(id_: str, relevance: float, term: float, rescored: bool = True) -> ScoredHit:
    added = 0.5 * term if rescored else 0.0
    return ScoredHit(id_, "affinity", relevance, term, 0.5, added, relevance + added, rescored)


# a strong query: relevance on a scale of 10; b has affinity, a does not
HITS = [hit("a", 10.0, 0.0), hit("b", 9.0, 1.0), hit("c", 8.0, 0.0, rescored=False)]


def test_additive_is_the_engine_order() -> None:
    assert rerank(HITS, "additive") == ["a", "b", "c"]


def test_normalized_scales_the_term_by_the_best_relevance() -> None:
    # 9 + 0.5 · 1 · 10 = 14 > 10
    assert rerank(HITS, "normalized") == ["b", "a", "c"]


def test_multiplicative_is_a_relative_lift() -> None:
    # 9 · (1 + 0.5) = 13.5 > 10; c is past the window: no lift
    assert rerank([*HITS, hit("d", 1.0, 1.0, rescored=False)], "multiplicative") == [
        "b",
        "a",
        "c",
        "d",
    ]


def test_an_unknown_shape_is_named() -> None:
    with pytest.raises(ValueError, match="unknown relevance shape 'square'"):
        rerank(HITS, "square")
