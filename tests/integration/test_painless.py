"""The stored `affinity` script, run by the engine, returns the scores computed by hand."""

from __future__ import annotations

import pytest
from opensearchpy import OpenSearch

from rewriter import config


@pytest.fixture(scope="module")
def tiny_catalog(opensearch: OpenSearch, bootstrapped: config.Settings) -> str:
    index = f"{bootstrapped.indices.prefix}painless-items"
    opensearch.indices.create(
        index=index,
        body={
            "settings": {"number_of_shards": 1, "number_of_replicas": 0},
            "mappings": {
                "properties": {"brand": {"type": "keyword"}, "category": {"type": "keyword"}}
            },
        },
    )
    docs = {
        "a": {"brand": "acme", "category": ["shoes", "running"]},
        "b": {"brand": "zenit", "category": ["shoes"]},
        "c": {"brand": "other", "category": ["hats"]},
        "d": {"category": ["running"]},  # no brand at all
    }
    for doc_id, doc in docs.items():
        opensearch.index(index=index, id=doc_id, body=doc)
    opensearch.indices.refresh(index=index)
    return index


def test_stored_script_scores_match_hand_computation(
    opensearch: OpenSearch, tiny_catalog: str
) -> None:
    params = {
        "attributes": {
            "brand": {"weight": 2.0, "values": {"acme": 1.0, "zenit": 0.25}},
            "category": {"weight": 0.5, "values": {"shoes": 0.4, "running": 1.0}},
        }
    }
    body = {
        "size": 10,
        "query": {
            "script_score": {
                "query": {"match_all": {}},
                "script": {"id": "affinity", "params": params},
            }
        },
    }
    hits = opensearch.search(index=tiny_catalog, body=body)["hits"]["hits"]
    scores = {h["_id"]: h["_score"] for h in hits}
    # By hand: W_brand * max aff(brand) + W_category * max aff(category)
    expected = {
        "a": 2.0 * 1.0 + 0.5 * max(0.4, 1.0),  # 2.5
        "b": 2.0 * 0.25 + 0.5 * 0.4,  # 0.7
        "c": 0.0,  # knows neither value
        "d": 0.5 * 1.0,  # no brand field: brand term is 0
    }
    assert scores == pytest.approx(expected, rel=1e-6)
    assert [h["_id"] for h in hits] == ["a", "b", "d", "c"]
