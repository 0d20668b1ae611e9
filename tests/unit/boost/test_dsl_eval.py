"""The filter subset the reference scorer evaluates, and what check refuses."""

from __future__ import annotations

import pytest

from rewriter.boost.dsl_eval import fields, iso_millis, matches, problems

DOC = {
    "brand": "acme",
    "category": ["shoes", "sport"],
    "in_stock": False,
    "price": 49.5,
    "created_at": "2026-11-20T10:00:00Z",
    "meta": {"color": "red"},
}
NOW = iso_millis("2026-11-27T00:00:00Z") / 1000  # type: ignore[operator]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"term": {"brand": "acme"}}, True),
        ({"term": {"brand": {"value": "ACME"}}}, False),
        ({"terms": {"category": ["sport", "x"]}}, True),
        ({"terms": {"in_stock": [False]}}, True),
        ({"term": {"in_stock": "false"}}, True),
        ({"term": {"price": "49.5"}}, True),
        ({"range": {"price": {"gte": 10, "lt": 49.5}}}, False),
        ({"range": {"created_at": {"gte": "now-7d"}}}, True),
        ({"range": {"created_at": {"gte": "now-6d"}}}, False),
        ({"range": {"created_at": {"lte": "2026-11-20"}}}, True),  # rounded up to day's end
        ({"range": {"created_at": {"lt": "2026-11-20"}}}, False),
        ({"range": {"created_at": {"gte": 1_795_000_000_000, "format": "epoch_millis"}}}, True),
        ({"exists": {"field": "meta.color"}}, True),
        ({"exists": {"field": "missing"}}, False),
        ({"ids": {"values": ["7"]}}, True),
        ({"prefix": {"brand": "ac"}}, True),
        ({"bool": {"should": [{"term": {"brand": "x"}}, {"term": {"brand": "acme"}}]}}, True),
        ({"bool": {"filter": [{"term": {"brand": "acme"}}], "should": [{"term": {"x": 1}}]}}, True),
        ({"bool": {"must_not": [{"term": {"category": "shoes"}}]}}, False),
        ({"bool": {"should": [{"term": {"brand": "acme"}}], "minimum_should_match": 2}}, False),
        ({"match_none": {}}, False),
    ],
)
def test_matches(query: dict[str, object], expected: bool) -> None:
    assert matches(query, DOC, "7", NOW) is expected


def test_problems_name_what_is_not_supported() -> None:
    assert problems({"term": {"brand": "x"}}) == []
    assert "not supported" in problems({"match": {"title": "x"}})[0]
    assert "now-30d" in problems({"range": {"created_at": {"gte": "now-1M"}}})[0]
    assert "terms needs a list" in problems({"terms": {"brand": "x"}})[0]
    assert "filter.bool.must[0]" in problems({"bool": {"must": [{"wildcard": {}}]}})[0]
    assert problems({"a": {}, "b": {}})  # one query per filter


def test_fields() -> None:
    query = {
        "bool": {
            "filter": [{"term": {"brand": "x"}}, {"range": {"price": {"lt": 1}}}],
            "must_not": {"exists": {"field": "meta.color"}},
        }
    }
    assert sorted(fields(query)) == ["brand", "meta.color", "price"]
