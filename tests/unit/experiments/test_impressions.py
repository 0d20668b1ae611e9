"""Impression documents and the background writer (with an in-memory client)."""

from __future__ import annotations

import json
import threading
import time
from types import SimpleNamespace

from opensearchpy.serializer import JSONSerializer

from rewriter import privacy
from rewriter.experiments import impressions as imp
from rewriter.ranking.resolve import query_text

SECRET = b"k" * 32


class FakeClient:
    """Just enough of OpenSearch for helpers.bulk: records every indexed document."""

    def __init__(self, gate: threading.Event | None = None, fail: bool = False) -> None:
        self.transport = SimpleNamespace(serializer=JSONSerializer())
        self.docs: list[dict] = []
        self.gate = gate
        self.fail = fail

    def bulk(self, body: object, **_: object) -> dict:
        if self.gate is not None:
            self.gate.wait(10)
        if self.fail:
            raise ConnectionError("engine down")
        lines = body if isinstance(body, list) else str(body).splitlines()
        parsed = [json.loads(x) for x in lines if str(x).strip()]
        items = []
        for action, doc in zip(parsed[::2], parsed[1::2], strict=True):
            self.docs.append(doc)
            items.append({"index": {"_id": action["index"]["_id"], "status": 201}})
        return {"errors": False, "items": items}


def test_logged_query_is_what_the_user_typed() -> None:
    assert imp.logged_query({"query": {"match": {"title": "red shoe"}}}) == "red shoe"
    assert imp.logged_query({"query": {"match": {"title": {"query": "hat"}}}}) == "hat"
    nested = {
        "query": {
            "bool": {
                "filter": [{"range": {"price": {"lt": 3}}}],
                "must": [{"multi_match": {"query": "jacket", "fields": ["t"]}}],
            }
        }
    }
    assert imp.logged_query(nested) == "jacket"
    # a term filter is not search text: the rules do not match it, so it is not logged
    assert imp.logged_query({"query": {"term": {"category": "Comedy"}}}) is None
    assert imp.logged_query({"query": {"match_all": {}}}) is None
    assert imp.logged_query({}) is None
    assert len(imp.logged_query({"query": {"match": {"t": "x" * 999}}}) or "") == 256


def test_impressions_log_the_text_the_rules_matched() -> None:
    """Impressions once logged only the first full-text query while the rules matched all of
    them joined: a report grouped by query then disagreed with the rules that fired."""
    body = {
        "query": {
            "bool": {
                "must": [{"match": {"title": "red"}}],
                "should": [{"multi_match": {"query": "running shoes", "fields": ["t"]}}],
            }
        }
    }
    assert imp.logged_query(body) == query_text(body["query"]) == "red running shoes"


def test_impression_doc_has_positions_variant_and_pseudonym_only() -> None:
    response = {"hits": {"total": {"value": 42}, "hits": [{"_id": "a"}, {"_id": "b"}]}}
    plog = {
        "experiment": "e",
        "variant": "v",
        "applied": True,
        "mode": "affinity",
        "boost_profile": {"name": "default", "version": "x"},
    }
    doc = imp.impression_doc("q1", "pseudo", "shop", {"from": 10}, response, plog, 5.0)
    assert doc["items"] == [{"id": "a", "position": 11}, {"id": "b", "position": 12}]
    assert doc["item_ids"] == ["a", "b"] and doc["total_hits"] == 42
    assert (doc["experiment"], doc["variant"], doc["boost_profile"]) == ("e", "v", "default")
    assert doc["user_id"] == "pseudo" and doc["timestamp"] == 5.0


def test_impression_doc_takes_any_from_the_engine_accepted() -> None:
    """Found by the proxy fuzzer: the engine answered `"from": "NaN"` (as 0), and building
    the impression raised, so the search's impression was lost."""
    response = {"hits": {"hits": [{"_id": "a"}, "not a hit"], "total": 1}}
    for given, first in (("NaN", 1), ("20", 21), (5.0, 6), (None, 1), ({"a": 1}, 1)):
        doc = imp.impression_doc("q", None, "shop", {"from": given}, response, {}, 1.0)
        assert doc["items"] == [{"id": "a", "position": first}], given
    assert imp.impression_doc("q", None, "shop", {}, {"hits": None}, {}, 1.0)["items"] == []


