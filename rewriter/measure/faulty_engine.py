"""A faulty OpenSearch for the fault suite: an HTTP proxy in front of a real node that answers
some requests as a struggling cluster does.

- `_mget`: a share of the documents come back as per-document errors
  (`no_shard_available_action_exception`, as while shards recover after a restart) instead of
  the document;
- `_bulk`: a share of the requests are refused whole with 429
  (`rejected_execution_exception`, a full write queue), before they reach the node.

Everything else is forwarded untouched. The faults are drawn from a seeded random generator,
so a run is repeatable. It serves plain HTTP on loopback, from a thread.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import orjson


@dataclass
class Faults:
    mget_error_share: float = 0.3
    bulk_429_share: float = 0.2
    seed: int = 7
    injected: dict[str, int] = field(default_factory=lambda: {"mget_errors": 0, "bulk_429": 0})
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    def draw(self, share: float) -> bool:
        with self.lock:
            return self._random.random() < share


def _handler(upstream: str, faults: Faults, client: httpx.Client) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _body(self) -> bytes:
            size = int(self.headers.get("content-length") or 0)
            return self.rfile.read(size) if size else b""

        def _answer(self, status: int, content: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        def _forward(self) -> None:
            body = self._body()
            path = self.path.split("?", 1)[0]
            if path.endswith("/_bulk") and faults.draw(faults.bulk_429_share):
                with faults.lock:
                    faults.injected["bulk_429"] += 1
                refused = {
                    "error": {
                        "type": "rejected_execution_exception",
                        "reason": "injected: the write queue is full",
                    },
                    "status": 429,
                }
                self._answer(429, orjson.dumps(refused), "application/json")
                return
            headers = {
                k: v
                for k, v in self.headers.items()
                if k.lower() not in ("host", "content-length", "connection", "accept-encoding")
            }
            response = client.request(
                self.command, upstream + self.path, content=body, headers=headers
            )
            content = response.content
            if path.endswith("/_mget") and response.status_code == 200:
                content = self._break_docs(content)
            self._answer(
                response.status_code,
                content,
                response.headers.get("content-type", "application/json"),
            )

        def _break_docs(self, content: bytes) -> bytes:
            found = orjson.loads(content)
            docs = found.get("docs", [])
            for i, doc in enumerate(docs):
                if faults.draw(faults.mget_error_share):
                    with faults.lock:
                        faults.injected["mget_errors"] += 1
                    docs[i] = {
                        "_index": doc.get("_index"),
                        "_id": doc.get("_id"),
                        "error": {
                            "type": "no_shard_available_action_exception",
                            "reason": "injected: no shard available",
                        },
                    }
            return orjson.dumps(found)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

    return Handler


@contextmanager
def faulty_engine(upstream: str, faults: Faults) -> Iterator[str]:
    """Serve the faulty engine in front of `upstream`; yields its URL."""
    with httpx.Client(timeout=120.0) as client:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(upstream, faults, client))
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()
            server.server_close()
