"""The rewriter proxy: an OpenSearch-compatible HTTP server in front of the cluster.

Applications point any OpenSearch client at it and add `X-User-Id`. Search bodies are
rewritten (rewrite.py) so that OpenSearch itself ranks by relevance + alpha_eff · affinity;
responses are OpenSearch's, plus a top-level `personalization` object.

Allow-list (everything else is refused with 403 and a JSON error, and logged):

- `GET|HEAD /`, `GET /_affinity/health`
- `GET|POST /{index}/_search`, `GET|POST /_search`: personalized
- `GET|POST /{index}/_msearch`, `/_msearch`: each search personalized
- `GET|POST /{index}/_count`: forwarded as is
- scrolls (`?scroll=` on a search, `/_search/scroll`): forwarded generic. A scroll pages a
  fixed snapshot in index order, so there is nothing to personalize; `helpers.scan` works.
- `POST /events` (events.py / events_service.py): user events in

Index expressions must name indices: wildcards, `_all` and affinity's own indices (profiles,
events) are refused, so the proxy can never be used to read another user's profile.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from rewriter import boost_reload, config, events_service, explain, pins, privacy
from rewriter import experiments as exp_mod
from rewriter import impressions as imp_mod
from rewriter.boost_profiles import BoostProfile
from rewriter.engine_http import EngineError, EngineHTTP, EngineResponse, EngineTimeout
from rewriter.model import UserAffinity
from rewriter.profile_store import OpenSearchProfileStore, ProfileStore
from rewriter.profiles import affinity_view
from rewriter.resolve import EMPTY_PLAN
from rewriter.rewrite import RequestContext, RewriteResult, rewrite

log = logging.getLogger("affinity.proxy")

JSON_TYPE = "application/json; charset=UTF-8"
Lifespan = Callable[[Starlette], contextlib.AbstractAsyncContextManager[None]]
_INDEX_OK = re.compile(r"^[a-z0-9][a-z0-9_.,+-]*$")


class ProxyError(Exception):
    """An error the proxy answers itself, shaped like OpenSearch's error bodies."""

    def __init__(self, status: int, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.kind = kind
        self.reason = reason

    def response(self) -> Response:
        body = {"error": {"type": self.kind, "reason": self.reason}, "status": self.status}
        return Response(orjson.dumps(body), self.status, media_type=JSON_TYPE)


@dataclass
class ProxyState:
    """Everything a request needs, built once per process."""

    settings: config.Settings
    http: EngineHTTP
    profiles: ProfileStore
    boost_profiles: dict[str, BoostProfile]
    secret: bytes
    default_profile: str = "default"
    index_profiles: dict[str, str] = field(default_factory=dict)
    boost_errors: list[str] = field(default_factory=list)
    experiments: exp_mod.ExperimentSet = field(default_factory=exp_mod.ExperimentSet)
    impressions: imp_mod.ImpressionWriter | None = None

    def boost_for(
        self, index: str, header: str | None, arm: exp_mod.Arm | None = None
    ) -> BoostProfile:
        variant = arm.variant.boost_profile if arm else None
        name = header or variant or self.index_profiles.get(index) or self.default_profile
        try:
            return (
                arm.variant.apply(self.boost_profiles[name]) if arm else self.boost_profiles[name]
            )
        except KeyError:
            known = ", ".join(sorted(self.boost_profiles)) or "none loaded"
            raise ProxyError(
                400,
                "affinity_unknown_boost_profile",
                f"boost profile {name!r} is not loaded (known: {known}); fix X-Boost-Profile "
                "or add the file to profiles/",
            ) from None


# --------------------------------------------------------------------------- helpers
def _check_index(state: ProxyState, index: str) -> None:
    ix = state.settings.indices
    internal = {ix.profiles, ix.events, ix.impressions, ix.journal}
    names = index.split(",")
    if any(n in ("_all", "*") or "*" in n or "?" in n for n in names):
        raise ProxyError(
            403,
            "affinity_forbidden_index",
            f"index expression {index!r} uses a wildcard or _all; name the indices explicitly",
        )
    if not _INDEX_OK.match(index):
        raise ProxyError(400, "affinity_bad_index", f"{index!r} is not a valid index name")
    hidden = [n for n in names if n in internal or n.startswith(tuple(f"{i}-v" for i in internal))]
    if hidden:
        raise ProxyError(
            403,
            "affinity_forbidden_index",
            f"{hidden[0]} holds affinity's private data and cannot be read through the proxy",
        )


def _json_object(raw: bytes | str, kind: str, what: str) -> dict[str, Any]:
    """`raw` parsed as a JSON object, or a 400 ProxyError of type `kind` naming `what`."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ProxyError(400, kind, f"{what} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ProxyError(400, kind, f"{what} must be a JSON object")
    return value


def _context(request: Request) -> tuple[str | None, RequestContext]:
    raw_ctx = request.headers.get("x-user-context")
    ctx = _json_object(raw_ctx, "affinity_bad_header", "X-User-Context") if raw_ctx else {}
    off = request.headers.get("x-personalization", "").strip().lower() in ("off", "0", "false")
    explain = request.query_params.get("explain", "").lower() in ("true", "1", "")
    explain = explain and "explain" in request.query_params
    user = request.headers.get("x-user-id") or None
    device, geo = ctx.get("device"), ctx.get("geo")
    return user, RequestContext(
        personalization_off=off,
        explain=explain,
        device=device if isinstance(device, str) else None,
        geo=geo if isinstance(geo, str) else None,
        raw=ctx,
    )


async def _user_affinity(
    state: ProxyState, pseudonym: str | None, boost: BoostProfile
) -> UserAffinity | None:
    if not pseudonym:
        return None
    doc = await state.profiles.get(pseudonym)
    if doc is None:
        return None
    return affinity_view(doc, time.time(), boost.top_k)


def _body_from(raw: bytes, params: Mapping[str, str]) -> dict[str, Any]:
    body = _json_object(raw, "parse_exception", "request body") if raw.strip() else {}
    for key in ("from", "size"):  # URL from/size move into the body (rewrite reads them there)
        if key in params:
            try:
                body[key] = int(params[key])
            except ValueError:
                raise ProxyError(
                    400, "illegal_argument_exception", f"{key} must be an integer"
                ) from None
    return body


def _forward_params(params: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in params.items() if k not in ("from", "size")}


def _engine_error(exc: Exception) -> ProxyError:
    if isinstance(exc, EngineTimeout):
        return ProxyError(
            504,
            "affinity_engine_timeout",
            f"OpenSearch did not answer in time ({exc.__class__.__name__}); the search was "
            "abandoned. Retry, or raise AFFINITY_TIMEOUT if the cluster is just slow.",
        )
    return ProxyError(
        503,
        "affinity_engine_unavailable",
        f"OpenSearch is unreachable ({exc.__class__.__name__}: {exc}); check the cluster. "
        "The proxy retries on the next request.",
    )


async def _send(state: ProxyState, method: str, path: str, **kwargs: Any) -> EngineResponse:
    try:
        return await state.http.request(method, path, **kwargs)
    except EngineError as exc:
        raise _engine_error(exc) from exc


async def _personalized(
    state: ProxyState, request: Request, index: str, body: dict[str, Any]
) -> tuple[
    dict[str, Any], dict[str, Any], BoostProfile, UserAffinity | None, RequestContext, RewriteResult
]:
    user, ctx = _context(request)
    pseudonym = privacy.pseudonymize(user, state.secret) if user else None
    if pseudonym:  # for boost-profile segments that list users
        ctx = replace(ctx, user=pseudonym)
    header = request.headers.get("x-boost-profile")
    chosen = bool(header) or ctx.personalization_off
    arm = exp_mod.enroll_search(state.experiments, index, pseudonym, chosen)
    ctx = exp_mod.arm_context(arm, ctx)
    boost = state.boost_for(index, header, arm)
    try:
        affinity = await _user_affinity(state, pseudonym, boost)
    except EngineError as exc:
        raise _engine_error(exc) from exc
    result = rewrite(body, affinity, boost, ctx)
    plog = dict(result.log)
    if user is None and plog.get("reason") is None and not plog.get("applied"):
        plog["reason"] = "no_user"
    exp_mod.tag_log(plog, arm)
    return result.body, plog, boost, affinity, ctx, result


async def _send_search(
    state: ProxyState,
    index: str,
    body: dict[str, Any],
    plan: pins.PinPlan | None,
    params: Mapping[str, str],
) -> EngineResponse:
    """The rewritten search; with pins, it and the pinned fetch in one _msearch (pins.py)."""
    if plan is None:
        path = f"/{index}/_search" if index else "/_search"
        return await _send(state, "POST", path, params=params, content=orjson.dumps(body))
    lines, rest = pins.msearch_request(index, body, plan, params)
    upstream = await _send(
        state,
        "POST",
        f"/{index}/_msearch" if index else "/_msearch",
        params=rest,
        content=b"\n".join(orjson.dumps(line) for line in lines) + b"\n",
        headers={"content-type": "application/x-ndjson"},
    )
    if upstream.status != 200:
        return upstream
    status, merged = pins.from_msearch(orjson.loads(upstream.content), plan)
    return EngineResponse(status, orjson.dumps(merged), JSON_TYPE)


# --------------------------------------------------------------------------- endpoints
async def search(request: Request) -> Response:
    state: ProxyState = request.app.state.proxy
    index = request.path_params.get("index", "")
    params = dict(request.query_params)
    try:
        if index:
            _check_index(state, index)
        body = _body_from(await request.body(), params)
        path = f"/{index}/_search" if index else "/_search"
        if "scroll" in params:  # generic: a scroll pages a snapshot, not a ranking
            upstream = await _send(state, "POST", path, params=params, content=orjson.dumps(body))
            return _passthrough(upstream)
        new_body, plog, boost, affinity, ctx, result = await _personalized(
            state, request, index, body
        )
        plan = result.pins
        if params.get("sort"):
            new_body, plog["applied"], plog["reason"] = body, False, "sorted_by_field"
            plan, result = None, replace(result, rules=EMPTY_PLAN)
        upstream = await _send_search(state, index, new_body, plan, _forward_params(params))
    except ProxyError as err:
        return err.response()
    if upstream.status != 200:
        return _passthrough(upstream)
    response = orjson.loads(upstream.content)
    if ctx.explain:
        explain.explain_hits(response, plog, boost, affinity, new_body, result.rules)
    plog.pop("params", None)
    response["personalization"] = plog
    if state.impressions is not None:
        user = request.headers.get("x-user-id")
        state.impressions.record_search(user, index, body, response, plog)
    return Response(orjson.dumps(response), 200, media_type=JSON_TYPE)


async def msearch(request: Request) -> Response:
    state: ProxyState = request.app.state.proxy
    index = request.path_params.get("index", "")
    try:
        if index:
            _check_index(state, index)
        lines = [ln for ln in (await request.body()).splitlines() if ln.strip()]
        if len(lines) % 2:
            raise ProxyError(
                400, "illegal_argument_exception", "msearch body must be header/body line pairs"
            )
        out_lines: list[bytes] = []
        logs: list[dict[str, Any]] = []
        plans: list[pins.PinPlan | None] = []
        sent: list[tuple[str, dict[str, Any]]] = []
        for n in range(0, len(lines), 2):
            header = orjson.loads(lines[n])
            target = header.get("index", index)
            target = ",".join(target) if isinstance(target, list) else str(target or "")
            if not target:
                raise ProxyError(
                    400,
                    "action_request_validation_exception",
                    f"msearch entry {n // 2 + 1} names no index",
                )
            _check_index(state, target)
            body = orjson.loads(lines[n + 1])
            new_body, plog, *_, result = await _personalized(state, request, target, body)
            plog.pop("params", None)
            out_lines += [orjson.dumps(header), orjson.dumps(new_body)]
            if result.pins is not None:  # the pinned fetch follows its search (pins.py)
                out_lines += [orjson.dumps(header), orjson.dumps(result.pins.fetch)]
            plans.append(result.pins)
            logs.append(plog)
            sent.append((target, body))
        path = f"/{index}/_msearch" if index else "/_msearch"
        upstream = await _send(
            state,
            "POST",
            path,
            params=dict(request.query_params),
            content=b"\n".join(out_lines) + b"\n",
            headers={"content-type": "application/x-ndjson"},
        )
    except orjson.JSONDecodeError as exc:
        return ProxyError(400, "parse_exception", f"msearch line is not JSON: {exc}").response()
    except ProxyError as err:
        return err.response()
    if upstream.status != 200:
        return _passthrough(upstream)
    response = orjson.loads(upstream.content)
    response["responses"] = _merge_pinned(response.get("responses", []), plans)
    for item, plog, (target, body) in zip(response.get("responses", []), logs, sent, strict=False):
        item["personalization"] = plog
        if state.impressions is not None and "hits" in item:
            user = request.headers.get("x-user-id")
            state.impressions.record_search(user, target, body, item, plog)
    return Response(orjson.dumps(response), 200, media_type=JSON_TYPE)


def _merge_pinned(
    responses: list[dict[str, Any]], plans: list[pins.PinPlan | None]
) -> list[dict[str, Any]]:
    """One response per app search: pinned searches had two (organic, pinned fetch)."""
    out: list[dict[str, Any]] = []
    at = 0
    for plan in plans:
        if plan is None:
            out.append(responses[at])
            at += 1
            continue
        status, merged = pins.from_msearch({"responses": responses[at : at + 2]}, plan)
        out.append({**merged, "status": status})
        at += 2
    return out


def _passthrough(upstream: EngineResponse) -> Response:
    return Response(upstream.content, upstream.status, media_type=upstream.content_type)


async def forward_plain(request: Request) -> Response:
    """Allow-listed endpoints that need no rewrite: `/`, `_count`, scroll continuation."""
    state: ProxyState = request.app.state.proxy
    index = request.path_params.get("index")
    try:
        if index:
            _check_index(state, index)
        upstream = await _send(
            state,
            request.method,
            request.url.path,
            params=dict(request.query_params),
            content=await request.body(),
            headers={"content-type": request.headers.get("content-type", "application/json")},
        )
    except ProxyError as err:
        return err.response()
    if request.method == "HEAD":
        return Response(b"", upstream.status)
    return _passthrough(upstream)


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
    }
    return Response(
        orjson.dumps(body), 200 if body["status"] == "ok" else 503, media_type=JSON_TYPE
    )


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
    Route("/_search", search, methods=["GET", "POST"]),
    Route("/_msearch", msearch, methods=["GET", "POST"]),
    Route("/_search/scroll", forward_plain, methods=["GET", "POST", "DELETE"]),
    Route("/{index}/_search", search, methods=["GET", "POST"]),
    Route("/{index}/_msearch", msearch, methods=["GET", "POST"]),
    Route("/{index}/_count", forward_plain, methods=["GET", "POST"]),
]

ANY = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]


def create_app(
    settings: config.Settings,
    profiles_dir: str | None = None,
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
    registry = boost_reload.BoostRegistry(  # hot reload: keeps the last good version per file
        profiles_dir or settings.profiles_dir,
        lambda raw: privacy.pseudonymize(raw, secret),
        on_change=lambda *_: None,
    )
    registry.reload()
    boosts = registry.profiles
    state = ProxyState(
        settings=settings,
        http=client,
        profiles=profiles or OpenSearchProfileStore(client, settings.indices.profiles),
        boost_profiles=boosts,
        boost_errors=list(registry.errors),
        secret=secret,
        default_profile=settings_default_profile(boosts),
        index_profiles=settings.index_profile_map,
        experiments=exp_mod.load_experiments(
            exp_mod.experiments_dir(profiles_dir or settings.profiles_dir), boosts
        ),
        impressions=imp_mod.writer_for(settings) if settings.impressions else None,
    )
    if not settings.impressions and len(state.experiments):
        log.warning(
            "AFFINITY_IMPRESSIONS is off, so the running experiments (%s) get no impressions "
            "and their reports no clicks: turn it on to measure them",
            ", ".join(e.name for e in state.experiments),
        )
    routes = [
        *ROUTES,
        *events_service.ROUTES,
        *(extra_routes or []),
        Route("/{path:path}", refuse, methods=ANY),
    ]
    registry.on_change = lambda boosts, errors: _swap_boosts(state, boosts, errors)
    lifespan = _closing_pool(imp_mod.with_impressions(events_service.lifespan))
    app = Starlette(routes=routes, lifespan=boost_reload.lifespan(registry, lifespan))
    app.state.proxy = state
    app.state.boost_registry = registry
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


def settings_default_profile(boosts: Mapping[str, BoostProfile]) -> str:
    return "default" if "default" in boosts or not boosts else sorted(boosts)[0]
