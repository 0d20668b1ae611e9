"""The proxy's engine client: what it asks of OpenSearch, and how failures come back."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rewriter.engine_http import EngineDown, EngineHTTP


@pytest.fixture()
def stub() -> Iterator[tuple[str, list[dict[str, str]]]]:
    seen: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append({k.lower(): v for k, v in self.headers.items()})
            body = b'{"ok": true}'
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_responses_are_not_asked_to_be_compressed(stub: tuple[str, list[dict[str, str]]]) -> None:
    """OpenSearch gzips a response when asked; the proxy would only inflate it again."""
    url, seen = stub

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
