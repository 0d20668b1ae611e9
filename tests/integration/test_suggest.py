"""Autocomplete on the real engine (issue 11, items 1-2): `affinity suggestions build` from
searches run through the proxy (min distinct users, PII, deny list, zero results, catalog
titles and attribute values, alias swap), `GET /_affinity/suggest` personalized by the same
script (the reference scorer agrees to 1e-4), recent searches first for short prefixes and
erased with the user, bad input never a 5xx."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from engine_helpers import close
from opensearchpy import OpenSearch, helpers

import cli
from rewriter import config, privacy
from rewriter.boost.profile import load_boost_profiles
from rewriter.engine.bootstrap import bootstrap_cluster
from rewriter.ingest.pipeline import Pipeline
from rewriter.measure.serve_thread import serve_in_thread
from rewriter.ranking import reference
from rewriter.ranking.suggest import suggestions_index
from rewriter.serve.api import Personalizer
from rewriter.serve.app import create_app

pytestmark = pytest.mark.engine

ITEMS = [
    ("thermal jacket", "zenit", "outerwear"),
    ("thermal gloves", "acme", "accessories"),
    ("the north face parka", "northface", "outerwear"),
    ("thin rain jacket", "acme", "outerwear"),
    ("tent for two", "zenit", "camping"),
    ("throw blanket", "acme", "home"),
]
SEARCHES = {  # query -> users who ran it
    "thermal jacket": ["u1", "u2", "u3"],
    "the north face": ["u1", "u2", "u4"],
    "jane.doe@example.com": ["u1", "u2", "u3"],
    "call 0176 1234567": ["u1", "u2", "u3"],
    "order 88812345": ["u1", "u2", "u3"],
    "casino jacket": ["u1", "u2", "u3"],
    "tent": ["u1", "u2"],
    "xyzzy": ["u1", "u2", "u3"],
    "Thermal Jacket": ["u4"],
    "throw": ["hiker"],
}


@pytest.fixture(scope="module")
def shop(
    opensearch: OpenSearch, bootstrapped: config.Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[config.Settings, str]]:
    """A catalog, its searches through the proxy, the hiker's zenit purchases, the build."""
    s = replace(bootstrapped, indices=config.Indices(prefix=bootstrapped.indices.prefix + "sg-"))
    bootstrap_cluster(opensearch, s)
    docs = [{"title": t, "brand": b, "category": c} for t, b, c in ITEMS]
    actions = [
        {"_index": s.indices.catalog, "_id": str(i), "_source": d} for i, d in enumerate(docs)
    ]
    helpers.bulk(opensearch, actions, refresh="wait_for")
    app = create_app(s)
    with serve_in_thread(app) as url:
        for query, users in SEARCHES.items():
            body = {"query": {"match": {"title": query}}}
            for user in users:
                r = httpx.post(f"{url}/{s.indices.catalog}/_search", json=body,
                               headers={"X-User-Id": user})  # fmt: skip
                assert r.status_code == 200, r.text
        now = time.time()
        events = [
            {"user_id": "hiker", "type": "purchase", "item_id": item, "timestamp": now - n}
            for n, item in enumerate(["0", "4", "0"])
        ] + [{"user_id": u, "type": "view", "item_id": "2", "timestamp": now} for u in "abc"]
        posted = httpx.post(f"{url}/events?wait_for_profiles=true", json=events, timeout=30)
        assert posted.status_code == 202, posted.text
        assert app.state.proxy.impressions.flush(10)  # type: ignore[attr-defined]
    opensearch.indices.refresh(index=f"{s.indices.prefix}affinity-*")
    deny = tmp_path_factory.mktemp("deny") / "deny.yaml"
    deny.write_text("deny:\n  - casino\n")
    result = _cli(
        s, ["suggestions", "build", "--index", s.indices.catalog, "--deny-list", str(deny)]
    )
    assert result.exit_code == 0, result.output
    yield s, result.output


def _cli(s: config.Settings, args: list[str]) -> Any:
    env = {
        "OPENSEARCH_URL": s.url,
        "AFFINITY_INDEX_PREFIX": s.indices.prefix,
        "AFFINITY_SECRET": str(s.secret),
    }
    return CliRunner().invoke(cli.main, args, env=env)


