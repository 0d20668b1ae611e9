"""Placements through the proxy on the real engine: a banner only one segment gets, frequency
caps, a search slot inside personalization.placements, impression and click events carrying
decision_id / recommendation_id, and the reports that count them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace

import httpx
import pytest
from opensearchpy import OpenSearch

from rewriter import config, privacy
from rewriter.engine.bootstrap import bootstrap_cluster
from rewriter.measure import placement_report
from rewriter.measure.serve_thread import serve_in_thread
from rewriter.profiles.fold import FoldConfig, empty_profile
from rewriter.serve.app import create_app

pytestmark = pytest.mark.engine

PROFILE = """
name: default
segments:
  returning: {when: {sessions: {gte: 3}}}
placements:
  home_hero:
    - id: ship-free
      segment: returning
      priority: 10
      cap_per_day: 2
      content: {title: Free shipping, offer_code: SHIPFREE}
    - id: welcome
      content: {title: Welcome}
  search_top:
    - id: rain
      query: [rain]
      content: {title: Rain gear, link: /rain}
"""


def _store_user(es: OpenSearch, s: config.Settings, raw: str, sessions: int) -> None:
    doc = dict(empty_profile(privacy.pseudonymize(raw, config.user_secret(s)), FoldConfig()))
    now = time.time()
    doc.update(
        landmark=now,
        mass=5.0,
        first_seen=now - 86400,
        last_seen=now,
        affinities={"brand": {"acme": 5.0}},
        counters={"events": 5, "sessions": sessions, "purchases": 0, "lifetime_value": 0.0},
    )
    es.index(index=s.indices.profiles, id=doc["user"], body=doc, refresh=True)


@pytest.fixture(scope="module")
def shop(opensearch: OpenSearch, settings: config.Settings) -> config.Settings:
    s = replace(settings, indices=config.Indices(prefix=f"{settings.indices.prefix}pl-"))
    bootstrap_cluster(opensearch, s)
    for item, title in (("r1", "rain jacket"), ("h1", "sun hat")):
        opensearch.index(index=s.indices.catalog, id=item, body={"title": title, "brand": "acme"})
    opensearch.indices.refresh(index=s.indices.catalog)
    _store_user(opensearch, s, "regular", 5)
    _store_user(opensearch, s, "newcomer", 1)
    return s


@pytest.fixture(scope="module")
def proxy(shop: config.Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    directory = tmp_path_factory.mktemp("pl-profiles")
    (directory / "default.yaml").write_text(PROFILE)
    app = create_app(replace(shop, impressions=True), boost_dir=str(directory))
    with serve_in_thread(app) as url:
        yield url, app


def _slot(url: str, user: str | None, slot: str = "home_hero", status: int = 200) -> dict:
    headers = {"X-User-Id": user} if user else {}
    r = httpx.get(f"{url}/_affinity/placements", params={"slot": slot}, headers=headers)
    assert r.status_code == status, r.text
    return r.json()


def _events(url: str, events: list[dict]) -> dict:
    r = httpx.post(f"{url}/events", json=events, params={"wait_for_profiles": "true"}, timeout=30)
    assert r.status_code == 202, r.text
    return r.json()


def test_segment_banner_caps_reports(
    proxy: tuple, shop: config.Settings, opensearch: OpenSearch
) -> None:
    url, app = proxy
    first = _slot(url, "regular")
    assert first["placement"] == "ship-free" and first["segments"] == ["returning"]
    assert first["content"] == {"title": "Free shipping", "offer_code": "SHIPFREE"}
    assert first["decision_id"].startswith("d-")
    second = _slot(url, "regular")
    assert second["placement"] == "ship-free" and second["decision_id"] != first["decision_id"]
    assert _slot(url, "regular")["placement"] == "welcome"  # cap_per_day 2 reached
    newcomer = _slot(url, "newcomer")
    assert newcomer["placement"] == "welcome" and newcomer["segments"] == []
    assert _slot(url, None)["placement"] == "welcome"
    now = time.time()
    accepted = _events(
        url,
        [
            {
                "user_id": "regular",
                "type": "impression",
                "item_id": "ship-free",
                "decision_id": first["decision_id"],
                "timestamp": now,
                "position": 1,
            },
            {
                "user_id": "regular",
                "type": "click",
                "item_id": "ship-free",
                "decision_id": first["decision_id"],
                "timestamp": now + 1,
            },
            {
                "user_id": "regular",
                "type": "impression",
                "item_id": "ship-free",
                "decision_id": second["decision_id"],
                "timestamp": now + 2,
            },
            {
                "user_id": "newcomer",
                "type": "impression",
                "item_id": "welcome",
                "decision_id": newcomer["decision_id"],
                "timestamp": now,
            },
        ],
    )
    assert accepted["accepted"] == 4, accepted
    assert app.state.proxy.impressions.flush()
    rows = {(r.name, r.group): r for r in placement_report.fetch(opensearch, shop, "placements")}
    ship = rows[("ship-free", "all")]
    assert (ship.decisions, ship.shown, ship.clicks) == (2, 2, 1)
    assert ship.ctr == pytest.approx(0.5) and ship.ctr_low < 0.5 < ship.ctr_high
    assert rows[("ship-free", "segment:returning")].clicks == 1
    welcome = rows[("welcome", "all")]
    assert (welcome.decisions, welcome.shown, welcome.clicks) == (3, 1, 0)
    assert ("welcome", "segment:returning") in rows  # the capped regular's third decision


def test_search_slot_inside_the_search_response(proxy: tuple, shop: config.Settings) -> None:
    url, _ = proxy
    body = {"query": {"match": {"title": "rain"}}}
    r = httpx.post(
        f"{url}/{shop.indices.catalog}/_search", json=body, headers={"X-User-Id": "newcomer"}
    )
    assert r.status_code == 200, r.text
    [decision] = r.json()["personalization"]["placements"]
    assert decision["slot"] == "search_top" and decision["placement"] == "rain"
    other = httpx.post(
        f"{url}/{shop.indices.catalog}/_search", json={"query": {"match": {"title": "hat"}}}
    )
    assert other.json()["personalization"]["placements"] == [
        {"slot": "search_top", "placement": None, "decision_id": None, "segments": []}
    ]


def test_unknown_or_missing_slot(proxy: tuple) -> None:
    url, _ = proxy
    missing = _slot(url, "regular", slot="nowhere", status=404)
    assert "nowhere" in missing["error"]["reason"] and "home_hero" in missing["error"]["reason"]
    assert "slot" in _slot(url, "regular", slot="", status=400)["error"]["reason"]


def test_recommendations_report_counts_carousel_clicks(
    proxy: tuple, shop: config.Settings, opensearch: OpenSearch
) -> None:
    url, app = proxy
    r = httpx.post(
        f"{url}/_affinity/recommend",
        json={"model": "for_you", "index": shop.indices.catalog},
        headers={"X-User-Id": "regular"},
    )
    assert r.status_code == 200, r.text
    rid = r.json()["recommendation_id"]
    first = r.json()["hits"]["hits"][0]["_id"]
    _events(
        url,
        [
            {
                "user_id": "regular",
                "type": "click",
                "item_id": first,
                "recommendation_id": rid,
                "timestamp": time.time(),
            }
        ],
    )
    assert app.state.proxy.impressions.flush()
    report = placement_report.fetch(opensearch, shop, "recommendations")
    [row] = [x for x in report if x.group == "all"]
    assert (row.name, row.decisions, row.shown, row.clicks) == ("for_you", 1, 1, 1)
