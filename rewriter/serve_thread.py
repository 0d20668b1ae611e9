"""Serving an ASGI app over real HTTP from a background thread (tests, simulations).

uvicorn runs the app's lifespan, so the events writer, the impression writer and the boost
profile watcher start and stop as they do under `affinity serve`.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from starlette.applications import Starlette


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
