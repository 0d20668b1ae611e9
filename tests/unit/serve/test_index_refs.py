"""Indices named inside a search body (terms lookups, more_like_this items, ...)."""

from __future__ import annotations

import pytest

from rewriter.serve.index_refs import clears_every_scroll, reads_private, referenced_indices

PRIVATE = ("shop-affinity-profiles", "shop-affinity-events")


def test_terms_lookup_and_more_like_this_items_are_found() -> None:
    body = {
        "query": {
            "bool": {
                "should": [
                    {
                        "terms": {
                            "brand": {"index": "shop-affinity-profiles", "id": "u1", "path": "x"}
                        }
                    },
                    {"more_like_this": {"like": [{"_index": "catalog", "_id": "7"}, "text"]}},
                ]
            }
        }
    }
    assert sorted(referenced_indices(body)) == ["catalog", "shop-affinity-profiles"]
    assert referenced_indices({"query": {"match": {"title": "index"}}}) == []
    assert referenced_indices({"size": 3, "index": 4}) == []  # not a name


@pytest.mark.parametrize(
    ("expression", "private"),
    [
        ("shop-affinity-profiles", True),
        ("shop-affinity-events-v2", True),  # the versioned index behind the alias
        ("shop-affinity-*", True),
        ("*profiles", True),
        ("_all", True),
        ("catalog,shop-affinity-events", True),
        ("catalog", False),
        ("shop-catalog-*", False),
        ("Hello World", False),  # a field called `index` holding text
    ],
)
def test_an_expression_that_can_reach_a_private_index(expression: str, private: bool) -> None:
    assert reads_private(expression, PRIVATE) is private


def test_clearing_every_scroll_is_recognized() -> None:
    assert clears_every_scroll({"scroll_id": "_all"}, {})
    assert clears_every_scroll({"scroll_id": ["abc", "_all"]}, {})
    assert clears_every_scroll(None, {"scroll_id": "_all"})
    assert not clears_every_scroll({"scroll_id": "DXF1ZXJ5QW5k"}, {})
    assert not clears_every_scroll(None, {})
    body = {"scroll_id": ["abc"]}
    clears_every_scroll(body, {})
    assert body == {"scroll_id": ["abc"]}  # the body sent on is not touched
