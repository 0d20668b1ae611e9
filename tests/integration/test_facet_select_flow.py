"""Learning from facet clicks on the real engine (issue 11, item 9): a facet_select sent to
POST /events folds into the profile, the next search shows that value first in its facet,
and `affinity facets report` joins the selections to the searches that showed the facet."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from opensearchpy import OpenSearch, helpers

import cli
from rewriter import config
from rewriter.engine.bootstrap import bootstrap_cluster
from rewriter.measure import facets_report
from rewriter.measure.serve_thread import serve_in_thread
from rewriter.serve.app import create_app

pytestmark = pytest.mark.engine

BRANDS = ["acme"] * 6 + ["nike"] * 5 + ["zenit"]
BODY: dict[str, Any] = {
    "query": {"match_all": {}},
    "size": 2,
    "aggs": {"brands": {"terms": {"field": "brand", "size": 2}}},
}


@pytest.fixture(scope="module")
def shop(opensearch: OpenSearch, bootstrapped: config.Settings) -> Iterator[config.Settings]:
    s = replace(bootstrapped, indices=config.Indices(prefix=bootstrapped.indices.prefix + "fsel-"))
    bootstrap_cluster(opensearch, s)
    docs = [{"title": f"item {i}", "brand": b} for i, b in enumerate(BRANDS)]
    actions = [
        {"_index": s.indices.catalog, "_id": str(i), "_source": d} for i, d in enumerate(docs)
    ]
    helpers.bulk(opensearch, actions, refresh="wait_for")
    yield s


def test_a_facet_click_moves_the_value_up_and_shows_in_the_report(
    opensearch: OpenSearch, shop: config.Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = shop.indices.catalog
    user = {"X-User-Id": "picker"}
    app = create_app(shop)
    with serve_in_thread(app) as url:
        before = httpx.post(f"{url}/{index}/_search", json=BODY, headers=user).json()
        assert [b["key"] for b in before["aggregations"]["brands"]["buckets"]] == ["acme", "nike"]
        query_id = before["personalization"]["query_id"]
        now = time.time()
        events = [
            {
                "type": "facet_select",
                "facet": {"attribute": "brand", "value": "zenit"},
                "query_id": query_id,
                "timestamp": now - n,
            }
            for n in range(3)
        ] + [{"type": "facet_select", "facet": {"attribute": "brand"}, "timestamp": now}]
        posted = httpx.post(
            f"{url}/events?wait_for_profiles=true", json=events, headers=user, timeout=30
        )
        assert posted.status_code == 202, posted.text
        answer = posted.json()
        assert answer["accepted"] == 3 and answer["rejected"] == 1
        assert answer["rejections"][0]["field"] == "facet"
        assert "facet.value" in answer["rejections"][0]["reason"]
        after = httpx.post(f"{url}/{index}/_search", json=BODY, headers=user).json()
        buckets = after["aggregations"]["brands"]["buckets"]
        assert (buckets[0]["key"], buckets[0]["doc_count"], buckets[0]["favored"]) == (
            "zenit",
            1,
            True,
        )
        assert app.state.proxy.impressions.flush(10)  # type: ignore[attr-defined]
    opensearch.indices.refresh(index=f"{shop.indices.prefix}affinity-*")
    impressions, selections = facets_report.load(opensearch, shop, since_s=3600)
    report = facets_report.facet_report(impressions, selections)
    rows = {(r.segment, r.facet): (r.shown, r.selected) for r in report.rows}
    assert rows[(facets_report.ALL, "brand")] == (2, 3)
    assert rows[(facets_report.NO_SEGMENT, "brand")] == (2, 3)
    monkeypatch.setenv("AFFINITY_INDEX_PREFIX", shop.indices.prefix)
    monkeypatch.setenv("OPENSEARCH_URL", shop.url)
    monkeypatch.setenv("AFFINITY_SECRET", str(shop.secret))
    out = CliRunner().invoke(cli.main, ["facets", "report", "--since", "1h"])
    assert out.exit_code == 0, out.output
    assert "2 searches with facets, 3 facet selections" in out.output
    bad = CliRunner().invoke(cli.main, ["facets", "report", "--since", "yesterday"])
    assert bad.exit_code == 2 and "--since 'yesterday'" in bad.output