@pytest.fixture(scope="module")
def proxy(shop: tuple[config.Settings, str]) -> Iterator[str]:
    with serve_in_thread(create_app(shop[0])) as url:
        yield url


def _suggest(url: str, s: config.Settings, q: str, user: str | None = None, **extra: str) -> Any:
    headers = {"X-User-Id": user} if user else {}
    headers.update({k.replace("_", "-"): v for k, v in extra.items() if k.startswith("X_")})
    params = {"index": s.indices.catalog, "q": q}
    params.update({k: v for k, v in extra.items() if not k.startswith("X_")})
    return httpx.get(f"{url}/_affinity/suggest", params=params, headers=headers, timeout=30)


def test_the_build_keeps_popular_clean_queries_and_the_catalog(
    opensearch: OpenSearch, shop: tuple[config.Settings, str]
) -> None:
    s, output = shop
    alias = suggestions_index(s.indices.catalog)
    docs = [h["_source"] for h in helpers.scan(opensearch, index=alias)]
    queries = {d["text"]: d for d in docs if d["kind"] == "query"}
    assert set(queries) == {"thermal jacket", "the north face"}, output
    # distinct users: "Thermal Jacket" by u4 joins "thermal jacket" (u1-u3): 4, not 5 runs
    assert queries["thermal jacket"]["popularity"] == 4.0
    assert queries["thermal jacket"]["brand"] == ["zenit"]
    assert queries["the north face"]["result_count"] == 1
    for why in ("e-mail address", "phone number", "long digit string", "on the deny list"):
        assert f"1 {why}" in output, output
    assert "below 3 distinct users" in output and "1 no results" in output
    kinds = {d["kind"] for d in docs}
    assert kinds == {"query", "title", "brand", "category"}
    north = next(d for d in docs if d["kind"] == "title" and d["text"] == "the north face parka")
    assert north["popularity"] == 3.0  # users a, b, c viewed it


def test_a_rebuild_swaps_the_alias(
    opensearch: OpenSearch, shop: tuple[config.Settings, str]
) -> None:
    s, _ = shop
    alias = suggestions_index(s.indices.catalog)
    before = list(opensearch.indices.get_alias(name=alias))
    again = _cli(s, ["suggestions", "build", "--index", s.indices.catalog, "--min-users", "1"])
    assert again.exit_code == 0, again.output
    after = list(opensearch.indices.get_alias(name=alias))
    assert len(after) == 1 and after != before and f"replacing {before[0]}" in again.output
    assert not opensearch.indices.exists(index=before[0])
    texts = {h["_source"]["text"] for h in helpers.scan(opensearch, index=alias)}
    assert "tent" in texts and "jane.doe@example.com" not in texts  # min users 1; PII still out


def test_personalized_suggestions_follow_the_profile_and_match_the_reference(
    proxy: str, shop: tuple[config.Settings, str], opensearch: OpenSearch
) -> None:
    s, _ = shop
    generic = _suggest(proxy, s, "th", X_Personalization="off").json()
    mine = _suggest(proxy, s, "th", "hiker", explain="true").json()
    assert mine["personalization"]["applied"] is True, mine["personalization"]
    assert generic["personalization"]["applied"] is False
    assert mine["suggestions"][0] == {"text": "throw", "kind": "recent"}  # the hiker's search
    first = mine["suggestions"][1]
    assert "zenit" in first.get("brand", []), mine["suggestions"]
    assert first["why"]["attributes"]["brand"]["value"] == "zenit", first["why"]
    assert all(x["score"] > 0 for x in generic["suggestions"])
    # the engine's personalized scores are the reference scorer's, from the generic ones
    p = Personalizer(opensearch, s)
    boost = replace(p.boost(None), rules=())
    user = p.user_affinity("hiker", boost)
    plain = _suggest(proxy, s, "th", "hiker", X_Personalization="off", size="50").json()
    hits = [
        reference.hit_from_source(x["id"], x["score"], x, list(boost.attributes))
        for x in plain["suggestions"]
    ]
    want = {h.id: h.final for h in reference.score(hits, user, boost)}
    mine_all = _suggest(proxy, s, "th", "hiker", size="50").json()["suggestions"]
    got = {x["id"]: x["score"] for x in mine_all if x["kind"] != "recent"}
    recent = {x["text"] for x in mine_all if x["kind"] == "recent"}  # shown once, as recent
    want = {x["id"]: want[x["id"]] for x in plain["suggestions"] if x["text"] not in recent}
    assert got.keys() == want.keys()
    for key, score in got.items():
        assert close(score, want[key]), (key, score, want[key])


