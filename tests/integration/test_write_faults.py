"""The write path against the real engine when something is wrong: shards that are not
available (an engine restart under traffic), events the engine refuses, profiles that cannot
be folded, attributes a client tries to write. One bad item never fails its neighbours, and
nothing is decided from an answer the engine did not give."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import httpx
import pytest
from opensearchpy import OpenSearch
from own_indices import own_shop

from rewriter import config, privacy
from rewriter.engine import client
from rewriter.engine.client import EngineUnavailable
from rewriter.events.event import Event, validate
from rewriter.ingest import user_ops
from rewriter.ingest.event_files import fold_boost
from rewriter.ingest.pipeline import Pipeline, catalog_attributes
from rewriter.measure.serve_thread import serve_in_thread
from rewriter.profiles import writer
from rewriter.serve.app import create_app

TYPES = ("view", "click", "add_to_cart", "purchase")
BRANDS = ("acme", "zenit", "nova")


@pytest.fixture(scope="module")
def wf(opensearch: OpenSearch, bootstrapped: config.Settings) -> config.Settings:
    """Settings with this module's own indices and a 10-item catalog (i0..i9)."""
    items = (
        {
            "id": f"i{n}",
            "title": f"item {n} running",
            "brand": BRANDS[n % len(BRANDS)],
            "category": ["shoes" if n % 2 else "hats"],
        }
        for n in range(10)
    )
    s = own_shop(opensearch, bootstrapped, "wf-", items)
    return s


@pytest.fixture(scope="module")
def server(wf: config.Settings) -> Iterator[str]:
    """The proxy app (search and POST /events) under uvicorn, so its lifespan runs."""
    with serve_in_thread(create_app(wf)) as url:
        yield url


