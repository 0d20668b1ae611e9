"""The proxy against the real engine: personalization, generic view, refusals, clients."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import replace

import httpx
import orjson
import pytest
from opensearchpy import OpenSearch

from rewriter import config, privacy
from rewriter.events.event import Event
from rewriter.measure.serve_thread import free_port, serve_in_thread
from rewriter.profiles.fold import FoldConfig, fold
from rewriter.serve.app import create_app

ITEMS = {
    "1": {"title": "red running shoe", "brand": "acme", "category": ["shoes", "running"]},
    "2": {"title": "blue running shoe", "brand": "zenit", "category": ["shoes", "running"]},
    "3": {
        "title": "green running shoe",
        "brand": "other",
        "category": ["shoes"],
        "popularity": 99.0,
    },
    "4": {"title": "running jacket", "brand": "acme", "category": ["outerwear"]},
    "5": {"title": "running hat", "brand": "zenit", "category": ["hats"]},
}


@pytest.fixture(scope="module")
def catalog(opensearch: OpenSearch, bootstrapped: config.Settings) -> str:
    index = f"{bootstrapped.indices.prefix}shop"
    opensearch.indices.create(
        index=index,
        body={
            "settings": {"number_of_shards": 1, "number_of_replicas": 0},
            "mappings": {
                "properties": {
                    "title": {"type": "text"},
                    "brand": {"type": "keyword"},
                    "category": {"type": "keyword"},
                }
            },
        },
    )
    for doc_id, doc in ITEMS.items():
        opensearch.index(index=index, id=doc_id, body=doc)
    opensearch.indices.refresh(index=index)
    return index


@pytest.fixture(scope="module")
def zenit_fan(opensearch: OpenSearch, bootstrapped: config.Settings) -> str:
    """A user whose events all touch brand zenit."""
    secret = config.user_secret(bootstrapped)
    pseudonym = privacy.pseudonymize("fan-1", secret)
    now = time.time()
    events = [
        Event(
            event_id=f"e{i}",
            user_id=pseudonym,
            type="purchase",
            item_id="2",
            timestamp=now - 60 * i,
            attributes={"brand": ("zenit",), "category": ("hats",)},
        )
        for i in range(20)
    ]
    doc = fold(None, events, FoldConfig())
    opensearch.index(index=bootstrapped.indices.profiles, id=pseudonym, body=doc, refresh=True)
    return "fan-1"


@pytest.fixture(scope="module")
def proxy_url(bootstrapped: config.Settings) -> Iterator[str]:
    with serve_in_thread(create_app(bootstrapped)) as url:
        yield url


QUERY = {"query": {"match": {"title": "running"}}, "size": 5}


def _ids(response: dict) -> list[str]:
    return [h["_id"] for h in response["hits"]["hits"]]


def test_personalized_ranks_the_users_brand_first(
    proxy_url: str, catalog: str, zenit_fan: str
) -> None:
    r = httpx.post(f"{proxy_url}/{catalog}/_search", json=QUERY, headers={"X-User-Id": zenit_fan})
    assert r.status_code == 200, r.text
    body = r.json()
    info = body["personalization"]
    assert info["applied"] is True and info["alpha_eff"] > 0.5
    assert info["boost_profile"]["name"] == "default"
    top2 = set(_ids(body)[:2])
    assert top2 == {"2", "5"}, _ids(body)  # the zenit items


def test_personalization_off_is_identical_to_direct(
    proxy_url: str, catalog: str, zenit_fan: str, opensearch: OpenSearch
) -> None:
    r = httpx.post(
        f"{proxy_url}/{catalog}/_search",
        json=QUERY,
        headers={"X-User-Id": zenit_fan, "X-Personalization": "off"},
    )
    direct = opensearch.search(index=catalog, body=QUERY)
    proxied = r.json()
    assert proxied["personalization"]["applied"] is False
    assert proxied["personalization"]["reason"] == "personalization_off"
    assert proxied["hits"] == direct["hits"]


def test_explain_gives_a_breakdown_that_adds_up(
    proxy_url: str, catalog: str, zenit_fan: str
) -> None:
    r = httpx.post(
        f"{proxy_url}/{catalog}/_search?explain=true", json=QUERY, headers={"X-User-Id": zenit_fan}
    )
    hits = r.json()["hits"]["hits"]
    top = hits[0]["_affinity"]
    assert top["attributes"]["brand"]["value"] == "zenit"
    for hit in hits:
        part = hit["_affinity"]
        assert part["relevance"] + part["added"] == pytest.approx(hit["_score"], rel=1e-5)


def test_unknown_user_gets_cold_start_popularity(proxy_url: str, catalog: str) -> None:
    r = httpx.post(
        f"{proxy_url}/{catalog}/_search?explain=true",
        json=QUERY,
        headers={"X-User-Id": "nobody-knows-me"},
    )
    assert r.status_code == 200
    body = r.json()
    assert body["personalization"]["mode"] == "popularity"
    hits = body["hits"]["hits"]
    assert hits[0]["_id"] == "3"  # the only item with popularity (log10(1 + 99) = 2 added)
    assert hits[0]["_affinity"]["added"] == pytest.approx(2.0)
    for hit in hits:
        part = hit["_affinity"]
        assert part["relevance"] + part["added"] == pytest.approx(hit["_score"], rel=1e-5)


def test_opensearch_py_works_through_the_proxy(
    proxy_url: str, catalog: str, zenit_fan: str
) -> None:
    client = OpenSearch(hosts=[proxy_url], headers={"X-User-Id": zenit_fan})
    assert client.info()["version"]["number"].startswith("2.19")
    response = client.search(index=catalog, body=QUERY)
    assert response["personalization"]["applied"] is True
    msearch = client.msearch(body=[{"index": catalog}, QUERY, {}, QUERY], index=catalog)
    assert [r["personalization"]["applied"] for r in msearch["responses"]] == [True, True]
    assert client.count(index=catalog)["count"] == len(ITEMS)


def test_helpers_scan_gets_every_document_generic(proxy_url: str, catalog: str) -> None:
    from opensearchpy import helpers

    client = OpenSearch(hosts=[proxy_url])
    ids = sorted(h["_id"] for h in helpers.scan(client, index=catalog, size=2))
    assert ids == sorted(ITEMS)


REFUSED = [
    ("POST", "/_bulk"),
    ("POST", "/{c}/_bulk"),
    ("POST", "/{c}/_delete_by_query"),
    ("POST", "/{c}/_update_by_query"),
    ("DELETE", "/{c}"),
    ("PUT", "/{c}"),
    ("PUT", "/{c}/_mapping"),
    ("PUT", "/{c}/_settings"),
    ("GET", "/{c}/_mapping"),
    ("PUT", "/{c}/_doc/1"),
    ("POST", "/{c}/_doc"),
    ("DELETE", "/{c}/_doc/1"),
    ("GET", "/{c}/_doc/1"),
    ("POST", "/{c}/_update/1"),
    ("PUT", "/_scripts/affinity"),
    ("DELETE", "/_scripts/affinity"),
    ("GET", "/_cat/indices"),
    ("PUT", "/_cluster/settings"),
    ("POST", "/_reindex"),
    ("POST", "/{c}/_close"),
    ("POST", "/_snapshot/x"),
    ("GET", "/_nodes"),
    ("POST", "/{c}/_forcemerge"),
    ("PUT", "/_index_template/x"),
    ("GET", "/{p}/_search"),
    ("GET", "/*/_search"),
    ("GET", "/_all/_search"),
    ("POST", "/{e}/_search"),
]


def test_non_allowlisted_endpoints_are_refused_and_catalog_intact(
    proxy_url: str, catalog: str, opensearch: OpenSearch, bootstrapped: config.Settings
) -> None:
    names = {"c": catalog, "p": bootstrapped.indices.profiles, "e": bootstrapped.indices.events}
    for method, path in REFUSED:
        r = httpx.request(method, proxy_url + path.format(**names), json={})
        assert r.status_code == 403, (method, path, r.status_code, r.text)
        error = r.json()["error"]
        assert error["type"].startswith("affinity_forbidden"), (method, path)
        assert len(error["reason"]) > 30
    assert len(REFUSED) >= 20
    assert opensearch.count(index=catalog)["count"] == len(ITEMS)
    assert opensearch.get_script(id="affinity")["found"]


def test_a_body_cannot_read_private_indices_by_lookup_nor_clear_every_scroll(
    proxy_url: str, catalog: str, zenit_fan: str, bootstrapped: config.Settings
) -> None:
    """A terms lookup reads a document of the index it names: the engine does it for the
    catalog (so the refusal is not of lookups as such), the proxy refuses it for a user's
    profile, in a search, a count and an msearch; more_like_this items likewise. A scroll
    clear of `_all` would end other clients' scrolls: refused, while clearing one's own works."""
    lookup = {"index": catalog, "id": "2", "path": "brand"}
    mine = httpx.post(
        f"{proxy_url}/{catalog}/_search", json={"query": {"terms": {"brand": lookup}}}
    )
    assert mine.status_code == 200 and {h["_id"] for h in mine.json()["hits"]["hits"]} == {
        "2",
        "5",
    }
    pseudonym = privacy.pseudonymize(zenit_fan, config.user_secret(bootstrapped))
    profile = {"index": bootstrapped.indices.profiles, "id": pseudonym, "path": "user_id"}
    stolen = {"query": {"terms": {"brand": profile}}}
    liked = {"query": {"more_like_this": {"like": [{"_index": bootstrapped.indices.events}]}}}
    header = orjson.dumps({"index": catalog})
    tries = [
        ("/_search", stolen),
        ("/_count", stolen),
        ("/_search", liked),
        ("/_msearch", header + b"\n" + orjson.dumps(stolen) + b"\n"),
    ]
    for path, body in tries:
        content = body if isinstance(body, bytes) else orjson.dumps(body)
        r = httpx.post(
            f"{proxy_url}/{catalog}{path}",
            content=content,
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 403, (path, r.text)
        assert "private data" in r.json()["error"]["reason"]
    first = httpx.post(f"{proxy_url}/{catalog}/_search?scroll=1m", json={"size": 1}).json()
    everyone = httpx.request("DELETE", f"{proxy_url}/_search/scroll", json={"scroll_id": "_all"})
    assert everyone.status_code == 403 and "_all" in everyone.json()["error"]["reason"]
    own = httpx.request(
        "DELETE", f"{proxy_url}/_search/scroll", json={"scroll_id": first["_scroll_id"]}
    )
    assert own.status_code == 200 and own.json()["succeeded"] is True


def test_engine_errors_keep_status_and_body(
    proxy_url: str, catalog: str, opensearch: OpenSearch
) -> None:
    bad = {"query": {"no_such_query": {}}}
    r = httpx.post(f"{proxy_url}/{catalog}/_search", json=bad)
    direct = opensearch.transport.perform_request(
        "POST", f"/{catalog}/_search", body=bad, params={"ignore": 400}
    )
    assert r.status_code == 400
    assert r.json()["error"]["type"] == direct["error"]["type"]
    missing = httpx.post(f"{proxy_url}/no-such-index/_search", json=QUERY)
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "index_not_found_exception"


def test_engine_down_is_a_fast_503(bootstrapped: config.Settings, catalog: str) -> None:
    dead = replace(bootstrapped, url=f"http://127.0.0.1:{free_port()}", timeout=2.0)
    app = create_app(dead)
    transport = httpx.ASGITransport(app=app)

    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=transport, base_url="http://proxy") as c:
            return await c.post(f"/{catalog}/_search", json=QUERY, headers={"X-User-Id": "u"})

    import asyncio

    t0 = time.monotonic()
    r = asyncio.run(go())
    assert r.status_code == 503
    assert r.json()["error"]["type"] == "affinity_engine_unavailable"
    assert time.monotonic() - t0 < 5


def test_engine_that_never_answers_is_a_504_within_the_timeout(
    bootstrapped: config.Settings, catalog: str
) -> None:
    """A socket that accepts and stays silent: the proxy gives up after AFFINITY_TIMEOUT."""
    import asyncio

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    port = silent.getsockname()[1]
    try:
        slow = replace(bootstrapped, url=f"http://127.0.0.1:{port}", timeout=1.5)
        app = create_app(slow)

        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://proxy") as c:
                return await c.post(f"/{catalog}/_search", json=QUERY)

        t0 = time.monotonic()
        r = asyncio.run(go())
        elapsed = time.monotonic() - t0
    finally:
        silent.close()
    assert r.status_code == 504, r.text
    assert r.json()["error"]["type"] == "affinity_engine_timeout"
    assert 1.0 < elapsed < 5


def test_in_process_api_matches_the_proxy(
    proxy_url: str,
    catalog: str,
    zenit_fan: str,
    opensearch: OpenSearch,
    bootstrapped: config.Settings,
) -> None:
    from rewriter.api import Personalizer  # the path the README documents

    p = Personalizer(opensearch, bootstrapped)
    result = p.rewrite(catalog, QUERY, zenit_fan)
    assert result.log["applied"] is True
    assert "rescore" in result.body and "rescore" not in QUERY  # the app's body is untouched
    direct = opensearch.search(index=catalog, body=result.body)
    proxied = httpx.post(
        f"{proxy_url}/{catalog}/_search", json=QUERY, headers={"X-User-Id": zenit_fan}
    ).json()
    assert _ids(direct) == _ids(proxied)


def test_recovers_without_restart_when_the_engine_comes_back(
    bootstrapped: config.Settings, json_stub: Callable[[bytes, int], object]
) -> None:
    """503 while nothing listens; the same app answers once a server is there again.
    (The upstream here is a stub: what is under test is the proxy's connection handling.)"""
    import asyncio

    port = free_port()
    app = create_app(replace(bootstrapped, url=f"http://127.0.0.1:{port}", timeout=2.0))

    async def scenario() -> tuple[int, int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://proxy") as c:
            down = (await c.get("/")).status_code
            json_stub(b'{"version": {"number": "2.19.6"}}', port)
            up = (await c.get("/")).status_code
            return down, up

    assert asyncio.run(scenario()) == (503, 200)
