"""The OpenSearch client: a pooled connection with a fast serializer, chunked _mget, and
waiting for cluster health. Bootstrap of templates and scripts is engine/bootstrap.py's.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
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


def mget_docs(es: OpenSearch, index: str, ids: Iterable[str], **params: Any) -> Iterator[dict]:
    """The `_mget` response document of every id (found or not), `MGET_CHUNK` per request;
    `params` go to each request (`_source_includes`, `realtime`, ...)."""
    wanted = list(dict.fromkeys(ids))
    for start in range(0, len(wanted), MGET_CHUNK):
        chunk = wanted[start : start + MGET_CHUNK]
        yield from es.mget(index=index, body={"ids": chunk}, **params)["docs"]


def _address(es: OpenSearch) -> str:
    """The client's first host as a URL, without the credentials the host entry may hold."""
    if not es.transport.hosts:
        return "?"
    host = es.transport.hosts[0]
    scheme = "https" if host.get("use_ssl") else "http"
    return f"{scheme}://{host.get('host')}:{host.get('port')}{host.get('url_prefix', '')}"


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
