"""Impressions: what each search through the proxy showed, logged off the request path.

Every successful search gets a `query_id` (in its `personalization` object) and one
impressions document (doc id = query_id): pseudonymized user, experiment and variant, index,
query text, the shown item ids with their 1-based positions, total hits, whether and how it
was personalized, and the time. Applications send the query_id back with the click, cart and
purchase events the results led to; experiment reports join events to impressions on it.

Off the request path: `record` only appends the document (or the function that makes it
from the response's bytes) to a bounded in-memory queue, without a lock or waking a thread;
one background thread per process drains it with `_bulk` every LINGER_S (at once when
BATCH_DOCS documents wait).
When OpenSearch is slow or down the queue fills, and further impressions are dropped and
counted (`dropped`) rather than slowing searches. Impressions are analytics, not records: a
crash loses what is queued (at most a second or so of searches).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import orjson
from opensearchpy import OpenSearch, helpers

from rewriter import config, privacy
from rewriter.engine.client import connect
from rewriter.ranking.resolve import query_text

log = logging.getLogger("affinity.impressions")

MAX_PENDING = 50_000
BATCH_DOCS = 1_000
LINGER_S = 0.25
MAX_QUERY_CHARS = 256

Doc = dict[str, Any]
Lifespan = Callable[[Any], contextlib.AbstractAsyncContextManager[None]]


# --------------------------------------------------------------------------- documents
def logged_query(body: Mapping[str, Any]) -> str | None:
    """The search text an impression logs: the text the rules matched (every full-text
    query's text, joined: `ranking.resolve.query_text`), cut to MAX_QUERY_CHARS."""
    return query_text(body.get("query"))[:MAX_QUERY_CHARS] or None


def _start(value: object) -> int:
    """The body's `from` as the engine read it: a whole number, or its text ("20"); the
    engine also took "NaN" (as 0), which once lost the search's impression."""
    try:
        number = float(value) if isinstance(value, str | int | float) else 0.0
    except ValueError:
        return 0
    return int(number) if math.isfinite(number) else 0


def impression_doc(
    query_id: str,
    pseudonym: str | None,
    index: str,
    body: Mapping[str, Any],
    response: Mapping[str, Any],
    plog: Mapping[str, Any],
    now: float,
) -> Doc:
    """The impressions document of one search response (positions are 1-based)."""
    start = _start(body.get("from"))
    hits = response.get("hits")
    hits = hits if isinstance(hits, dict) else {}
    ids = [str(h.get("_id")) for h in hits.get("hits") or [] if isinstance(h, dict)]
    total = hits.get("total")
    boost = plog.get("boost_profile") or {}
    return {
        "query_id": query_id,
        "user_id": pseudonym,
        "experiment": plog.get("experiment"),
        "variant": plog.get("variant"),
        "index": index,
        "query": logged_query(body),
        "items": [{"id": item, "position": start + i + 1} for i, item in enumerate(ids)],
        "item_ids": ids,
        "total_hits": total.get("value") if isinstance(total, dict) else total,
        "applied": bool(plog.get("applied")),
        "mode": plog.get("mode"),
        "boost_profile": boost.get("name") if isinstance(boost, dict) else None,
        "timestamp": now,
    }


# --------------------------------------------------------------------------- writer
class ImpressionWriter:
    """A bounded queue of impressions and the thread that bulk-writes them."""

    def __init__(
        self,
        client: Callable[[], OpenSearch],
        index: str,
        secret: bytes,
        max_pending: int = MAX_PENDING,
        batch_docs: int = BATCH_DOCS,
        linger_s: float = LINGER_S,
    ) -> None:
        self._client_factory = client
        self.index = index
        self.secret = secret
        self.batch_docs = batch_docs
        self.linger_s = linger_s
        self.max_pending = max_pending
        self._queue: deque[Doc | Callable[[], Doc]] = deque()
        """Appended by searches without a lock or a wake-up (deque.append is atomic); the
        writer thread drains it every linger_s: no thread switch per search."""
        self._in_flight = 0
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.written = 0
        self.dropped = 0
        self.failed = 0

    @property
    def queued(self) -> int:
        """Impressions waiting to be written (for /_affinity/metrics)."""
        return len(self._queue)

    def record_search(
        self,
        raw_user: str | None,
        index: str,
        body: Mapping[str, Any],
        response: Mapping[str, Any],
        plog: Mapping[str, Any],
    ) -> None:
        """Queue the impression of one search response; never blocks, never raises."""
        query_id = plog.get("query_id")
        if not query_id:
            return
        try:
            pseudonym = privacy.pseudonymize(raw_user, self.secret) if raw_user else None
            doc = impression_doc(str(query_id), pseudonym, index, body, response, plog, time.time())
            self.record(doc)
        except Exception:  # analytics must never break a search
            log.exception("impression of query %s not recorded", query_id)

    def record_search_later(
        self,
        raw_user: str | None,
        index: str,
        body: Mapping[str, Any],
        content: bytes,
        plog: Mapping[str, Any],
    ) -> None:
        """`record_search` for a response still in its bytes (`content`, as answered): the
        parse, the pseudonym and the document are made by the writer thread, off the request
        path. `body` and `plog` must not change afterwards."""
        query_id = plog.get("query_id")
        if not query_id:
            return
        now = time.time()

        def later() -> Doc:
            pseudonym = privacy.pseudonymize(raw_user, self.secret) if raw_user else None
            response = orjson.loads(content)
            return impression_doc(str(query_id), pseudonym, index, body, response, plog, now)

        self.record(later)

    def record(self, doc: Doc | Callable[[], Doc]) -> bool:
        """Queue one document (or a function that makes it, called by the writer thread);
        False (and counted in `dropped`) when the queue is full."""
        self._ensure_started()
        if len(self._queue) >= self.max_pending:
            self.dropped += 1
            if self.dropped in (1, 100) or self.dropped % 10_000 == 0:
                log.warning("impressions queue full: %d dropped so far", self.dropped)
            return False
        self._queue.append(doc)
        return True

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything queued so far is written (or failed); False on timeout."""
        deadline = time.monotonic() + timeout
        while self._busy() and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._busy()

    def _busy(self) -> bool:
        return bool(self._queue) or self._in_flight > 0

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued, then stop the thread."""
        self.flush(timeout)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _ensure_started(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="affinity-impressions", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        es: OpenSearch | None = None
        while not (self._stop.is_set() and not self._queue):
            batch = self._take()
            if not batch:
                continue
            try:
                docs = self._made(batch)
                es = es or self._client_factory()
                self._write(es, docs)
            except Exception as exc:
                self.failed += len(batch)
                log.warning("%d impressions not written: %s", len(batch), exc)
            finally:
                self._in_flight = 0

    def _made(self, batch: list[Doc | Callable[[], Doc]]) -> list[Doc]:
        """The documents of `batch`, made where they were queued as functions; one that
        fails is logged and counted, never its neighbours' loss."""
        docs: list[Doc] = []
        for item in batch:
            if not callable(item):
                docs.append(item)
                continue
            try:
                docs.append(item())
            except Exception:
                self.failed += 1
                log.exception("an impression could not be made from its response")
        return docs

    def _take(self) -> list[Doc | Callable[[], Doc]]:
        """Up to batch_docs queued items, once linger_s has passed (at once when a whole
        batch is waiting, or when stopping)."""
        if len(self._queue) < self.batch_docs and not self._stop.is_set():
            self._stop.wait(max(self.linger_s, 0.005))
        self._in_flight = 1  # before taking: flush() never sees empty and idle in between
        batch: list[Doc | Callable[[], Doc]] = []
        try:
            while len(batch) < self.batch_docs:
                batch.append(self._queue.popleft())
        except IndexError:
            pass
        if not batch:
            self._in_flight = 0
        return batch

    def _write(self, es: OpenSearch, batch: list[Doc]) -> None:
        actions = (
            {"_op_type": "index", "_index": self.index, "_id": d["query_id"], "_source": d}
            for d in batch
        )
        # require_alias: never auto-create a plain index where bootstrap puts the alias
        ok, errors = helpers.bulk(
            es, actions, raise_on_error=False, max_retries=2, require_alias=True
        )
        self.written += ok
        if errors:
            self.failed += len(errors)
            log.warning(
                "%d impressions refused by OpenSearch (is %s bootstrapped? run `affinity "
                "bootstrap`), e.g. %s",
                len(errors),
                self.index,
                errors[0],
            )


def with_impressions(inner: Lifespan) -> Lifespan:
    """An app lifespan that runs `inner`, then drains the proxy's impression writer."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        async with inner(app):
            yield
        writer = getattr(getattr(app.state, "proxy", None), "impressions", None)
        if isinstance(writer, ImpressionWriter):
            await asyncio.to_thread(writer.close)

    return lifespan


def writer_for(settings: config.Settings) -> ImpressionWriter:
    """The proxy's writer: the configured cluster, the impressions alias, the user secret."""
    return ImpressionWriter(
        lambda: connect(settings, timeout=max(settings.timeout, 30.0)),
        settings.indices.impressions,
        config.user_secret(settings),
    )
