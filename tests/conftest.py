"""Shared fixtures. The engine fixture starts ONE real OpenSearch node per session.

Order of preference: OPENSEARCH_URL (an existing cluster); a Docker engine that answers
(pytest-docker with docker-compose.yml); otherwise the local engine in engine/, on a free port
with a temporary data dir. A node that cannot start FAILS the tests that need it, with the
engine's log: integration tests never skip silently.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from opensearchpy import OpenSearch

from rewriter import config
from rewriter.engine import local_node
from rewriter.engine.bootstrap import bootstrap_cluster
from rewriter.engine.client import EngineUnavailable, connect, wait_for_health
from rewriter.measure.serve_thread import free_port

ROOT = Path(__file__).resolve().parent.parent


def _docker_answers() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def docker_compose_file() -> str:
    return str(ROOT / "docker-compose.yml")


@pytest.fixture(scope="session")
def engine_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """URL of a real OpenSearch node for this test session."""
    if os.environ.get("OPENSEARCH_URL"):
        yield os.environ["OPENSEARCH_URL"]
        return
    if _docker_answers():
        request.getfixturevalue("docker_services")
        yield "http://127.0.0.1:9200"
        return
    data_dir = tmp_path_factory.mktemp("engine")
    try:
        st = local_node.start(data_dir, port=free_port(), heap="1g", timeout=180)
    except local_node.EngineError as exc:
        pytest.fail(f"The local OpenSearch engine could not start:\n{exc}", pytrace=False)
    assert st.url
    try:
        yield st.url
    finally:
        local_node.stop(data_dir)


@pytest.fixture(scope="session")
def index_prefix() -> str:
    """A unique prefix so a shared cluster keeps tests apart."""
    return f"t{secrets.token_hex(3)}-"


@pytest.fixture(scope="session")
def settings(engine_url: str, index_prefix: str) -> config.Settings:
    base = config.load()
    return replace(
        base,
        url=engine_url,
        indices=config.Indices(prefix=index_prefix),
        secret=base.secret or "test-secret-0123456789abcdef",
    )


@pytest.fixture(scope="session")
def opensearch(settings: config.Settings) -> Iterator[OpenSearch]:
    """A client to the session's node, waited for yellow health."""
    es = connect(settings, timeout=60)
    try:
        wait_for_health(es, "yellow", 120)
    except EngineUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    yield es
    if os.environ.get("OPENSEARCH_URL"):
        es.indices.delete(index=f"{settings.indices.prefix}*", ignore_unavailable=True)


@pytest.fixture(scope="session")
def bootstrapped(opensearch: OpenSearch, settings: config.Settings) -> config.Settings:
    """Templates, aliases and stored scripts applied under the session's prefix."""
    bootstrap_cluster(opensearch, settings)
    return settings


StubServer = Callable[[bytes, int], tuple[str, list[dict[str, str]]]]


@pytest.fixture()
def json_stub() -> Iterator[StubServer]:
    """Start, on demand, an HTTP server that answers every GET with the given JSON body and
    records the request headers (lower-cased): a stand-in where what is under test is our
    client's side of the connection, not OpenSearch. `port` 0 picks a free one."""
    servers: list[ThreadingHTTPServer] = []

    def start(body: bytes, port: int = 0) -> tuple[str, list[dict[str, str]]]:
        seen: list[dict[str, str]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                seen.append({k.lower(): v for k, v in self.headers.items()})
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                return None

        server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{server.server_address[1]}", seen

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
