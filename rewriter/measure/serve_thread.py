"""Serving the proxy over real HTTP for tests, simulations and benchmarks: an ASGI app from
a background thread (`serve_in_thread`), or `affinity serve` in a process of its own
(`serve_process`).

uvicorn runs the app's lifespan, so the events writer, the impression writer and the boost
profile watcher start and stop as they do under `affinity serve`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn
from starlette.applications import Starlette

from rewriter import config


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve_in_thread(app: Starlette, start_timeout: float = 20.0) -> Iterator[str]:
    """Serve `app` on a free port until the block ends; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout
    while not server.started and time.monotonic() < deadline:
        if not thread.is_alive():
            break
        time.sleep(0.05)
    if not server.started:
        raise RuntimeError(f"the app did not start serving within {start_timeout:.0f} s")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def serve_process(
    settings: config.Settings,
    port: int,
    env: Mapping[str, str] | None = None,
    workers: int = 1,
    timeout: float = 30.0,
    root: Path | None = None,
) -> subprocess.Popen:
    """`affinity serve` for `settings` on `port`, in its own interpreter (no GIL shared with
    the caller's clients); returns once its health endpoint answers. `env` adds to or
    overrides the environment it derives from `settings`. `root` runs another checkout's code
    (a source tree of an older commit, for before/after benchmarks), with this interpreter."""
    full_env = {
        **os.environ,
        "OPENSEARCH_URL": settings.opensearch_url,
        "AFFINITY_INDEX_PREFIX": settings.indices.prefix,
        "AFFINITY_SECRET": settings.secret or "",
        "AFFINITY_PROFILES_DIR": str(settings.boost_dir),
        **(env or {}),
    }
    cmd = [sys.executable, "-m", "cli", "serve", "--port", str(port), "--log-level", "warning"]
    proc = subprocess.Popen(
        [*cmd, "--workers", str(workers)], env=full_env, cwd=root or config.ROOT
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/_affinity/health", timeout=1).status_code < 500:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"affinity serve did not come up on port {port} in {timeout:.0f} s")
