"""The exposure audit's arithmetic: Gini and shares per alpha."""

from __future__ import annotations

from collections import Counter

import pytest

from rewriter.measure.exposure_audit import exposures, gini


def test_gini_of_equal_and_concentrated_shares() -> None:
    assert gini([1, 1, 1, 1]) == pytest.approx(0.0)
    assert gini([0, 0, 0, 4]) == pytest.approx(0.75)  # (n - 1) / n for one taking all
    assert gini([]) == 0.0 and gini([0, 0]) == 0.0


def test_values_missing_at_one_alpha_count_as_zero_there() -> None:
    counts = {
        0.0: {"brand": Counter({"a": 5, "b": 5})},
        2.0: {"brand": Counter({"a": 10})},
    }
    generic, personal = exposures(counts)
    assert (generic.alpha, generic.gini, generic.distinct) == (0.0, pytest.approx(0.0), 2)
    assert (personal.alpha, personal.gini, personal.distinct) == (2.0, pytest.approx(0.5), 1)
    assert personal.top == (("a", 1.0),)
