"""The ASGI entry point for `affinity serve` (uvicorn imports `rewriter.serve.server:app`)."""

from __future__ import annotations

from rewriter import config
from rewriter.serve.app import create_app

app = create_app(config.load())
