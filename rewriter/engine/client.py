"""The OpenSearch client: a pooled connection with a fast serializer, chunked _mget, and
waiting for cluster health. Bootstrap of templates and scripts is engine/bootstrap.py's.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import orjson
from opensearchpy import OpenSearch
from opensearchpy.exceptions import ConnectionError as OSConnectionError
from opensearchpy.exceptions import SerializationError, TransportError
from opensearchpy.serializer import JSONSerializer

from rewriter.config import Settings


class OrjsonSerializer(JSONSerializer):
    """opensearch-py's JSON (de)serializer on orjson: bulk loads spend most of their Python
    time encoding actions (stdlib json ~10 µs per action, orjson ~1 µs). Same output types;
    anything orjson cannot encode goes through the stdlib serializer."""

    _OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY

    def dumps(self, data: object) -> str:
        if isinstance(data, str | bytes):
            return data if isinstance(data, str) else data.decode("utf-8")
        try:
            return orjson.dumps(data, option=self._OPTIONS).decode("utf-8")
        except TypeError:
            return super().dumps(data)

    def loads(self, s: str) -> object:
        try:
            return orjson.loads(s)
        except orjson.JSONDecodeError as exc:
            raise SerializationError(s, exc) from exc


class EngineUnavailable(RuntimeError):
    """OpenSearch did not answer; the message says where we looked and what to do."""


POOL_SIZE = 8


"""Connections kept open to the cluster; urllib3's default of one made every concurrent
request (the import's two `_bulk` senders, the events writers) open and drop a socket."""


def connect(settings: Settings, timeout: float | None = None) -> OpenSearch:
    """A client for the configured cluster (OPENSEARCH_URL) or the local engine."""
    auth = (settings.user, settings.password) if settings.user else None
    return OpenSearch(
        hosts=[settings.opensearch_url],
        http_auth=auth,
        verify_certs=settings.verify_certs,
        ca_certs=settings.ca_certs,
        ssl_show_warn=False,
        timeout=timeout or settings.timeout,
        http_compress=False,
        serializer=OrjsonSerializer(),
        pool_maxsize=POOL_SIZE,
    )


MGET_CHUNK = 1_000


"""Ids per `_mget` request."""


MGET_ATTEMPTS = 5


MGET_BACKOFF_S = 0.25


"""`_mget` answers a per-document error (no `found`) for ids whose shard is not available, as
while a node restarts and its shards recover. Those ids are read again, up to MGET_ATTEMPTS
times in all, waiting MGET_BACKOFF_S, then twice as long each time (~4 s in all)."""


class DocumentsUnavailable(EngineUnavailable):
    """`_mget` kept answering errors instead of documents: nothing can be decided from them."""


def mget_docs(es: OpenSearch, index: str, ids: Iterable[str], **params: Any) -> Iterator[dict]:
    """The `_mget` response document of every id, found or not (`found` is always there),
    `MGET_CHUNK` per request; `params` go to each request (`_source_includes`, `realtime`).

    A per-document error is not an answer: those ids are read again with back-off, and if
    the errors persist this raises DocumentsUnavailable rather than yield them (a caller
    would read them as "not found": an item not in the catalog, a batch not in the
    journal, a user without a profile)."""
    wanted = list(dict.fromkeys(ids))
    for start in range(0, len(wanted), MGET_CHUNK):
        yield from _mget_chunk(es, index, wanted[start : start + MGET_CHUNK], params)


def _mget_chunk(es: OpenSearch, index: str, ids: list[str], params: dict[str, Any]) -> list[dict]:
    answered: dict[str, dict] = {}
    missing, failed = ids, []
    for attempt in range(MGET_ATTEMPTS):
        if attempt:
            time.sleep(MGET_BACKOFF_S * 2 ** (attempt - 1))
        docs = es.mget(index=index, body={"ids": missing}, **params)["docs"]
        failed = [d for d in docs if "found" not in d]
        answered.update((str(d["_id"]), d) for d in docs if "found" in d)
        if not failed:
            return [answered[i] for i in ids if i in answered]
        missing = [str(d.get("_id")) for d in failed]
    raise DocumentsUnavailable(_unavailable(index, failed, len(ids)))


def _unavailable(index: str, failed: list[dict], asked: int) -> str:
    error = failed[0].get("error")
    reason = (
        f"{error.get('type')}: {error.get('reason')}" if isinstance(error, dict) else str(error)
    )
    return (
        f"OpenSearch could not read {len(failed)} of {asked} documents of {index} after "
        f"{MGET_ATTEMPTS} tries ({reason}); its shards are probably starting or recovering. "
        "Nothing was decided from the missing documents: the operation can be retried once "
        "the cluster is healthy again (GET _cluster/health)."
    )


def _address(es: OpenSearch) -> str:
    """The client's first host as a URL, without the credentials the host entry may hold."""
    if not es.transport.hosts:
        return "?"
    host = es.transport.hosts[0]
    scheme = "https" if host.get("use_ssl") else "http"
    return f"{scheme}://{host.get('host')}:{host.get('port')}{host.get('url_prefix', '')}"


def composite_pages(
    es: OpenSearch, index: str, field: str, page: int, query: dict | None = None, **params: Any
) -> Iterator[list[str]]:
    """Every distinct value of the keyword `field` (among the documents `query` matches),
    `page` at a time, in order (composite aggregation); `params` go to each search."""
    after: dict[str, Any] | None = None
    while True:
        composite: dict[str, Any] = {
            "size": page,
            "sources": [{"key": {"terms": {"field": field}}}],
        }
        if after:
            composite["after"] = after
        body: dict[str, Any] = {"size": 0, "aggs": {"keys": {"composite": composite}}}
        if query is not None:
            body["query"] = query
        agg = es.search(index=index, body=body, **params)["aggregations"]["keys"]
        keys = [b["key"]["key"] for b in agg["buckets"]]
        if keys:
            yield keys
        after = agg.get("after_key")
        if not after or len(keys) < page:
            return


def buckets_by_key(
    es: OpenSearch, index: str, field: str, keys: Sequence[str], aggs: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """For each of `keys` that documents hold in the keyword `field`: its terms bucket with
    the sub-aggregations `aggs` (e.g. each user's newest event)."""
    body = {
        "size": 0,
        "query": {"terms": {field: list(keys)}},
        "aggs": {"keys": {"terms": {"field": field, "size": len(keys)}, "aggs": aggs}},
    }
    buckets = es.search(index=index, body=body)["aggregations"]["keys"]["buckets"]
    return {b["key"]: b for b in buckets}


def wait_for_health(
    es: OpenSearch, status: str = "yellow", timeout: float = 60.0, nodes: int | None = None
) -> dict:
    """Block until the cluster reports at least `status` (and, given `nodes`, that many
    nodes), or raise EngineUnavailable."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    wanted = {"wait_for_status": status}
    if nodes is not None:
        wanted["wait_for_nodes"] = str(nodes)
    while time.monotonic() < deadline:
        try:
            health = es.cluster.health(**wanted, request_timeout=40)
            if not health.get("timed_out"):
                return health
        except (OSConnectionError, TransportError) as exc:
            last = exc
        time.sleep(0.5)
    with_nodes = f" with {nodes} nodes" if nodes is not None else ""
    raise EngineUnavailable(
        f"OpenSearch at {_address(es)} did not reach {status} health{with_nodes} within "
        f"{timeout:.0f} s "
        f"({last or 'timed out'}): start it with `affinity engine start` or check OPENSEARCH_URL."
    )