def test_recent_searches_come_first_for_short_prefixes_and_go_with_the_user(
    proxy: str, shop: tuple[config.Settings, str], opensearch: OpenSearch
) -> None:
    s, _ = shop
    short = _suggest(proxy, s, "th", "u4").json()
    assert [x["text"] for x in short["suggestions"][:2]] == ["Thermal Jacket", "the north face"]
    assert {x["kind"] for x in short["suggestions"][:2]} == {"recent"}
    assert short["personalization"]["recent"] == 2
    empty = _suggest(proxy, s, "", "u4").json()
    assert [x["kind"] for x in empty["suggestions"]] == ["recent", "recent"]
    longer = _suggest(proxy, s, "the", "u4").json()
    assert "recent" not in {x["kind"] for x in longer["suggestions"]}
    off = _suggest(proxy, s, "th", "u4", X_Personalization="off").json()
    assert "recent" not in {x["kind"] for x in off["suggestions"]}
    assert _suggest(proxy, s, "", None).json()["suggestions"] == []
    pseudonym = privacy.pseudonymize("u4", config.user_secret(s))
    Pipeline(opensearch, s, load_boost_profiles("profiles")["default"]).erase(pseudonym)
    opensearch.indices.refresh(index=s.indices.impressions)
    gone = _suggest(proxy, s, "th", "u4").json()
    assert "recent" not in {x["kind"] for x in gone["suggestions"]}


def test_an_opted_out_user_gets_no_recent_searches(
    proxy: str, shop: tuple[config.Settings, str], opensearch: OpenSearch
) -> None:
    s, _ = shop
    assert _suggest(proxy, s, "th", "u1").json()["personalization"]["recent"] >= 1
    pseudonym = privacy.pseudonymize("u1", config.user_secret(s))
    Pipeline(opensearch, s, load_boost_profiles("profiles")["default"]).opt_out(pseudonym)
    opted = _suggest(proxy, s, "th", "u1").json()
    assert opted["personalization"]["recent"] == 0
    assert opted["personalization"]["reason"] == "opt_out"


@pytest.mark.parametrize(
    ("params", "status", "names"),
    [
        ({"q": "t" * 1000}, 400, "q is 1000 characters"),
        ({"q": "th", "size": "0"}, 400, "size must be"),
        ({"q": "th", "size": "many"}, 400, "size must be"),
        ({"q": "a\x00b"}, 400, "control characters"),
        ({"q": "ñ日本語 🎉"}, 200, None),
        ({"q": "   "}, 200, None),
        ({"q": "th", "index": ""}, 400, "index is required"),
        ({"q": "th", "index": "nosuchcatalog"}, 404, "affinity suggestions build"),
        ({"q": "th", "index": "a,b"}, 400, "one catalog"),
        ({"q": "th", "index": "_all"}, 403, None),
    ],
)
def test_bad_input_is_a_400_or_nothing_never_a_5xx(
    proxy: str, shop: tuple[config.Settings, str], params: dict, status: int, names: str | None
) -> None:
    s, _ = shop
    full = {"index": s.indices.catalog, **params}
    r = httpx.get(f"{proxy}/_affinity/suggest", params=full, headers={"X-User-Id": "u2"})
    assert r.status_code == status, r.text
    if names:
        assert names in r.text
    if status == 200:
        assert isinstance(r.json()["suggestions"], list)


def test_the_deny_list_is_checked_with_line_numbers(
    shop: tuple[config.Settings, str], tmp_path: Path
) -> None:
    s, _ = shop
    bad = tmp_path / "deny.yaml"
    bad.write_text("deny:\n  - casino\n  - [nested]\nallow: []\n")
    result = _cli(s, ["suggestions", "build", "--deny-list", str(bad)])
    assert result.exit_code == 2
    assert f"{bad}:3:5: deny[1]:" in result.output and f"{bad}:4:1:" in result.output
