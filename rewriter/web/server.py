"""The ASGI entry point of `affinity serve` (uvicorn imports `rewriter.web.server:app`)."""

from __future__ import annotations

from rewriter import config
from rewriter.web.app import build

app = build(config.load())
