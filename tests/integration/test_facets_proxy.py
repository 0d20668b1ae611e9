"""Facets through the proxy on the real engine (issue 11, items 5-8): favored buckets first
and fetched in the same request, selected values in place, X-Personalization: off exactly
as OpenSearch answers, explain, facet rules of a boost profile, broken aggregation bodies."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opensearchpy import OpenSearch, helpers

from rewriter import config, privacy
from rewriter.measure.serve_thread import serve_in_thread
from rewriter.profiles.fold import FoldConfig, empty_profile
from rewriter.ranking.facets import FAVORED_AGG_PREFIX
from rewriter.serve.app import create_app

pytestmark = pytest.mark.engine

# brand counts: acme 6, nike 5, puma 4, zenit 1; categories: shoes 10, hats 4, socks 2
BRANDS = ["acme"] * 6 + ["nike"] * 5 + ["puma"] * 4 + ["zenit"]
CATEGORIES = ["shoes"] * 10 + ["hats"] * 4 + ["socks"] * 2
PROFILE = """
name: shop
attributes: {brand: 1.0, category: 0.5}
segments:
  staff: {when: {users: [staff-1]}}
facets:
  rules:
    - {id: staff-no-brands, segment: staff, group: brand, hide: all}
    - {id: no-puma, group: brand, hide: [puma]}
