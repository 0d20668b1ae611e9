"""The proxy with its dashboard and storefront: what `affinity serve` runs.

`build(settings)` is serve/app.py's `create_app` plus the dashboard's routes (web/dashboard.py,
web/preview.py, web/accounts.py), the storefront (web/shop.py), the static assets shipped in
this package, and the thread that follows boost profiles published by other proxies of the
deployment (web/versions.py `sync_live`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from rewriter import config
from rewriter.auth.audit import AuditLog
from rewriter.auth.store import AuthStore
from rewriter.engine.client import connect
from rewriter.serve.app import create_app
from rewriter.web import accounts, dashboard, preview, shop, users
from rewriter.web.context import HERE, STATIC, Web
from rewriter.web.sessions import Gate
from rewriter.web.versions import SYNC_INTERVAL_S, VersionStore, sync_live

log = logging.getLogger("affinity.web")


def build(settings: config.Settings, boost_dir: str | None = None) -> Starlette:
    routes = [
        *accounts.ROUTES,
        *preview.ROUTES,
        *dashboard.ROUTES,
        *shop.ROUTES,
        *users.ROUTES,
        Mount(STATIC, StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    app = create_app(settings, boost_dir=boost_dir, extra_routes=routes)
    es = connect(settings, timeout=30)
    secret = config.user_secret(settings)
    app.state.web = Web(
        settings=settings,
        es=es,
        gate=Gate(settings.auth == "required", secret, AuthStore(es, settings.indices.auth)),
        versions=VersionStore(es, settings.indices.boost_versions),
        audit=AuditLog(es, settings.indices.audit),
        secret=secret,
    )
    inner = app.router.lifespan_context
    app.router.lifespan_context = _following_publishes(inner)
    return app


def _following_publishes(inner: contextlib.AbstractAsyncContextManager | object) -> object:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        stop = threading.Event()
        thread = threading.Thread(target=_follow, args=(app, stop), name="boost-sync", daemon=True)
        thread.start()
        try:
            async with inner(app):  # type: ignore[operator]
                yield
        finally:
            stop.set()
            thread.join(5)

    return lifespan


def _follow(app: Starlette, stop: threading.Event) -> None:
    """Every SYNC_INTERVAL_S: write boost profiles published elsewhere into this proxy's
    directory; the hot reload serves them (within about 3 s of the publish)."""
    registry = app.state.boost_registry
    while not stop.wait(SYNC_INTERVAL_S):
        try:
            written = sync_live(app.state.web.versions, registry.directory, registry.profiles)
            if written:
                log.info("published elsewhere, now written here: %s", ", ".join(written))
                registry.reload()
        except Exception as exc:  # the engine away: try again next round
            log.debug("boost profile sync skipped: %s", exc)
