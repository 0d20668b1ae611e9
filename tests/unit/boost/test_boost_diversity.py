"""Diversity caps: parsing, and the greedy re-rank."""

from __future__ import annotations

import pytest

from rewriter.boost.diversity import Diversity, diversify
from rewriter.boost.profile import parse_boost_profile
from rewriter.boost.yaml_fields import BoostProfileError

BRAND = {"a1": "acme", "a2": "acme", "a3": "acme", "z1": "zenit", "z2": "zenit", "o1": "other"}


def _brand(item: str, field: str) -> list[str]:
    return [BRAND[item]] if field == "brand" else []


def test_caps_move_items_below_the_top_and_drop_none() -> None:
    order = ["a1", "a2", "a3", "z1", "z2", "o1"]
    got = diversify(order, _brand, Diversity({"brand": 1}, top=3))
    assert got == ["a1", "z1", "o1", "a2", "a3", "z2"]
    assert diversify(order, _brand, Diversity({"brand": 2}, top=4)) == [
        "a1", "a2", "z1", "z2", "a3", "o1"
    ]  # fmt: skip
    assert diversify(order, _brand, Diversity()) == order


def test_too_few_values_fill_from_the_waiting_items() -> None:
    assert diversify(["a1", "a2", "a3"], _brand, Diversity({"brand": 1}, top=3)) == [
        "a1", "a2", "a3"
    ]  # fmt: skip


def test_parse_and_errors_at_the_line() -> None:
    ok = parse_boost_profile("name: d\ndiversity:\n  max_per: {brand: 2}\n  top: 5\n")
    assert ok.diversity == Diversity({"brand": 2}, 5)
    with pytest.raises(BoostProfileError) as err:
        parse_boost_profile("name: d\ndiversity:\n  max_per: {brand: 0}\n", "d.yaml")
    assert str(err.value).startswith("d.yaml:3:")
    with pytest.raises(BoostProfileError) as err:
        parse_boost_profile("name: d\ndiversity:\n  tpo: 3\n", "d.yaml")
    assert "top" in str(err.value)
