"""The rewriter proxy: an OpenSearch-compatible HTTP server in front of the cluster.

Applications point any OpenSearch client at it and add `X-User-Id`. Search bodies are
rewritten (ranking/rewrite.py) so that OpenSearch itself ranks by relevance + alpha_eff · affinity;
responses are OpenSearch's, plus a top-level `personalization` object.

Allow-list (everything else is refused with 403 and a JSON error, and logged):

- `GET|HEAD /`, `GET /_affinity/health`, `GET /_affinity/openapi.json` (this contract in
  OpenAPI 3: serve/openapi.py)
- `GET|POST /{index}/_search`, `GET|POST /_search`: personalized
- `GET|POST /{index}/_msearch`, `/_msearch`: each search personalized
- `GET|POST /{index}/_count`: forwarded as is
- scrolls (`?scroll=` on a search, `/_search/scroll`): forwarded generic. A scroll pages a
  fixed snapshot in index order, so there is nothing to personalize; `helpers.scan` works.
- `POST /events` (events/event.py / events_endpoint.py): user events in
- `GET|POST /_affinity/recommend` (serve/recommend.py): recommendation carousels
- `GET /_affinity/placements?slot=` (serve/placements.py): banners and offers per slot

Index expressions must name indices: wildcards, `_all` and affinity's own indices (profiles,
events) are refused, so the proxy can never be used to read another user's profile; so are
the indices a body names inside itself (a terms lookup, more_like_this items: serve/index_refs.py)
and a scroll clear of `_all` (it would end every client's scrolls).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from rewriter import config, privacy
from rewriter.boost import reload
from rewriter.boost.profile import BoostProfile, default_boost_name
from rewriter.engine.http_pool import EngineError, EngineHTTP
from rewriter.experiments import assignment, impressions
from rewriter.profiles.store import ProfileStore
from rewriter.serve import events_endpoint, metrics, placements, profile_cache, recommend
from rewriter.serve.auth_gate import AuthGate, KeyCache
from rewriter.serve.errors import ProxyError, json_response
from rewriter.serve.openapi import OPENAPI_PATH, openapi
from rewriter.serve.search import forward_plain, msearch, search
from rewriter.serve.state import ProxyState
from rewriter.serve.suggest import suggest

log = logging.getLogger("affinity.proxy")


Lifespan = Callable[[Starlette], contextlib.AbstractAsyncContextManager[None]]


async def health(request: Request) -> Response:
    state: ProxyState = request.app.state.proxy
    try:
        upstream = await state.http.get("/_cluster/health", timeout=2.0)
        engine = orjson.loads(upstream.content).get("status", "unknown")
    except EngineError as exc:
        engine = f"unreachable: {exc.__class__.__name__}"
    body = {
        "status": "ok" if engine in ("green", "yellow") else "degraded",
        "engine": engine,
        "boost_profiles": {
            name: {"version": p.version, "source": p.source}
            for name, p in state.boost_profiles.items()
        },
        "boost_profile_errors": state.boost_errors,
        "profile_cache": profile_cache.health(request.app),
    }
    return json_response(body, 200 if body["status"] == "ok" else 503)


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (a method no route serves: 405) in the error shape."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        reason = (
            f"{request.method} {request.url.path} is not served by the affinity proxy: it "
            "answers GET, HEAD, POST and DELETE on its allow-listed endpoints only"
        )
        return ProxyError(405, "affinity_method_not_allowed", reason).response(exc.headers)
    return ProxyError(exc.status_code, "affinity_http_error", str(exc.detail)).response()


async def client_gone(request: Request, exc: Exception) -> Response:
    """The client closed the connection before sending its whole body: nobody is left to
    answer, so no error is logged."""
    log.info("client left before its request body was complete: %s", request.url.path)
    return ProxyError(
        400, "affinity_client_disconnected", "the request body was cut short"
    ).response()


async def internal_error(request: Request, exc: Exception) -> Response:
    """A bug: logged with its traceback, answered in the error shape without one."""
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    reason = (
        f"the affinity proxy failed on {request.method} {request.url.path} "
        f"({exc.__class__.__name__}); this is a bug in affinity, and its log has the details. "
        "Other requests are not affected."
    )
    return ProxyError(500, "affinity_internal_error", reason).response()


EXCEPTION_HANDLERS = {
    HTTPException: http_error,
    ClientDisconnect: client_gone,
    Exception: internal_error,
}


async def refuse(request: Request) -> Response:
    reason = (
        f"{request.method} {request.url.path} is not forwarded by the affinity proxy: it "
        "serves searches only (_search, _msearch, _count, scroll). Send admin and write "
        "requests to OpenSearch directly, with its own credentials."
    )
    log.warning(
        "refused %s %s from %s",
        request.method,
        request.url.path,
        request.client.host if request.client else "?",
    )
    return ProxyError(403, "affinity_forbidden_endpoint", reason).response()


ROUTES = [
    Route("/", forward_plain, methods=["GET", "HEAD"]),
    Route("/_affinity/health", health, methods=["GET"]),
    Route(OPENAPI_PATH, openapi, methods=["GET"]),
    Route("/_search", search, methods=["GET", "POST"]),
    Route("/_msearch", msearch, methods=["GET", "POST"]),
    Route("/_search/scroll", forward_plain, methods=["GET", "POST", "DELETE"]),
    Route("/{index}/_search", search, methods=["GET", "POST"]),
    Route("/{index}/_msearch", msearch, methods=["GET", "POST"]),
    Route("/{index}/_count", forward_plain, methods=["GET", "POST"]),
    Route("/_affinity/suggest", suggest, methods=["GET"]),
]


ANY = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]


def create_app(
    settings: config.Settings,
    boost_dir: str | None = None,
    profiles: ProfileStore | None = None,
    http: EngineHTTP | None = None,
    extra_routes: list[Route] | None = None,
) -> Starlette:
    """The ASGI app. `profiles`/`http` may be injected (tests); by default both talk to
    the configured OpenSearch through one pooled connection."""
    client = http or EngineHTTP(
        settings.opensearch_url,
        timeout=settings.timeout,
        connect_timeout=min(settings.timeout, 3.0),
        user=settings.user,
        password=settings.password,
        verify=settings.verify_certs,
        ca_certs=settings.ca_certs,
    )
    secret = config.user_secret(settings)
    registry = reload.BoostRegistry(  # hot reload: keeps the last good version per file
        boost_dir or settings.boost_dir,
        lambda raw: privacy.pseudonymize(raw, secret),
        on_change=lambda *_: None,
    )
    registry.reload()
    boosts = registry.profiles
    state = ProxyState(
        settings=settings,
        http=client,
        profiles=profiles or profile_cache.build_store(settings, client),
        boost_profiles=boosts,
        boost_errors=list(registry.errors),
        secret=secret,
        default_profile=default_boost_name(boosts),
        index_profiles=settings.index_profile_map,
        experiments=assignment.load_experiments(
            assignment.experiments_dir(boost_dir or settings.boost_dir), boosts
        ),
        impressions=impressions.writer_for(settings) if settings.impressions else None,
    )
    if not settings.impressions and len(state.experiments):
        log.warning(
            "AFFINITY_IMPRESSIONS is off, so the running experiments (%s) get no impressions "
            "and their reports no clicks: turn it on to measure them",
            ", ".join(e.name for e in state.experiments),
        )
    routes = [
        *ROUTES,
        *events_endpoint.ROUTES,
        *metrics.ROUTES,
        *recommend.ROUTES,
        *placements.ROUTES,
        *(extra_routes or []),
        Route("/{path:path}", refuse, methods=ANY),
    ]
    registry.on_change = lambda boosts, errors: _swap_boosts(state, boosts, errors)
    lifespan = _closing_pool(impressions.with_impressions(events_endpoint.lifespan))
    lifespan = profile_cache.with_change_feed(lifespan)
    gate = Middleware(  # AFFINITY_AUTH=required: keys, user tokens (serve/auth_gate.py)
        AuthGate, required=True, secret=secret, keys=KeyCache(client, settings.indices.auth)
    )
    app = Starlette(
        routes=routes,
        lifespan=reload.lifespan(registry, lifespan),
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[gate] if settings.auth == "required" else None,
    )
    app.state.proxy = state
    app.state.boost_registry = registry
    metrics.install(app, routes)
    return app


def _closing_pool(inner: Lifespan) -> Lifespan:
    """Run `inner`, then close the connection pool to OpenSearch on shutdown."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with inner(app):
            yield
        await app.state.proxy.http.close()

    return lifespan


def _swap_boosts(state: ProxyState, boosts: dict[str, BoostProfile], errors: list[str]) -> None:
    """Serve a reloaded set of boost profiles: one assignment each, no request sees a mix."""
    state.boost_profiles = boosts
    state.boost_errors = errors
