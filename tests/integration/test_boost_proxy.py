"""Boost profiles through the proxy: segments from stored counters and request context, user
lists, pins in _search and _msearch, explain with rules, the version in every response."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from opensearchpy import OpenSearch

from rewriter import config, privacy
from rewriter.api import Personalizer
from rewriter.boost.profile import content_version, parse_boost_profile
from rewriter.measure.serve_thread import serve_in_thread
from rewriter.profiles.fold import FoldConfig, empty_profile
from rewriter.ranking.rewrite import RequestContext
from rewriter.serve.app import create_app

pytestmark = pytest.mark.engine

PROFILE = """
name: shop
alpha: 1.0
attributes: {brand: 1.0}
segments:
  returning: {when: {sessions: {gte: 3}}}
  mobile: {when: {device: mobile}}
  staff: {when: {users: [staff-1]}}
rules:
  - {id: acme-for-returning, segment: returning, boost: {brand: acme, weight: 4}}
  - {id: hide-oos, hide: {terms: {in_stock: false}}}
  - {id: bury-zenit-on-mobile, segment: mobile, bury: {brand: zenit, factor: 0.1}}
  - id: staff-pin
    segment: staff
    pin: [{item: jacket, position: 1}]
"""
ITEMS = {
    "z1": {"title": "running shoe", "brand": "zenit", "in_stock": True},
    "a1": {"title": "running shoe", "brand": "acme", "in_stock": True},
    "o1": {"title": "running shoe", "brand": "other", "in_stock": True},
    "oos": {"title": "running shoe", "brand": "zenit", "in_stock": False},
    "jacket": {"title": "rain jacket", "brand": "other", "in_stock": True},
}
QUERY = {"query": {"match": {"title": "running"}}, "size": 10}


@pytest.fixture(scope="module")
def catalog(opensearch: OpenSearch, bootstrapped: config.Settings) -> Iterator[str]:
    index = f"{bootstrapped.indices.prefix}boost-shop"
    mappings = {
        "properties": {
            "title": {"type": "text"},
            "brand": {"type": "keyword"},
            "in_stock": {"type": "boolean"},
        }
    }
    settings = {"number_of_shards": 1, "number_of_replicas": 0}
    opensearch.indices.create(index=index, body={"settings": settings, "mappings": mappings})
    for doc_id, doc in ITEMS.items():
        opensearch.index(index=index, id=doc_id, body=doc)
    opensearch.indices.refresh(index=index)
    for raw, sessions in (("ret-1", 5), ("new-1", 1)):
        _store_user(opensearch, bootstrapped, raw, sessions)
    yield index
    opensearch.indices.delete(index=index, ignore_unavailable=True)


def _store_user(es: OpenSearch, s: config.Settings, raw: str, sessions: int) -> None:
    pseudonym = privacy.pseudonymize(raw, config.user_secret(s))
    doc = dict(empty_profile(pseudonym, FoldConfig()))
    now = time.time()
    doc.update(
        landmark=now,
        mass=10.0,
        first_seen=now - 86400,
        last_seen=now,
        affinities={"brand": {"zenit": 10.0}},
        counters={"events": 10, "sessions": sessions, "purchases": 0, "lifetime_value": 0.0},
    )
    es.index(index=s.indices.profiles, id=pseudonym, body=doc, refresh=True)


@pytest.fixture(scope="module")
def proxy_url(
    bootstrapped: config.Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    directory = tmp_path_factory.mktemp("profiles")
    (directory / "default.yaml").write_text("name: default\n")
    (directory / "shop.yaml").write_text(PROFILE)
    app = create_app(bootstrapped, boost_dir=str(directory))
    with serve_in_thread(app) as url:
        yield url


def _search(url: str, index: str, user: str, context: str | None = None, **params: str) -> dict:
    headers = {"X-User-Id": user, "X-Boost-Profile": "shop"}
    if context:
        headers["X-User-Context"] = context
    r = httpx.post(f"{url}/{index}/_search", json=QUERY, headers=headers, params=params)
    assert r.status_code == 200, r.text
    return r.json()


def _ids(response: dict) -> list[str]:
    return [h["_id"] for h in response["hits"]["hits"]]


def test_segment_from_stored_counters(proxy_url: str, catalog: str) -> None:
    returning = _search(proxy_url, catalog, "ret-1")
    newcomer = _search(proxy_url, catalog, "new-1")
    assert _ids(returning)[0] == "a1" and _ids(newcomer)[0] == "z1"
    assert returning["personalization"]["segments"] == ["returning"]
    assert returning["personalization"]["rules_fired"] == ["acme-for-returning", "hide-oos"]
    assert newcomer["personalization"]["rules_fired"] == ["hide-oos"]
    assert "oos" not in _ids(returning) + _ids(newcomer)
    version = content_version(PROFILE.encode())
    assert returning["personalization"]["boost_profile"] == {"name": "shop", "version": version}


def test_context_segment_buries(proxy_url: str, catalog: str) -> None:
    mobile = _search(proxy_url, catalog, "new-1", '{"device": "mobile"}', explain="true")
    assert mobile["personalization"]["segments"] == ["mobile"]
    assert _ids(mobile)[-1] == "z1"
    z1 = next(h for h in mobile["hits"]["hits"] if h["_id"] == "z1")
    part = z1["_affinity"]
    assert part["bury"] == pytest.approx(0.1) and part["rules"] == ["bury-zenit-on-mobile"]
    for hit in mobile["hits"]["hits"]:
        part = hit["_affinity"]
        total = (part["relevance"] + part["boost"]) * part["bury"] + part["added"]
        assert total == pytest.approx(hit["_score"], rel=1e-4)


def test_user_list_pin_in_search_and_msearch(proxy_url: str, catalog: str) -> None:
    staff = _search(proxy_url, catalog, "staff-1")
    assert _ids(staff)[0] == "jacket"  # the query does not match it: pinned anyway
    assert staff["hits"]["hits"][0]["_pinned"] == {"position": 1, "rule": "staff-pin"}
    assert staff["hits"]["total"]["value"] == 4  # 3 in stock matching + the pin
    assert staff["personalization"]["pinned"] == [
        {"id": "jacket", "position": 1, "rule": "staff-pin"}
    ]
    body = "\n".join([json.dumps({"index": catalog}), json.dumps(QUERY)] * 2)
    r = httpx.post(
        f"{proxy_url}/_msearch",
        content=body + "\n",
        headers={
            "X-User-Id": "staff-1",
            "X-Boost-Profile": "shop",
            "content-type": "application/x-ndjson",
        },
    )
    assert r.status_code == 200, r.text
    responses = r.json()["responses"]
    assert [_ids(x)[0] for x in responses] == ["jacket", "jacket"]
    assert all(x["status"] == 200 for x in responses)
    other = _search(proxy_url, catalog, "ret-1")
    assert "jacket" not in _ids(other)


def test_health_lists_the_served_versions(proxy_url: str) -> None:
    health = httpx.get(f"{proxy_url}/_affinity/health").json()
    assert health["boost_profiles"]["shop"]["version"] == content_version(PROFILE.encode())
    assert health["boost_profile_errors"] == []


def test_profile_file_path_is_in_health(proxy_url: str) -> None:
    health = httpx.get(f"{proxy_url}/_affinity/health").json()
    assert Path(health["boost_profiles"]["shop"]["source"]).name == "shop.yaml"


def test_in_process_explain_is_the_proxy_s(
    opensearch: OpenSearch, bootstrapped: config.Settings, proxy_url: str, catalog: str
) -> None:
    """One score breakdown: `rewriter.api` (and so `affinity search --explain`) shows what the
    proxy's `?explain=true` shows, rules and all (the CLI once had its own copy that ignored
    rules and popularity)."""
    via_proxy = _search(proxy_url, catalog, "new-1", '{"device": "mobile"}', explain="true")
    api = Personalizer(opensearch, bootstrapped, {"shop": parse_boost_profile(PROFILE, "shop")})
    context = RequestContext(explain=True, device="mobile")
    in_process = api.search(catalog, QUERY, "new-1", context, boost_profile="shop")
    assert _ids(in_process) == _ids(via_proxy)
    for mine, theirs in zip(in_process["hits"]["hits"], via_proxy["hits"]["hits"], strict=True):
        a, b = mine["_affinity"], theirs["_affinity"]
        assert (a["rules"], a["mode"], a["attributes"].keys()) == (
            b["rules"],
            b["mode"],
            b["attributes"].keys(),
        )
        for key in ("relevance", "boost", "bury", "affinity", "alpha_eff", "added", "final"):
            assert a[key] == pytest.approx(b[key], rel=1e-6), key
    assert any(h["_affinity"]["rules"] for h in in_process["hits"]["hits"])


def test_url_sort_is_the_rewrite_s_decision(proxy_url: str, catalog: str) -> None:
    """`?sort=` goes into the body before the rewrite, as a body `sort` does: the field order
    is kept and hide rules still apply (the proxy once swapped the app's own body back in
    after the rewrite, so hidden items came back)."""
    by_brand = _search(proxy_url, catalog, "ret-1", sort="brand:asc")
    assert _ids(by_brand) == ["a1", "o1", "z1"]  # "oos" is hidden, whatever the order
    assert by_brand["personalization"]["reason"] == "sorted_by_field"
    assert by_brand["personalization"]["rules_fired"] == ["hide-oos"]
    in_body = httpx.post(
        f"{proxy_url}/{catalog}/_search",
        json={**QUERY, "sort": [{"brand": "asc"}]},
        headers={"X-User-Id": "ret-1", "X-Boost-Profile": "shop"},
    ).json()
    assert _ids(in_body) == _ids(by_brand)
    assert in_body["personalization"] == by_brand["personalization"] | {
        "query_id": in_body["personalization"]["query_id"]
    }
