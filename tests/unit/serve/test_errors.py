"""One error shape at the HTTP edge: the search handlers, health and POST /events answer
errors with the same JSON body (OpenSearch's) and the same content type. The events endpoint
once had its own copy of both."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import httpx

from rewriter import config
from rewriter.serve.app import create_app
from rewriter.serve.errors import JSON_TYPE


def _shape(response: httpx.Response) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    body = response.json()
    return response.headers["content-type"], tuple(sorted(body)), tuple(sorted(body["error"]))


def test_search_and_events_errors_share_one_shape(tmp_path: Path) -> None:
    settings = replace(config.load({}), secret="unit-secret", url="http://127.0.0.1:9")
    app = create_app(settings, boost_dir=str(tmp_path))  # no lifespan: no events writer

    async def send() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://proxy") as client:
            return [
                await client.post("/_cat/indices"),
                await client.post("/affinity-profiles/_search", json={}),
                await client.post("/events", content=b"[]"),  # no writer running: 503
            ]

    refused, forbidden, events = asyncio.run(send())
    assert (refused.status_code, forbidden.status_code, events.status_code) == (403, 403, 503)
    shapes = {_shape(r) for r in (refused, forbidden, events)}
    assert shapes == {(JSON_TYPE, ("error", "status"), ("reason", "type"))}
