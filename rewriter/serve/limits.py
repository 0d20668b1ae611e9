"""Limits on what a client may send the proxy, so that no request can exhaust it or the
engine: body sizes (a 12 MB match query took a 1 GB OpenSearch node to 90 % of its heap, two
at once ran it out of memory) and JSON nesting (deeper than the rewrite, Python's recursion
and orjson's encoder can follow). Each limit is a 4xx naming what was too large.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from rewriter.serve.errors import ProxyError

MAX_SEARCH_BODY_BYTES = 1024 * 1024
"""A `_search` or `_count` body, and each body line of an `_msearch`: 1 MiB holds a terms
filter of tens of thousands of ids; larger bodies are refused with 413."""

MAX_MSEARCH_BODY_BYTES = 8 * 1024 * 1024
"""A whole `_msearch` request."""

MAX_MSEARCH_SEARCHES = 100
"""Searches in one `_msearch`: each is personalized (a profile read) and then run; 2,000 at
once kept the engine busy past AFFINITY_TIMEOUT (a 504 any client could cause)."""

MAX_REQUEST_LINE_BYTES = 4000
"""The request line the proxy sends the engine (method, path, URL parameters). OpenSearch
answers one over 4096 bytes with an HTTP/1.0 400 that the proxy's connection pool did not
read (a 503); longer is a 414 here."""

MAX_JSON_DEPTH = 100
"""How deep a search body, msearch line, X-User-Context or event may nest objects and arrays.
OpenSearch refuses bool queries nested deeper than 20 by default; the proxy's rewrite wraps
the query in a few more levels, and orjson's encoder stops at 255."""


async def read_body(request: Request, limit: int, what: str) -> bytes:
    """The request body, or a 413 naming `what` once it is over `limit` bytes (checked on
    Content-Length first, then while reading, for chunked bodies)."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise _too_large(what, f"{int(length)} bytes", limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(what, f"over {limit} bytes", limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(what: str, size: str, limit: int) -> ProxyError:
    return ProxyError(
        413,
        "affinity_body_too_large",
        f"{what} is {size}; the proxy's limit is {limit} bytes ({limit // 1024} KiB): send a "
        "smaller query (e.g. fewer ids in a terms filter, shorter query text)",
    )


def json_depth(value: Any, stop_at: int = MAX_JSON_DEPTH + 1) -> int:
    """How many objects and arrays deep `value` nests (a scalar: 0), counted without
    recursion; stops counting at `stop_at`."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        depth += 1
        deepest = max(deepest, depth)
        if deepest >= stop_at:
            return deepest
        stack.extend((child, depth) for child in children)
    return deepest


def check_depth(value: Any, what: str, kind: str = "parse_exception") -> None:
    """A 400 of type `kind` when `value` nests deeper than MAX_JSON_DEPTH."""
    if json_depth(value) > MAX_JSON_DEPTH:
        raise ProxyError(
            400,
            kind,
            f"{what} nests objects and arrays more than {MAX_JSON_DEPTH} levels deep, the "
            "proxy's limit: flatten it",
        )
