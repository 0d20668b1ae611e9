"""The `query_id` in every log line of a search, so one search can be traced from the
request through the engine to its impression (whose document id is the same query_id).

The search handler sets `QUERY_ID` once the search has one; every log record made in that
request's context gets a `query_id` attribute (`-` outside a search), and `affinity serve`
logs affinity's records as `... [query_id=...] message`.
"""

from __future__ import annotations

import contextvars
import logging
from typing import Any

QUERY_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "affinity_query_id", default=None
)
FORMAT = "%(asctime)s %(levelname)s %(name)s [query_id=%(query_id)s] %(message)s"

_installed = False


def set_query_id(query_id: object) -> None:
    QUERY_ID.set(str(query_id) if query_id else None)


def install_record_factory() -> None:
    """Give every log record a `query_id` attribute (idempotent)."""
    global _installed
    if _installed:
        return
    _installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.query_id = QUERY_ID.get() or "-"
        return record

    logging.setLogRecordFactory(factory)


def install_log_format(level: int = logging.WARNING) -> None:
    """`affinity serve`: affinity's loggers write to stderr with the query_id in each line."""
    install_record_factory()
    logger = logging.getLogger("affinity")
    if any(getattr(h, "affinity_tracing", False) for h in logger.handlers):
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.affinity_tracing = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
