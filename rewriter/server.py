"""The ASGI entry point for `affinity serve` (uvicorn imports `rewriter.server:app`)."""

from __future__ import annotations

from rewriter import config
from rewriter.proxy import create_app

app = create_app(config.load())
