"""The recommend request's parsing and the model bodies (pure)."""

from __future__ import annotations

import pytest

from rewriter.recommend.models import (
    RecommendError,
    catalog_body,
    parse_request,
    recency_scores,
    scored_ids,
    trending_from,
)


def test_defaults_and_url_strings() -> None:
    req = parse_request({"model": "for_you"}, "catalog")
    assert (req.index, req.size, req.exclude_seen, req.item) == ("catalog", 10, True, None)
    got = parse_request(
        {
            "model": "related",
            "item": "7",
            "size": "3",
            "exclude_seen": "false",
            "filter": '{"term": {"brand": "acme"}}',
        },
        "catalog",
    )
    assert (got.size, got.exclude_seen, got.filter) == (3, False, {"term": {"brand": "acme"}})
    assert parse_request({"model": "related", "item": 7}, "c").item == "7"


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({}, "model"),
        ({"model": "best"}, "model"),
        ({"model": "bought_together"}, "item"),
        ({"model": "for_you", "size": 101}, "size"),
        ({"model": "for_you", "size": True}, "size"),
        ({"model": "for_you", "filter": "{"}, "filter"),
        ({"model": "for_you", "filter": {"a": 1, "b": 2}}, "filter"),
        ({"model": "for_you", "exclude_seen": "maybe"}, "exclude_seen"),
        ({"model": "for_you", "index": 3}, "index"),
        ({"model": "for_you", "user": "x"}, "user"),
    ],
)
def test_refusals_name_the_field(raw: dict, field: str) -> None:
    with pytest.raises(RecommendError) as err:
        parse_request(raw, "catalog")
    assert err.value.field == field and field in str(err.value)


def test_scored_ids_scale_to_the_best() -> None:
    query = scored_ids([("a", 4.0), ("b", 1.0)])
    boosts = [c["constant_score"]["boost"] for c in query["bool"]["should"]]
    assert boosts == [1.0, 0.25]
    assert scored_ids([]) == {"ids": {"values": []}}
    assert recency_scores(["new", "old"]) == [("new", 2.0), ("old", 1.0)]


def test_catalog_body_filters_and_excludes_once() -> None:
    body = catalog_body({"match_all": {}}, 5, {"term": {"brand": "x"}}, ["a", "b", "a"])
    assert body["size"] == 5
    assert body["query"]["bool"]["must_not"] == [{"ids": {"values": ["a", "b"]}}]
    assert body["query"]["bool"]["filter"][1] == {"term": {"brand": "x"}}
    assert "must_not" not in catalog_body({"match_all": {}}, 5, None, [])["query"]["bool"]


def test_trending_from_reads_the_sorted_buckets() -> None:
    response = {"aggregations": {"items": {"buckets": [{"key": "x", "rise": {"value": 2.5}}]}}}
    assert trending_from(response) == [("x", 2.5)]
    assert trending_from({}) == []
