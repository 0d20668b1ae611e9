"""/_affinity/recommend on the real engine: every model, its fallbacks, the re-rank by the
stored script held to the reference scorer, the pair tables' build (incremental, alias swap)
and the refusals (unknown model, item, bad fields)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from engine_helpers import close
from opensearchpy import OpenSearch, helpers

from rewriter import config, privacy
from rewriter.boost.profile import parse_boost_profile
from rewriter.measure.serve_thread import serve_in_thread
from rewriter.profiles.fold import FoldConfig, empty_profile
from rewriter.profiles.view import affinity_view
from rewriter.ranking import reference
from rewriter.recommend import build, models, table
from rewriter.serve.app import create_app

pytestmark = pytest.mark.engine

DAY = 86400.0
NOW = time.time()
OLD = NOW - 40 * DAY
ITEMS = {
    "a1": ("acme", "shoes", "acme trail shoe", 50, True),
    "a2": ("acme", "shoes", "acme road shoe", 5, True),
    "a3": ("acme", "jackets", "acme rain jacket", 3, True),
    "z1": ("zenit", "shoes", "zenit road shoe", 100, True),
    "z2": ("zenit", "jackets", "zenit down jacket", 80, True),
    "z3": ("zenit", "shoes", "zenit trail shoe", 60, False),
    "o1": ("other", "hats", "other wool hat", 90, True),
    "o2": ("other", "hats", "other sun hat", 10, True),
}
PROFILE = "name: default\nalpha: 1.0\nk: 5\nattributes: {brand: 1.0, category: 1.0}\n"


def _pseudonym(s: config.Settings, raw: str) -> str:
    return privacy.pseudonymize(raw, config.user_secret(s))


def _event(s: config.Settings, user: str, kind: str, item: str, at: float, **more: Any) -> dict:
    doc = {
        "event_id": uuid.uuid4().hex,
        "user_id": _pseudonym(s, user),
        "type": kind,
        "item_id": item,
        "timestamp": at,
        "ingested_at": time.time(),
        **more,
    }
    return {"_index": s.indices.events, "_id": doc["event_id"], "_source": doc}


def _sessions() -> list[tuple[str, list[str]]]:
    """a1 goes with a2, a3 and o2 in a few sessions; z1, the best-seller, is in every
    session and in many more of its own, so it goes with nothing in particular."""
    out = [(f"s{n}", ["z1", "a1", "a2", "a3"]) for n in range(4)]
    out += [(f"t{n}", ["z1", "a1", "o2"]) for n in range(3)]
    out += [(f"u{n}", ["z1", "z2"]) for n in range(60)]
    return out


def _store_profile(es: OpenSearch, s: config.Settings, raw: str, opt_out: bool = False) -> None:
    doc = dict(empty_profile(_pseudonym(s, raw), FoldConfig()))
    doc.update(
        landmark=NOW,
        mass=10.0,
        first_seen=OLD,
        last_seen=NOW,
        affinities={"brand": {"acme": 10.0}, "category": {"shoes": 10.0}},
        counters={"events": 10, "sessions": 3, "purchases": 1, "lifetime_value": 0.0},
        opt_out=opt_out,
    )
    es.index(index=s.indices.profiles, id=doc["user"], body=doc, refresh=True)


@pytest.fixture(scope="module")
def shop(opensearch: OpenSearch, settings: config.Settings) -> Iterator[config.Settings]:
    """Its own prefix: the pair tables and trending read the whole events log."""
    from rewriter.engine.bootstrap import bootstrap_cluster

    s = replace(settings, indices=config.Indices(prefix=f"{settings.indices.prefix}rec-"))
    bootstrap_cluster(opensearch, s)
    for item, (brand, category, title, pop, stock) in ITEMS.items():
        doc = {"id": item, "brand": brand, "category": category, "title": title}
        opensearch.index(
            index=s.indices.catalog, id=item, body={**doc, "popularity": pop, "in_stock": stock}
        )
    opensearch.indices.refresh(index=s.indices.catalog)
    _store_profile(opensearch, s, "acme-fan")
    _store_profile(opensearch, s, "gone", opt_out=True)
    opensearch.index(
        index=s.indices.profiles,
        id="segment:device=mobile",
        body={
            "kind": "segment_prior",
            "user": "segment:device=mobile",
            "segment": "device=mobile",
            "members": 20,
            "priors": {"brand": {"other": 1.0}},
        },
        refresh=True,
    )
    events = [
        _event(s, "acme-fan", "view", "a1", OLD),
        _event(s, "acme-fan", "purchase", "a2", OLD + 100),
        _event(s, "acme-fan", "view", "z1", OLD + 200),
        _event(s, "acme-fan", "view", "a1", OLD + 300),
        _event(s, "gone", "view", "o1", OLD),
    ]
    for user, items in _sessions():
        events += [_event(s, user, "view", i, OLD + 10 * n) for n, i in enumerate(items)]
    # trending: o2 jumps in the last day; z1 steady; o1 falls
    events += [_event(s, f"tr{n}", "view", "o2", NOW - 3600 - n) for n in range(5)]
    events += [_event(s, f"tr{n}", "view", "z1", NOW - DAY - n * DAY / 2) for n in range(7)]
    events += [_event(s, f"tr{n}", "view", "z1", NOW - 7200 - n) for n in range(3)]
    events += [_event(s, f"tr{n}", "view", "o1", NOW - 2 * DAY - n * 3000) for n in range(14)]
    helpers.bulk(opensearch, events, refresh="wait_for")
    yield s


@pytest.fixture(scope="module")
def proxy(shop: config.Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    directory = tmp_path_factory.mktemp("rec-profiles")
    (directory / "default.yaml").write_text(PROFILE)
    diverse = PROFILE.replace("name: default", "name: diverse")
    (directory / "diverse.yaml").write_text(diverse + "diversity: {max_per: {brand: 1}, top: 3}\n")
    with serve_in_thread(create_app(shop, boost_dir=str(directory))) as url:
        yield url


def _recommend(url: str, user: str | None = None, status: int = 200, **body: Any) -> dict:
    headers = {"X-User-Id": user} if user else {}
    context = body.pop("context", None)
    if context:
        headers["X-User-Context"] = context
    r = httpx.post(f"{url}/_affinity/recommend", json=body, headers=headers, timeout=30)
    assert r.status_code == status, r.text
    return r.json()


def _ids(response: dict) -> list[str]:
    return [h["_id"] for h in response["hits"]["hits"]]


def test_for_you_is_the_catalog_reranked_by_the_script(
    proxy: str, shop: config.Settings, opensearch: OpenSearch
) -> None:
    got = _recommend(proxy, "acme-fan", model="for_you", size=10)
    p = got["personalization"]
    assert p["model"] == "for_you" and p["source"] == "profile" and p["mode"] == "affinity"
    assert p["fallbacks"] == [] and "acme" in p["why"]
    assert got["recommendation_id"].startswith("r-") and len(got["recommendation_id"]) == 34
    ids = _ids(got)
    assert "a2" not in ids  # bought
    assert "a1" not in ids and "z1" not in ids  # seen (exclude_seen defaults to true)
    assert "z3" not in ids  # out of stock
    # the engine's scores are the first pass + alpha_eff · Affinity of the reference scorer
    boost = parse_boost_profile(PROFILE, "default.yaml")
    fan = affinity_view(
        opensearch.get(index=shop.indices.profiles, id=_pseudonym(shop, "acme-fan"))["_source"],
        time.time(),
        boost.top_k,
    )
    first_pass = models.catalog_body(
        models.for_you_query(
            {"brand": ["acme"], "category": ["shoes"]}, boost.attributes, "popularity", "log1p", 1.0
        ),
        10,
        None,
        ["a1", "a2", "z1"],
    )
    plain = opensearch.search(index=shop.indices.catalog, body=first_pass)["hits"]["hits"]
    hits = [
        reference.hit_from_source(h["_id"], h["_score"], h["_source"], ["brand", "category"])
        for h in plain
    ]
    want = reference.score(hits, fan, boost)
    assert [h.id for h in want] == ids
    for scored, hit in zip(want, got["hits"]["hits"], strict=True):
        assert close(hit["_score"], scored.final)
    assert ids[0] == "a3"  # acme: the affinity lifts it over far more popular items


def test_for_you_cold_start_segment_prior_then_popularity(proxy: str) -> None:
    mobile = _recommend(proxy, "stranger", model="for_you", context='{"device": "mobile"}')
    assert mobile["personalization"]["fallbacks"] == ["segment_prior:device=mobile"]
    assert _ids(mobile)[:2] == ["o1", "o2"]  # the segment likes brand other
    anonymous = _recommend(proxy, None, model="for_you", size=3)
    assert anonymous["personalization"]["fallbacks"] == ["popularity"]
    assert anonymous["personalization"]["source"] == "popularity"
    assert _ids(anonymous) == ["z1", "o1", "z2"]


def test_recently_viewed_and_opt_out(proxy: str) -> None:
    got = _recommend(proxy, "acme-fan", model="recently_viewed", size=5)
    assert sorted(_ids(got)) == ["a1", "a2", "z1"]
    assert _ids(got)[0] == "a1"  # newest, and acme
    assert _recommend(proxy, "gone", model="recently_viewed")["hits"]["hits"] == []
    assert _recommend(proxy, None, model="recently_viewed")["personalization"]["source"] == "none"


def test_trending_rises_computed_by_aggregations(proxy: str) -> None:
    anonymous = _recommend(proxy, None, model="trending", size=5)
    assert anonymous["personalization"]["source"] == "trending"
    assert _ids(anonymous) == ["o2", "z1"]  # o1 fell: left out
    assert anonymous["hits"]["hits"][0]["_recommendation"]["rise"] == pytest.approx(5.0)
    fan = _recommend(proxy, "acme-fan", model="trending", size=1, exclude_seen=False)
    assert _ids(fan) == ["z1"] and "your categories (shoes)" in fan["personalization"]["why"]
    wide = _recommend(proxy, "acme-fan", model="trending", size=2, exclude_seen=False)
    assert wide["personalization"]["fallbacks"] == ["all_categories"]


def test_related_from_the_built_table_then_incremental(
    proxy: str, shop: config.Settings, opensearch: OpenSearch
) -> None:
    before = _recommend(proxy, None, model="related", item="a1")
    assert before["personalization"]["source"] == "attribute_similarity"  # no table yet
    assert before["personalization"]["fallbacks"] == ["attribute_similarity"]
    assert "a1" not in _ids(before) and _ids(before)[0] in ("a2", "a3")
    first = build.build(opensearch, shop)
    assert first.events == 5 + sum(len(items) for _, items in _sessions()) + 5 + 7 + 3 + 14
    got = _recommend(proxy, None, model="related", item="a1")
    assert got["personalization"]["source"] == "co_views"
    # z1 meets a1 in more sessions than anything, but it is in most sessions: it comes last
    assert set(_ids(got)[:3]) == {"a2", "a3", "o2"}
    shared = {h["_id"]: h["_recommendation"]["co_sessions"] for h in got["hits"]["hits"]}
    assert shared.get("z1", 0) >= max(shared.values())
    # incremental: only the new events are read, the counts add up, the alias moves
    helpers.bulk(
        opensearch,
        [_event(shop, f"v{n}", "view", i, OLD + n) for n in range(2) for i in ("a1", "o2")],
        refresh="wait_for",
    )
    second = build.build(opensearch, shop)
    assert second.events == 4 and second.previous == first.index
    assert not opensearch.indices.exists(index=first.index)
    assert build.current_index(opensearch, table.alias(shop.indices.prefix)) == second.index
    after = _recommend(proxy, None, model="related", item="a1")
    o2 = next(h for h in after["hits"]["hits"] if h["_id"] == "o2")
    assert o2["_recommendation"]["co_sessions"] == 5


def test_bought_together_falls_back_to_similarity(proxy: str) -> None:
    got = _recommend(proxy, "acme-fan", model="bought_together", item="a3", exclude_seen=False)
    assert got["personalization"]["source"] == "attribute_similarity"
    assert _ids(got)[0] in ("a1", "a2")  # same brand, and the user's favourites


@pytest.mark.parametrize(
    ("body", "status", "names"),
    [
        ({"model": "nope"}, 400, "nope"),
        ({}, 400, "model"),
        ({"model": "related"}, 400, "item"),
        ({"model": "related", "item": "missing-42"}, 404, "missing-42"),
        ({"model": "for_you", "size": 0}, 400, "size"),
        ({"model": "for_you", "filter": [1]}, 400, "filter"),
        ({"model": "for_you", "colour": "red"}, 400, "colour"),
        ({"model": "for_you", "index": "no-such-index"}, 404, "no-such-index"),
        (
            {
                "model": "for_you",
                "filter": {
                    "terms": {"brand": {"index": "*affinity-profiles*", "id": "x", "path": "y"}}
                },
            },
            403,
            "private",
        ),
    ],
)
def test_refusals_name_the_field(proxy: str, body: dict, status: int, names: str) -> None:
    got = _recommend(proxy, "acme-fan", status=status, **body)
    assert names in got["error"]["reason"]


def test_get_with_query_parameters(proxy: str) -> None:
    r = httpx.get(
        f"{proxy}/_affinity/recommend",
        params={"model": "for_you", "size": "2", "filter": '{"term": {"brand": "zenit"}}'},
    )
    assert r.status_code == 200, r.text
    assert _ids(r.json()) == ["z1", "z2"]


def test_empty_events_log_builds_empty_tables_and_every_model_answers(
    opensearch: OpenSearch, settings: config.Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from rewriter.engine.bootstrap import bootstrap_cluster

    s = replace(settings, indices=config.Indices(prefix=f"{settings.indices.prefix}rec0-"))
    bootstrap_cluster(opensearch, s)
    for item, (brand, category, title, pop, stock) in ITEMS.items():
        doc = {"brand": brand, "category": category, "title": title, "popularity": pop}
        opensearch.index(index=s.indices.catalog, id=item, body={**doc, "in_stock": stock})
    opensearch.indices.refresh(index=s.indices.catalog)
    result = build.build(opensearch, s)
    assert result.events == 0 and result.sessions == {"related": 0, "bought_together": 0}
    directory = tmp_path_factory.mktemp("rec0-profiles")
    (directory / "default.yaml").write_text(PROFILE)
    with serve_in_thread(create_app(s, boost_dir=str(directory))) as url:
        for model in models.MODELS:
            got = _recommend(url, "someone", model=model, item="a1", size=3)
            fallbacks = got["personalization"]["fallbacks"]
            if model == "recently_viewed":
                assert got["hits"]["hits"] == []
            else:
                assert fallbacks in (["popularity"], ["attribute_similarity"]), model
                assert len(got["hits"]["hits"]) == 3, model


def test_diversity_caps_one_item_per_brand_in_the_top(proxy: str) -> None:
    plain = _recommend(proxy, None, model="for_you", size=4)
    assert _ids(plain) == ["z1", "o1", "z2", "a1"]  # popularity: two zenit in the top 3
    r = httpx.post(
        f"{proxy}/_affinity/recommend",
        json={"model": "for_you", "size": 4},
        headers={"X-Boost-Profile": "diverse"},
    )
    assert r.status_code == 200, r.text
    assert _ids(r.json()) == ["z1", "o1", "a1", "z2"]
    assert r.json()["personalization"]["diversity"] == {
        "max_per": {"brand": 1},
        "top": 3,
        "moved": 2,
    }
