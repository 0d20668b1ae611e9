"""The ASGI entry point for `affinity serve` (uvicorn imports `rewriter.serve.server:app`)."""

from __future__ import annotations

from rewriter import config
from rewriter.serve import tracing
from rewriter.serve.app import create_app

tracing.install_log_format()

app = create_app(config.load())