"""


@pytest.fixture(scope="module")
def catalog(opensearch: OpenSearch, bootstrapped: config.Settings) -> Iterator[str]:
    index = f"{bootstrapped.indices.prefix}facet-shop"
    mappings = {
        "properties": {
            "title": {"type": "text"},
            "brand": {"type": "keyword"},
            "category": {"type": "keyword"},
        }
    }
    settings = {"number_of_shards": 1, "number_of_replicas": 0}
    opensearch.indices.create(index=index, body={"settings": settings, "mappings": mappings})
    docs = [
        {"title": f"running item {i}", "brand": brand, "category": category}
        for i, (brand, category) in enumerate(zip(BRANDS, CATEGORIES, strict=True))
    ]
    actions = [{"_index": index, "_id": str(i), "_source": d} for i, d in enumerate(docs)]
    helpers.bulk(opensearch, actions, refresh="wait_for")
    for raw in ("zenit-fan", "staff-1"):
        _store_user(opensearch, bootstrapped, raw, {"zenit": 10.0, "puma": 5.0}, {"socks": 3.0})
    _store_user(opensearch, bootstrapped, "opted-out", {"zenit": 10.0}, {}, opt_out=True)
    yield index
    opensearch.indices.delete(index=index, ignore_unavailable=True)


def _store_user(
    es: OpenSearch,
    s: config.Settings,
    raw: str,
    brands: dict[str, float],
    categories: dict[str, float],
    opt_out: bool = False,
) -> None:
    pseudonym = privacy.pseudonymize(raw, config.user_secret(s))
    doc = dict(empty_profile(pseudonym, FoldConfig()))
    now = time.time()
    doc.update(
        landmark=now,
        mass=20.0,
        first_seen=now - 86400,
        last_seen=now,
        affinities={"brand": brands, "category": categories},
        counters={"events": 20, "sessions": 3, "purchases": 0, "lifetime_value": 0.0},
        opt_out=opt_out,
    )
    es.index(index=s.indices.profiles, id=pseudonym, body=doc, refresh=True)


@pytest.fixture(scope="module")
def proxy_url(
    bootstrapped: config.Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    directory = tmp_path_factory.mktemp("facet-profiles")
    (directory / "default.yaml").write_text("name: default\n")
    (directory / "shop.yaml").write_text(PROFILE)
    with serve_in_thread(create_app(bootstrapped, boost_dir=str(directory))) as url:
        yield url


BODY: dict[str, Any] = {
    "query": {"match": {"title": "running"}},
    "size": 3,
    "aggs": {
        "brands": {"terms": {"field": "brand", "size": 2}},
        "categories": {"terms": {"field": "category", "size": 2}},
    },
}


def _search(url: str, index: str, body: dict[str, Any], **headers: str) -> httpx.Response:
    return httpx.post(f"{url}/{index}/_search", json=body, headers=headers, timeout=30)


def _keys(agg: dict[str, Any]) -> list[str]:
    return [b["key"] for b in agg["buckets"]]


def test_favored_values_come_first_and_are_fetched_in_the_same_request(
    proxy_url: str, catalog: str
) -> None:
    r = _search(proxy_url, catalog, BODY, **{"X-User-Id": "zenit-fan"})
    assert r.status_code == 200, r.text
    aggs = r.json()["aggregations"]
    assert not [k for k in aggs if k.startswith(FAVORED_AGG_PREFIX)]
    # zenit (1 item) is far outside size 2; it comes first with its true count; puma is
    # favored too (affinity 0.5) and displaces nike; the app's size grows to fit both
    assert [(b["key"], b["doc_count"], b.get("favored")) for b in aggs["brands"]["buckets"]] == [
        ("zenit", 1, True),
        ("puma", 4, True),
    ]
    assert aggs["brands"]["buckets"][0]["affinity"] == pytest.approx(1.0)
    assert _keys(aggs["categories"]) == ["socks", "shoes"]
    facets = r.json()["personalization"]["facets"]
    assert facets["applied"] is True
    assert facets["groups"]["brands"]["fetched"] == ["zenit", "puma"]
    # default profile: brand and category weigh 1.0, both best affinities are 1.0: a tie
    assert facets["order"] == ["brands", "categories"]


def test_sum_other_doc_count_still_adds_up(
    proxy_url: str, catalog: str, opensearch: OpenSearch
) -> None:
    r = _search(proxy_url, catalog, BODY, **{"X-User-Id": "zenit-fan"})
    brands = r.json()["aggregations"]["brands"]
    shown = sum(b["doc_count"] for b in brands["buckets"])
    assert shown + brands["sum_other_doc_count"] == len(BRANDS)


def test_personalization_off_returns_the_aggregations_exactly(
    proxy_url: str, catalog: str, opensearch: OpenSearch
) -> None:
    r = _search(proxy_url, catalog, BODY, **{"X-User-Id": "zenit-fan", "X-Personalization": "off"})
    direct = opensearch.search(index=catalog, body=BODY)
    assert r.json()["aggregations"] == direct["aggregations"]
    assert "facets" not in r.json()["personalization"]


def test_no_user_gets_opensearch_order(
    proxy_url: str, catalog: str, opensearch: OpenSearch
) -> None:
    r = _search(proxy_url, catalog, BODY)
    direct = opensearch.search(index=catalog, body=BODY)
    assert r.json()["aggregations"] == direct["aggregations"]
    assert r.json()["personalization"]["facets"]["reason"] == "no_profile"


def test_opted_out_user_gets_opensearch_order(
    proxy_url: str, catalog: str, opensearch: OpenSearch
) -> None:
    r = _search(proxy_url, catalog, BODY, **{"X-User-Id": "opted-out"})
    assert r.json()["aggregations"] == opensearch.search(index=catalog, body=BODY)["aggregations"]
    assert r.json()["personalization"]["facets"]["reason"] == "opt_out"


def test_a_selected_value_keeps_its_place(proxy_url: str, catalog: str) -> None:
    body = {**BODY, "post_filter": {"term": {"brand": "nike"}}}
    r = _search(proxy_url, catalog, body, **{"X-User-Id": "zenit-fan"})
    # OpenSearch's order is acme, nike: nike (selected) stays second, zenit and puma around it
    assert _keys(r.json()["aggregations"]["brands"]) == ["zenit", "nike", "puma"]
    assert r.json()["personalization"]["facets"]["groups"]["brands"]["selected"] == ["nike"]


def test_explain_says_why_each_value_moved(proxy_url: str, catalog: str) -> None:
    r = httpx.post(
        f"{proxy_url}/{catalog}/_search?explain=true",
        json=BODY,
        headers={"X-User-Id": "zenit-fan"},
    )
    why = {w["value"]: w for w in r.json()["personalization"]["facets"]["groups"]["brands"]["why"]}
    assert why["zenit"]["from"] is None and why["zenit"]["to"] == 0
    assert "fetched from beyond the app's bucket size" in why["zenit"]["why"]
    assert why["acme"]["to"] is None and why["acme"]["why"].startswith("displaced")
    assert [g["group"] for g in r.json()["personalization"]["facets"]["order_why"]] == [
        "brands",
        "categories",
    ]


def test_facet_rules_hide_a_value_and_a_group_for_a_segment(proxy_url: str, catalog: str) -> None:
    fan = _search(proxy_url, catalog, BODY, **{"X-User-Id": "zenit-fan", "X-Boost-Profile": "shop"})
    assert _keys(fan.json()["aggregations"]["brands"]) == ["zenit", "acme"]  # puma hidden
    assert fan.json()["personalization"]["facets"]["rules_fired"] == ["no-puma"]
    staff = _search(proxy_url, catalog, BODY, **{"X-User-Id": "staff-1", "X-Boost-Profile": "shop"})
    aggs = staff.json()["aggregations"]
    assert "brands" not in aggs and _keys(aggs["categories"]) == ["socks", "shoes"]
    assert staff.json()["personalization"]["facets"]["groups"]["brands"]["hidden"] is True


@pytest.mark.parametrize(
    "aggs",
    [
        "not an object",
        {"brands": {"terms": {"field": 5}}},
        {"brands": {"terms": "brand"}},
        {"brands": {"terms": {"field": "brand", "size": -1}}},
        {"brands": {"terms": {"field": "brand", "unknown_option": 1}}},
        {"ブランド": {"terms": {"field": "brand"}}},
    ],
)
def test_broken_aggregation_bodies_are_a_400_or_a_200_never_a_5xx(
    proxy_url: str, catalog: str, aggs: Any
) -> None:
    body = {"query": {"match_all": {}}, "aggs": aggs}
    r = _search(proxy_url, catalog, body, **{"X-User-Id": "zenit-fan"})
    assert r.status_code in (200, 400), r.text
    if r.status_code == 400:
        assert "error" in r.json()
