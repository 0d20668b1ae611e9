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

import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from rewriter import config, privacy, reference
from rewriter.boost_profiles import BoostProfile, load_boost_profiles
from rewriter.model import UserAffinity
from rewriter.profile_store import OpenSearchProfileStore, ProfileStore
from rewriter.profiles import affinity_view
from rewriter.rewrite import RequestContext, rewrite

log = logging.getLogger("affinity.proxy")

JSON_TYPE = "application/json; charset=UTF-8"
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
    http: httpx.AsyncClient
    profiles: ProfileStore
    boost_profiles: dict[str, BoostProfile]
    secret: bytes
    default_profile: str = "default"
    index_profiles: dict[str, str] = field(default_factory=dict)
    boost_errors: list[str] = field(default_factory=list)

    def boost_for(self, index: str, header: str | None) -> BoostProfile:
        name = header or self.index_profiles.get(index) or self.default_profile
        try:
            return self.boost_profiles[name]
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
    internal = {state.settings.indices.profiles, state.settings.indices.events}
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


def _context(request: Request) -> tuple[str | None, RequestContext]:
    raw_ctx = request.headers.get("x-user-context")
    ctx: dict[str, Any] = {}
    if raw_ctx:
        try:
            ctx = orjson.loads(raw_ctx)
        except orjson.JSONDecodeError as exc:
            raise ProxyError(
                400, "affinity_bad_header", f"X-User-Context is not valid JSON: {exc}"
            ) from None
        if not isinstance(ctx, dict):
            raise ProxyError(400, "affinity_bad_header", "X-User-Context must be a JSON object")
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
    state: ProxyState, user: str | None, boost: BoostProfile
) -> UserAffinity | None:
    if not user:
        return None
    pseudonym = privacy.pseudonymize(user, state.secret)
    doc = await state.profiles.get(pseudonym)
    if doc is None:
        return None
    return affinity_view(doc, time.time(), boost.top_k)


def _body_from(raw: bytes, params: Mapping[str, str]) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if raw.strip():
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ProxyError(
                400, "parse_exception", f"request body is not valid JSON: {exc}"
            ) from None
        if not isinstance(body, dict):
            raise ProxyError(400, "parse_exception", "request body must be a JSON object")
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
    if isinstance(exc, httpx.TimeoutException):
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


async def _send(state: ProxyState, method: str, path: str, **kwargs: Any) -> httpx.Response:
    try:
        return await state.http.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        raise _engine_error(exc) from exc


def _explain_hits(
    response: dict[str, Any],
    log_: dict[str, Any],
    boost: BoostProfile,
    user: UserAffinity | None,
    body: Mapping[str, Any],
) -> None:
    """Attach `_affinity` (the score breakdown) to each hit, from the same params the engine
    used; relevance = _score − the added term (hits past a rescore window get none)."""
    params = log_.get("params") or reference.script_params(user, boost)
    weight = float(log_.get("alpha_eff") or 0.0)
    start = int(body.get("from", 0) or 0)
    window = boost.window if log_.get("shape") == "rescore" else None
    for i, hit in enumerate(response.get("hits", {}).get("hits", [])):
        source = dict(hit.get("_source") or {})
        source.update(hit.get("fields") or {})
        item = reference.hit_from_source(hit["_id"], 0.0, source, list(params["attributes"]))
        aff, matches = reference.affinity(item.attributes, params)
        in_window = window is None or start + i < window
        added = weight * aff if (log_.get("applied") and in_window) else 0.0
        score = hit.get("_score")
        hit["_affinity"] = {
            "relevance": None if score is None else score - added,
            "affinity": aff,
            "alpha_eff": weight,
            "added": added,
            "final": score,
            "attributes": {
                m.attribute: {
                    "value": m.value,
                    "affinity": m.affinity,
                    "weight": m.weight,
                    "contribution": m.contribution,
                }
                for m in matches
            },
        }


async def _personalized(
    state: ProxyState, request: Request, index: str, body: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any], BoostProfile, UserAffinity | None, RequestContext]:
    user, ctx = _context(request)
    boost = state.boost_for(index, request.headers.get("x-boost-profile"))
    try:
        affinity = await _user_affinity(state, user, boost)
    except httpx.HTTPError as exc:
        raise _engine_error(exc) from exc
    result = rewrite(body, affinity, boost, ctx)
    plog = dict(result.log)
    if user is None and plog.get("reason") is None and not plog.get("applied"):
        plog["reason"] = "no_user"
    return result.body, plog, boost, affinity, ctx


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
        new_body, plog, boost, affinity, ctx = await _personalized(state, request, index, body)
        if params.get("sort"):
            new_body, plog["applied"], plog["reason"] = body, False, "sorted_by_field"
        upstream = await _send(
            state, "POST", path, params=_forward_params(params), content=orjson.dumps(new_body)
        )
    except ProxyError as err:
        return err.response()
    if upstream.status_code != 200:
        return _passthrough(upstream)
    response = orjson.loads(upstream.content)
    if ctx.explain:
        _explain_hits(response, plog, boost, affinity, new_body)
    plog.pop("params", None)
    response["personalization"] = plog
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
            new_body, plog, *_ = await _personalized(state, request, target, body)
            plog.pop("params", None)
            out_lines += [orjson.dumps(header), orjson.dumps(new_body)]
            logs.append(plog)
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
    if upstream.status_code != 200:
        return _passthrough(upstream)
    response = orjson.loads(upstream.content)
    for item, plog in zip(response.get("responses", []), logs, strict=False):
        item["personalization"] = plog
    return Response(orjson.dumps(response), 200, media_type=JSON_TYPE)


def _passthrough(upstream: httpx.Response) -> Response:
    media = upstream.headers.get("content-type", JSON_TYPE)
    return Response(upstream.content, upstream.status_code, media_type=media)


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
        return Response(b"", upstream.status_code)
    return _passthrough(upstream)


async def health(request: Request) -> Response:
    state: ProxyState = request.app.state.proxy
    try:
        upstream = await state.http.get("/_cluster/health", timeout=2.0)
        engine = orjson.loads(upstream.content).get("status", "unknown")
    except httpx.HTTPError as exc:
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
    http: httpx.AsyncClient | None = None,
    extra_routes: list[Route] | None = None,
) -> Starlette:
    """The ASGI app. `profiles`/`http` may be injected (tests); by default both talk to
    the configured OpenSearch through one pooled connection."""
    auth = (settings.user, settings.password) if settings.user else None
    client = http or httpx.AsyncClient(
        base_url=settings.opensearch_url,
        timeout=httpx.Timeout(settings.timeout, connect=min(settings.timeout, 3.0)),
        limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
        auth=auth,
        verify=settings.ca_certs or settings.verify_certs,
        headers={"content-type": "application/json"},
    )
    boosts = load_boost_profiles(profiles_dir or settings.profiles_dir)
    state = ProxyState(
        settings=settings,
        http=client,
        profiles=profiles or OpenSearchProfileStore(client, settings.indices.profiles),
        boost_profiles=boosts,
        secret=config.user_secret(settings),
        default_profile=settings_default_profile(boosts),
        index_profiles=settings.index_profile_map,
    )
    routes = [*ROUTES, *(extra_routes or []), Route("/{path:path}", refuse, methods=ANY)]
    app = Starlette(routes=routes)
    app.state.proxy = state
    return app


def settings_default_profile(boosts: Mapping[str, BoostProfile]) -> str:
    return "default" if "default" in boosts or not boosts else sorted(boosts)[0]
