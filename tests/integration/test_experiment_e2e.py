"""Experiments end to end through the proxy and the engine; offline replay on scratch indices."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from opensearchpy import OpenSearch

from rewriter import config, privacy
from rewriter.boost.profile import load_boost_profiles
from rewriter.engine.bootstrap import bootstrap_cluster
from rewriter.experiments.assignment import Experiment, ExperimentSet, Variant
from rewriter.ingest.pipeline import Pipeline
from rewriter.measure import evaluate as ev
from rewriter.measure import shop as synthetic_shop
from rewriter.measure import simulate_proxy
from rewriter.measure.evaluate_scratch import owned_indices


def _sub(settings: config.Settings, suffix: str) -> config.Settings:
    return replace(settings, indices=config.Indices(prefix=settings.indices.prefix + suffix))


@pytest.fixture(scope="module")
def shop(opensearch: OpenSearch, bootstrapped: config.Settings) -> config.Settings:
    s = _sub(bootstrapped, "exp-")
    bootstrap_cluster(opensearch, s)
    return s


def test_simulated_experiment_through_proxy_and_engine(
    opensearch: OpenSearch, shop: config.Settings
) -> None:
    result = simulate_proxy.run(opensearch, shop, users=400, seed=7)
    report = result.report
    assert result.impressions == result.searches > 800  # one impression per search
    assert sum(v.users for v in report.variants) == 400
    assert not report.srm.mismatch
    ctr = next(c for c in report.comparisons if c.metric == "ctr")
    assert ctr.diff > 0 and ctr.p_value < 0.01, ctr
    assert report.verdicts["personalized"].outcome == "winner"
    control, treated = report.variants
    assert control.metrics["ctr"].value > 0 and treated.metrics["add_to_cart_rate"].value > 0
    assert "0 events not attributed" in report.notes[0]  # every click joined its impression


def test_response_tags_and_the_impression_document(
    opensearch: OpenSearch, shop: config.Settings
) -> None:
    exp = Experiment(
        name="tags",
        index=shop.indices.catalog,
        salt="s",
        start=0.0,
        control="off",
        variants=(Variant("off", 50.0, generic=True), Variant("on", 50.0, alpha=3.0)),
    )
    body = {"query": {"match": {"title": "shoes"}}, "size": 3, "from": 1}
    path = f"/{shop.indices.catalog}/_search"
    with simulate_proxy.serve(shop, ExperimentSet([exp])) as (url, app):
        tagged = [
            httpx.post(url + path, json=body, headers={"X-User-Id": f"tag-{n}"}).json()
            for n in range(12)
        ]
        opted = httpx.post(
            url + path, json=body, headers={"X-User-Id": "tag-0", "X-Personalization": "off"}
        ).json()
        hidden = httpx.post(f"{url}/{shop.indices.impressions}/_search", json={})
        assert app.state.proxy.impressions.flush(10)  # type: ignore[attr-defined]
    infos = {r["personalization"]["variant"]: r["personalization"] for r in tagged}
    assert set(infos) == {"off", "on"} and {i["experiment"] for i in infos.values()} == {"tags"}
    assert infos["on"]["alpha"] == 3.0 and infos["on"]["applied"] is True
    assert infos["off"]["reason"] == "experiment_control" and infos["off"]["applied"] is False
    assert opted["personalization"]["experiment"] is None  # chose its own view: not enrolled
    assert len({r["personalization"]["query_id"] for r in tagged}) == 12
    assert hidden.status_code == 403
    opensearch.indices.refresh(index=shop.indices.impressions)
    first = tagged[0]["personalization"]
    doc = opensearch.get(index=shop.indices.impressions, id=first["query_id"])["_source"]
    secret = config.user_secret(shop)
    assert doc["user_id"] == privacy.pseudonymize("tag-0", secret)
    assert "tag-0" not in json.dumps(doc)
    assert doc["query"] == "shoes" and doc["variant"] == first["variant"]
    ids = [h["_id"] for h in tagged[0]["hits"]["hits"]]
    assert doc["items"] == [{"id": i, "position": n + 2} for n, i in enumerate(ids)]
    erased = Pipeline(opensearch, shop, load_boost_profiles("profiles")["default"]).erase(
        doc["user_id"]
    )
    assert erased["impressions"] == 2


def _write_shop(directory: Path) -> tuple[Path, Path]:
    """40 users who each buy one brand; 5 brands x 4 categories x 5 items."""
    catalog, events = directory / "catalog.jsonl", directory / "events.jsonl"
    brands, cats = ["b0", "b1", "b2", "b3", "b4"], ["c0", "c1", "c2", "c3"]
    items = [(f"{b}-{c}-{n}", b, c) for c in cats for b in brands for n in range(5)]
    catalog.write_text(
        "".join(
            json.dumps({"id": i, "title": f"item {i}", "brand": b, "category": [c]}) + "\n"
            for i, b, c in items
        )
    )
    lines = []
    for u in range(40):
        mine = [i for i, b, _ in items if b == brands[u % 5]]
        for k in range(8):  # 6 before the cutoff (t < 2000), 2 after
            t = 1_000_000_000 + (k * 1000 if k < 6 else 10_000 + k)
            item = mine[(u * 7 + k * 3) % len(mine)]
            lines.append({"user_id": f"u{u}", "type": "purchase", "item_id": item, "timestamp": t})
    events.write_text("".join(json.dumps(e) + "\n" for e in lines))
    return catalog, events


def test_offline_replay_on_scratch_indices(
    opensearch: OpenSearch, bootstrapped: config.Settings, tmp_path: Path
) -> None:
    catalog, events = _write_shop(tmp_path)
    before = opensearch.count(index=bootstrapped.indices.catalog)["count"]
    opts = ev.Options(
        events=events,
        catalog=catalog,
        cutoff=ev.parse_cutoff("1000005500"),
        alphas=(0.0, 1.0, 4.0),
        prefix=bootstrapped.indices.prefix + "ev-",
        shape="function_score",
    )
    boost = load_boost_profiles("profiles")["default"]
    result = ev.run(opensearch, bootstrapped, boost, opts)
    rows = {r.method: r for r in result.rows}
    assert rows["alpha=4"].ndcg > rows["generic"].ndcg + 0.1
    assert rows["alpha=4"].ndcg > rows["popularity"].ndcg
    assert rows["alpha=0"].personalized == 0 and rows["alpha=4"].personalized == 1.0
    assert result.recommended_alpha in (1.0, 4.0)
    assert "recommended alpha=" in result.report and "80 interactions" in result.report
    scratch = _sub(bootstrapped, "ev-")
    assert opensearch.count(index=scratch.indices.catalog)["count"] == 100
    assert opensearch.count(index=bootstrapped.indices.catalog)["count"] == before
    assert owned_indices(opensearch, scratch)


def test_offline_replay_on_the_synthetic_shop(
    opensearch: OpenSearch, bootstrapped: config.Settings, tmp_path: Path
) -> None:
    """Leave-last-out on a generated shop log: the seen split is the log's, and today's
    personalization ranks the next item better than generic BM25 on its category words."""
    made = synthetic_shop.generate(users=250, items=240, seed=11)
    paths = synthetic_shop.write(made, tmp_path)
    boost = load_boost_profiles("profiles")["default"]
    opts = ev.Options(
        events=paths["events.jsonl"],
        catalog=paths["catalog.jsonl"],
        cutoff=ev.parse_cutoff("last"),
        alphas=(),
        prefix=bootstrapped.indices.prefix + "shop-",
        fallback="category_words",
        positive_types=("view", "add_to_cart", "purchase"),
        exclude_seen=False,
    )
    result = ev.run(opensearch, bootstrapped, boost, opts)
    # the seen split, from the log itself: was the user's last item one they touched before?
    by_user: dict[str, list[dict]] = {}
    for e in made.events:
        by_user.setdefault(e["user_id"], []).append(e)
    seen = sum(evs[-1]["item_id"] in {e["item_id"] for e in evs[:-1]} for evs in by_user.values())
    at = {(r.method, r.segment): r for r in result.segments}
    assert at[("generic", "all")].cases == len(by_user) == 250
    assert at[("generic", "seen")].cases == seen and 0 < seen < 250
    assert at[("default", "never seen")].cases == 250 - seen
    rows = {r.method: r for r in result.rows}
    assert set(rows) == {"generic", "popularity", "default"}
    assert rows["default"].personalized == 1.0 and rows["generic"].personalized == 0
    assert rows["default"].ndcg > rows["generic"].ndcg
    assert at[("default", "seen")].ndcg > at[("generic", "seen")].ndcg
    assert "never seen" in result.report and "history 5-19" in result.report
