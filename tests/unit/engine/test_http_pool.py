"""The proxy's engine client: what it asks of OpenSearch, and how failures come back."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from rewriter.engine.http_pool import EngineDown, EngineHTTP

StubServer = Callable[[bytes, int], tuple[str, list[dict[str, str]]]]  # conftest's json_stub


def test_responses_are_not_asked_to_be_compressed(json_stub: StubServer) -> None:
    """OpenSearch gzips a response when asked; the proxy would only inflate it again."""
    url, seen = json_stub(b'{"ok": true}', 0)

    async def go() -> bytes:
        http = EngineHTTP(url)
        try:
            return (await http.get("/x")).content
        finally:
            await http.close()

    assert asyncio.run(go()) == b'{"ok": true}'
    assert "accept-encoding" not in seen[0] and "user-agent" not in seen[0]


def test_a_closed_port_is_engine_down() -> None:
    async def go() -> None:
        http = EngineHTTP("http://127.0.0.1:9", connect_timeout=1.0)
        try:
            await http.get("/")
        finally:
            await http.close()

    with pytest.raises(EngineDown, match=r"127\.0\.0\.1:9"):
        asyncio.run(go())