@pytest.fixture()
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reads of unavailable shards are retried with back-off; the tests need not wait."""
    monkeypatch.setattr(client, "MGET_BACKOFF_S", 0.01, raising=False)


@contextmanager
def unavailable(es: OpenSearch, alias: str, partly: bool = False) -> Iterator[None]:
    """Point `alias` at an index whose only shard can never be allocated, as while a node
    restarts and its shards recover: `_mget` answers a per-document
    `no_shard_available_action_exception` for every id. `partly`: an index of two shards, one
    of which cannot be allocated (searches answer from the other, and say so only in
    `_shards`). The alias moves back afterwards."""
    real = list(es.indices.get_alias(name=alias))
    stand_in = f"{alias}-recovering-{uuid.uuid4().hex[:6]}"
    settings: dict[str, Any] = {"number_of_shards": 1, "number_of_replicas": 0}
    if partly:  # one node: the second shard has nowhere to go
        settings.update(number_of_shards=2, **{"index.routing.allocation.total_shards_per_node": 1})
    else:
        settings["index.routing.allocation.require._name"] = "no-such-node"
    es.indices.create(index=stand_in, body={"settings": settings}, wait_for_active_shards=0)
    while partly and es.cluster.health(index=stand_in)["active_primary_shards"] < 1:
        time.sleep(0.05)  # the shard that can start has started
    away = [{"remove": {"index": r, "alias": alias}} for r in real]
    to = {"add": {"index": stand_in, "alias": alias}}
    es.indices.update_aliases(body={"actions": [*away, to]})
    try:
        yield
    finally:
        back = [{"add": {"index": r, "alias": alias}} for r in real]
        es.indices.update_aliases(
            body={"actions": [{"remove": {"index": stand_in, "alias": alias}}, *back]}
        )
        es.indices.delete(index=stand_in)


def _pseudo(s: config.Settings, user: str) -> str:
    return privacy.pseudonymize(user, config.user_secret(s))


def _raw(user: str, n: int, **extra: Any) -> dict[str, Any]:
    base = {
        "event_id": f"{user}-{n}",
        "user_id": user,
        "type": "purchase",
        "item_id": "i1",
        "timestamp": time.time(),
    }
    return {**base, **extra}


def _event(user: str, n: int, **extra: Any) -> Event:
    event = validate(_raw(user, n, **extra), TYPES)
    assert isinstance(event, Event), event
    return event


def _logged(es: OpenSearch, s: config.Settings, user: str) -> list[dict[str, Any]]:
    return list(user_ops.scan_events(es, s, [_pseudo(s, user)]))


# --------------------------------------------------------------------------- 1: restarts
def test_a_recovering_catalog_is_not_read_as_items_missing_from_it(
    wf: config.Settings, opensearch: OpenSearch, quick_retries: None
) -> None:
    """While the catalog's shard recovers, `_mget` answers errors, not "not found": the batch
    fails retryably and stores nothing, and nothing is cached, so the same events sent again
    once the shard is back are enriched and folded like any others."""
    pipeline = Pipeline(opensearch, wf, fold_boost(wf))
    events = [_event("restart-1", n, item_id=f"i{n}") for n in (1, 2)]
    with unavailable(opensearch, wf.indices.catalog), pytest.raises(EngineUnavailable) as err:
        pipeline.write(events)
    assert "no_shard_available_action_exception" in str(err.value)
    assert _logged(opensearch, wf, "restart-1") == []
    result = pipeline.ingest(events)  # the same pipeline: no "not in the catalog" was cached
    assert (result.accepted, result.unknown_items, result.notes) == (2, set(), [])
    logged = _logged(opensearch, wf, "restart-1")
    assert {d["known_item"] for d in logged} == {True}
    profile = user_ops.read_profile(opensearch, wf, _pseudo(wf, "restart-1"))
    assert profile is not None and set(profile["affinities"]["brand"]) == {"zenit", "nova"}


def test_post_events_during_a_catalog_recovery_answers_503_not_unknown_items(
    wf: config.Settings, opensearch: OpenSearch, server: str, quick_retries: None
) -> None:
    with httpx.Client(base_url=server, timeout=30) as c:
        with unavailable(opensearch, wf.indices.catalog):
            during = c.post("/events", json=[_raw("restart-2", 1, item_id="i4")])
        assert during.status_code == 503, during.text
        assert "send the same request again" in during.json()["error"]["reason"]
        after = c.post("/events?wait_for_profiles=true", json=[_raw("restart-2", 1, item_id="i4")])
    assert after.status_code == 202, after.text
    assert (after.json()["accepted"], after.json()["notes"]) == (1, [])
    profile = user_ops.read_profile(opensearch, wf, _pseudo(wf, "restart-2"))
    assert profile is not None and set(profile["affinities"]["brand"]) == {BRANDS[4 % 3]}


def test_opted_out_users_are_not_looked_up_in_part_of_the_profiles(
    wf: config.Settings, opensearch: OpenSearch
) -> None:
    """A search over a profiles index with a shard not yet recovered answers from the others
    and says so only in `_shards`: an opted-out user's tombstone there would be missed and
    their events stored. The batch fails retryably instead."""
    pipeline = Pipeline(opensearch, wf, fold_boost(wf))
    recovering = unavailable(opensearch, wf.indices.profiles, partly=True)
    with recovering, pytest.raises(EngineUnavailable) as err:
        pipeline.write([_event("half-visible", 1)])
    assert "1 of 2 shards" in str(err.value)
    assert _logged(opensearch, wf, "half-visible") == []


@pytest.mark.parametrize("reader", ["journal_states", "read_profiles", "catalog_attributes"])
def test_every_realtime_read_fails_instead_of_reading_errors_as_absent(
    wf: config.Settings, opensearch: OpenSearch, quick_retries: None, reader: str
) -> None:
    """A journal entry read as absent counts its batch as done (a recovery could then fold it
    twice); a profile read as absent is created anew; a catalog item read as absent rebuilds
    a profile without its attributes."""
    es, ix = opensearch, wf.indices
    reads = {
        "journal_states": (ix.journal, lambda: writer.journal_states(es, ix.journal, ["b"])),
        "read_profiles": (ix.profiles, lambda: writer.read_profiles(es, ix.profiles, ["u"])),
        "catalog_attributes": (
            ix.catalog,
            lambda: catalog_attributes(es, ix.catalog, ["i1"], ["brand"]),
        ),
    }
    alias, read = reads[reader]
    with unavailable(opensearch, alias), pytest.raises(EngineUnavailable):
        read()


# --------------------------------------------------------------------------- 2: bad members
def test_events_the_engine_would_refuse_are_rejected_alone_by_field(
    wf: config.Settings, opensearch: OpenSearch, server: str
) -> None:
    """An id of 300 × "é" (600 bytes), a position or a quantity of 1e20: each is rejected
    with its field, and the good events of the request are stored."""
    body = [
        _raw("one-bad", 1),
        _raw("one-bad", 2, event_id="é" * 300),
        _raw("one-bad", 3),
        _raw("one-bad", 4, position=1e20),
        _raw("one-bad", 5, quantity=1e20),
    ]
    r = httpx.post(f"{server}/events", json=body, timeout=30)
    assert r.status_code == 202, r.text
    out = r.json()
    assert (out["accepted"], out["rejected"]) == (2, 3)
    fields = {(x["index"], x["field"]) for x in out["rejections"]}
    assert fields == {(1, "event_id"), (3, "position"), (4, "quantity")}
    assert len(_logged(opensearch, wf, "one-bad")) == 2


def _unchecked(user: str, n: int, **fields: Any) -> Event:
    """An event as validation would not let it through (the pipeline's own defences)."""
    return replace(_event(user, n), **fields)


def test_a_document_the_engine_refuses_is_rejected_alone(
    wf: config.Settings, opensearch: OpenSearch
) -> None:
    """Past validation, the pipeline still never fails a batch for one member: a doc id the
    engine refuses (the whole `_bulk` is refused for it), a number JSON cannot carry, a number
    out of its field's range: each event is rejected with the reason, the rest are stored."""
    pipeline = Pipeline(opensearch, wf, fold_boost(wf))
    long_id = "é" * 300
    events = [
        _event("refused", 1),
        _unchecked("refused", 2, event_id=long_id),
        _unchecked("refused", 3, position=10**20),
        _unchecked("refused", 4, quantity=3_000_000_000),
        _event("refused", 5),
    ]
    result = pipeline.ingest(events)
    assert (result.accepted, result.folded) == (2, 2)
    assert result.outcomes == {
        "refused-1": "accepted",
        long_id: "rejected",
        "refused-3": "rejected",
        "refused-4": "rejected",
        "refused-5": "accepted",
    }
    why = dict(result.refused)
    assert "no longer than 512 bytes" in why[long_id]
    assert "64-bit" in why["refused-3"]
    assert "quantity" in why["refused-4"] and "out of range" in why["refused-4"]
    assert len(_logged(opensearch, wf, "refused")) == 2


def test_a_bad_event_never_fails_the_requests_it_shares_a_write_with(
    wf: config.Settings, opensearch: OpenSearch
) -> None:
    """Two requests group-committed into one `_bulk`: the one with an unwritable event gets
    that event rejected, the other is stored whole; neither is failed."""
    from rewriter.ingest.group_commit import GroupCommitter

    boost = fold_boost(wf)
    committer = GroupCommitter(
        lambda: Pipeline(opensearch, wf, boost), writers=1, linger_s=0.5, recover_every_s=3600
    )
    committer.start()
    try:
        bad = committer.submit(
            [_unchecked("neighbour-a", 1, position=10**20), _event("neighbour-a", 2)]
        )
        good = committer.submit([_event("neighbour-b", 1), _event("neighbour-b", 2)])
        results = bad.result(30), good.result(30)
    finally:
        committer.stop()
    assert committer.batches == 1  # they did share one write
    assert results[0].outcomes == ["rejected", "accepted"]
    assert results[1].outcomes == ["accepted", "accepted"]
    assert "64-bit" in results[0].reasons["neighbour-a-1"]


# --------------------------------------------------------------------------- 3: bad profiles
SEARCH = {"query": {"match": {"title": "running"}}, "size": 5}


def _search(url: str, s: config.Settings, user: str, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{url}/{s.indices.catalog}/_search",
        json=SEARCH,
        headers={"X-User-Id": user, **headers},
        timeout=30,
    )


def _poison(es: OpenSearch, s: config.Settings, user: str) -> str:
    """The user's profile and log as they were stored before purchases were bounded: a
    purchase of value 1e308 × quantity 10 in the log, and a profile whose lifetime value was
    inf, which JSON stores as null. Returns the pseudonym."""
    pseudo = _pseudo(s, user)
    Pipeline(es, s, fold_boost(s)).ingest([_event(user, 1)])
    huge = {
        **_event(user, 0).with_user(pseudo).to_doc(),
        "value": 1e308,
        "quantity": 10,
        "attributes": {"brand": [BRANDS[1]], "category": ["shoes"]},
        "known_item": True,
        "batch_id": "before-bounds",
        "ingested_at": time.time(),
    }
    es.index(index=s.indices.events, id=huge["event_id"], body=huge)
    poisoned = {"counters": {"lifetime_value": None}}
    es.update(index=s.indices.profiles, id=pseudo, body={"doc": poisoned}, refresh=True)
    return pseudo


def test_a_purchase_too_large_is_rejected_at_the_edge(
    wf: config.Settings, opensearch: OpenSearch, server: str
) -> None:
    body = [
        _raw("big-spender", 1, value=1e308, quantity=10),
        _raw("big-neighbour", 1, value=20.0, quantity=10),
    ]
    r = httpx.post(f"{server}/events?wait_for_profiles=true", json=body, timeout=30)
    assert r.status_code == 202, r.text
    assert r.json()["accepted"] == 1
    assert [(x["index"], x["field"]) for x in r.json()["rejections"]] == [(0, "value")]
    profile = user_ops.read_profile(opensearch, wf, _pseudo(wf, "big-neighbour"))
    assert profile is not None and profile["counters"]["lifetime_value"] == 200.0
    assert _search(server, wf, "big-spender").status_code == 200


def test_a_profile_that_cannot_be_folded_is_quarantined_and_its_batch_goes_on(
    wf: config.Settings, opensearch: OpenSearch, caplog: pytest.LogCaptureFixture
) -> None:
    """The poisoned user's new events stay in the log (a rebuild takes them), the other
    user of the batch is folded, the batch is done (recovery does not retry it forever),
    and the log says which profile, what is wrong with it and what to run."""
    pseudo = _poison(opensearch, wf, "poisoned-1")
    pipeline = Pipeline(opensearch, wf, fold_boost(wf))
    with caplog.at_level("ERROR", logger="affinity.profiles"):
        result = pipeline.ingest([_event("poisoned-1", 2), _event("healthy-1", 1)])
    assert (result.accepted, result.folded) == (2, 1)
    healthy = user_ops.read_profile(opensearch, wf, _pseudo(wf, "healthy-1"))
    assert healthy is not None and healthy["counters"]["events"] == 1
    [line] = [r.getMessage() for r in caplog.records if pseudo in r.getMessage()]
    assert "lifetime_value" in line and f"affinity profile rebuild --pseudonym {pseudo}" in line
    assert pseudo in pipeline.profiles.quarantined
    assert pipeline.recover(min_age_s=0) == 0


def test_a_search_for_a_user_whose_profile_is_unreadable_is_served_generic(
    wf: config.Settings, opensearch: OpenSearch, server: str
) -> None:
    _poison(opensearch, wf, "poisoned-2")
    r = _search(server, wf, "poisoned-2")
    assert r.status_code == 200, r.text
    info = r.json()["personalization"]
    assert (info["applied"], info["reason"]) == (False, "profile_unreadable")
    # The module's server flushes popularity into the catalog in the background: an update
    # between the two searches changes BM25's statistics, so the pair is taken again (a
    # personalized answer would differ every time)
    for _ in range(5):
        served = _search(server, wf, "poisoned-2").json()["hits"]
        generic = _search(server, wf, "poisoned-2", **{"X-Personalization": "off"}).json()
        if served == generic["hits"]:
            break
        time.sleep(1.0)
    assert served == generic["hits"]


def test_a_rebuild_repairs_an_unreadable_profile(
    wf: config.Settings, opensearch: OpenSearch, server: str
) -> None:
    """`affinity profile rebuild` folds the log again, the purchase of 1e308 × 10 included
    (read with its numbers bounded): the profile is finite and personalizes again."""
    from click.testing import CliRunner

    import cli

    pseudo = _poison(opensearch, wf, "poisoned-3")
    env = {
        "OPENSEARCH_URL": wf.opensearch_url,
        "AFFINITY_INDEX_PREFIX": wf.indices.prefix,
        "AFFINITY_SECRET": wf.secret or "",
        "AFFINITY_PROFILES_DIR": str(wf.boost_dir),
    }
    args = ["profile", "rebuild", "--user", "poisoned-3", "--quiet"]
    done = CliRunner().invoke(cli.main, args, env=env, catch_exceptions=False)
    assert done.exit_code == 0, done.output
    profile = user_ops.read_profile(opensearch, wf, pseudo)
    assert profile is not None and profile["counters"]["purchases"] == 2
    spent = profile["counters"]["lifetime_value"]
    assert isinstance(spent, float) and 1e12 < spent < 1e300
    deadline = time.monotonic() + 10  # the proxy caches profiles for 250 ms
    while (info := _search(server, wf, "poisoned-3").json()["personalization"])["mode"] != (
        "affinity"
    ) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert info["mode"] == "affinity", info


# --------------------------------------------------------------------------- 4: attributes
INJECTED = {"brand": ["EvilCorp"], "category": ["INJECTED"]}


def test_clients_cannot_write_attributes_into_profiles(
    wf: config.Settings, opensearch: OpenSearch, server: str
) -> None:
    """Attributes sent with an event are not folded: for an item in the catalog its values
    are used, for one that is not, none (the response says they were ignored)."""
    body = [
        _raw("injector", 1, item_id="ghost-9", attributes=INJECTED),
        _raw("injector", 2, item_id="i2", attributes=INJECTED),
    ]
    r = httpx.post(f"{server}/events?wait_for_profiles=true", json=body, timeout=30)
    assert r.status_code == 202, r.text
    assert r.json()["accepted"] == 2
    profile = user_ops.read_profile(opensearch, wf, _pseudo(wf, "injector"))
    assert profile is not None and profile["counters"]["events"] == 2
    assert profile["affinities"] == {
        "brand": {"nova": pytest.approx(profile["mass"] / 2)},
        "category": {"hats": pytest.approx(profile["mass"] / 2)},
    }
    assert any("attributes sent with it are ignored" in n for n in r.json()["notes"])
    logged = {d["item_id"]: d.get("attributes") for d in _logged(opensearch, wf, "injector")}
    assert logged == {"ghost-9": None, "i2": {"brand": ["nova"], "category": ["hats"]}}


def test_a_rebuild_drops_client_attributes_an_earlier_version_stored(
    wf: config.Settings, opensearch: OpenSearch
) -> None:
    """Events of items not in the catalog that were stored with the client's attributes
    (before attributes came from the catalog only) are rebuilt without them."""
    pseudo = _pseudo(wf, "injected-earlier")
    doc = {
        **_event("injected-earlier", 1, item_id="ghost-10").with_user(pseudo).to_doc(),
        "attributes": INJECTED,
        "known_item": False,
        "batch_id": "before-client-attributes",
        "ingested_at": time.time(),
    }
    opensearch.index(index=wf.indices.events, id=doc["event_id"], body=doc, refresh=True)
    result = user_ops.Rebuilder(opensearch, wf, fold_boost(wf)).run([pseudo])
    assert (result.users, result.errors) == (1, [])
    profile = user_ops.read_profile(opensearch, wf, pseudo)
    assert profile is not None and profile["counters"]["events"] == 1
    assert profile["affinities"] == {}


def test_a_boost_profile_may_allow_client_attributes_for_a_named_source(
    wf: config.Settings, opensearch: OpenSearch
) -> None:
    """`client_attributes: {sources: [segment]}`: a Segment import's product attributes are
    folded for items not in the catalog (and kept by a rebuild); POST /events' are not."""
    from rewriter.boost.profile import ClientAttributes

    boost = replace(fold_boost(wf), client_attributes=ClientAttributes(sources=("segment",)))
    event = _event("trusted-source", 1, item_id="ghost-11", attributes=INJECTED)
    Pipeline(opensearch, wf, boost, source="segment").ingest([event])
    Pipeline(opensearch, wf, boost).ingest(
        [_event("trusted-source", 2, item_id="ghost-12", attributes={"brand": ["Other"]})]
    )
    pseudo = _pseudo(wf, "trusted-source")
    folded = user_ops.read_profile(opensearch, wf, pseudo)
    assert folded is not None and set(folded["affinities"]["brand"]) == {"EvilCorp"}
    user_ops.Rebuilder(opensearch, wf, boost).run([pseudo])
    rebuilt = user_ops.read_profile(opensearch, wf, pseudo)
    assert rebuilt is not None and set(rebuilt["affinities"]["brand"]) == {"EvilCorp"}
    user_ops.Rebuilder(opensearch, wf, fold_boost(wf)).run([pseudo])  # a profile that doesn't
    assert user_ops.read_profile(opensearch, wf, pseudo)["affinities"] == {}  # type: ignore[index]