def test_writer_pseudonymizes_and_writes_in_the_background() -> None:
    client = FakeClient()
    writer = imp.ImpressionWriter(lambda: client, "impr", SECRET, linger_s=0.01)
    response = {"hits": {"hits": [{"_id": "1"}]}}
    for n in range(5):
        plog = {"query_id": f"q{n}", "experiment": None, "variant": None}
        writer.record_search("alice", "shop", {"query": {"match": {"t": "x"}}}, response, plog)
    writer.record_search("alice", "shop", {}, response, {})  # no query id: nothing to log
    assert writer.flush(5)
    assert writer.written == 5 and len(client.docs) == 5
    assert {d["user_id"] for d in client.docs} == {privacy.pseudonymize("alice", SECRET)}
    assert "alice" not in json.dumps(client.docs)
    writer.close()


def test_a_full_queue_drops_instead_of_blocking_the_search() -> None:
    gate = threading.Event()
    client = FakeClient(gate=gate)
    writer = imp.ImpressionWriter(lambda: client, "impr", SECRET, max_pending=3, linger_s=0.0)
    t0 = time.monotonic()
    results = [writer.record({"query_id": f"q{n}"}) for n in range(50)]
    assert time.monotonic() - t0 < 0.5
    assert results.count(False) == writer.dropped and writer.dropped >= 40
    gate.set()
    assert writer.flush(5)
    assert writer.written == len(client.docs) == results.count(True)
    writer.close()


def test_engine_errors_are_counted_not_raised() -> None:
    writer = imp.ImpressionWriter(lambda: FakeClient(fail=True), "impr", SECRET, linger_s=0.0)
    writer.record({"query_id": "q"})
    assert writer.flush(5)
    assert writer.failed == 1 and writer.written == 0
    writer.close()


def test_impressions_can_be_turned_off(tmp_path: object, caplog: object) -> None:
    """AFFINITY_IMPRESSIONS=off: the proxy gets no writer, and a running experiment is
    warned about, since its report would have no clicks."""
    import logging
    from pathlib import Path

    from rewriter import config
    from rewriter.serve.app import create_app

    profiles = Path(str(tmp_path))
    (profiles / "default.yaml").write_text("name: default\n")
    env = {"OPENSEARCH_URL": "http://127.0.0.1:9", "AFFINITY_SECRET": "s" * 32}
    on = config.load(env)
    off = config.load({**env, "AFFINITY_IMPRESSIONS": "off"})
    assert (on.impressions, off.impressions) == (True, False)
    assert create_app(on, boost_dir=str(profiles)).state.proxy.impressions is not None
    (profiles / "experiments").mkdir()
    (profiles / "experiments" / "ab.yaml").write_text(
        "name: ab\nindex: catalog\nsalt: s1\nstart: 0\n"
        "variants:\n  generic: {traffic: 50, generic: true}\n  personal: {traffic: 50}\n"
    )
    with caplog.at_level(logging.WARNING, logger="affinity.proxy"):  # type: ignore[attr-defined]
        app = create_app(off, boost_dir=str(profiles))
    assert app.state.proxy.impressions is None
    assert "running experiments (ab)" in caplog.text  # type: ignore[attr-defined]


def test_a_response_in_bytes_is_parsed_by_the_writer_and_a_bad_one_fails_alone() -> None:
    client = FakeClient()
    writer = imp.ImpressionWriter(lambda: client, "impr", SECRET, linger_s=0.01)
    content = b'{"hits": {"total": {"value": 9}, "hits": [{"_id": "7"}, {"_id": "3"}]}}'
    body = {"from": 10, "query": {"match": {"t": "red shoes"}}}
    writer.record_search_later("alice", "shop", body, content, {"query_id": "q1", "mode": "x"})
    writer.record_search_later("alice", "shop", body, b"{not json", {"query_id": "q2"})
    writer.record_search_later("alice", "shop", body, content, {})  # no query id: nothing
    assert writer.flush(5)
    assert writer.written == 1 and writer.failed == 1
    (doc,) = client.docs
    assert doc["query_id"] == "q1" and doc["item_ids"] == ["7", "3"] and doc["total_hits"] == 9
    assert doc["items"][0] == {"id": "7", "position": 11}
    assert doc["user_id"] == privacy.pseudonymize("alice", SECRET)
    writer.close()
