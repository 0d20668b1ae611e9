"""Who may call the proxy (AFFINITY_AUTH=required): an ASGI middleware in front of every route.

A request presents `Authorization: Bearer <credential>`, one of:

- an API key `afk_<id>_<secret>` (auth/hashing.py): its scopes decide what it may call. A
  search endpoint (`/`, `_search`, `_msearch`, `_count`, scrolls) needs `search`, `POST /events`
  needs `events` (auth/roles.py `scope_allows`). Keys are read from the `affinity-auth` index
  and kept `KEY_TTL_S` seconds, so a revoked key stops working within that time.
- a user token `afu_...` (auth/tokens.py; `affinity keys user-token`, or the storefront's demo
  login): searches and events as that one user. Its user becomes the request's `X-User-Id`; a
  different `X-User-Id` is refused, and `POST /events` rejects events of other users one by one.

Open without a credential: `/_affinity/health` and the OpenAPI description. The dashboard and
the storefront (`/_affinity/ui/`, `/_affinity/shop/`) check staff sessions themselves
(web/sessions.py), and refuse keys without the `admin` scope there.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from rewriter.auth import hashing, roles, tokens
from rewriter.auth.store import KeyRecord, key_doc_id, key_matches
from rewriter.engine.http_pool import EngineError, EngineHTTP
from rewriter.serve.errors import ProxyError

KEY_TTL_S = 5.0
OPEN_PATHS = ("/_affinity/health", "/_affinity/openapi.json")
SELF_CHECKED = ("/_affinity/ui", "/_affinity/shop")
TOKEN_USER = "affinity.token_user"
"""Where the gate leaves a user token's user id in the ASGI scope (POST /events reads it)."""

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


ADMIN_PATHS = ("/_affinity/metrics",)
"""Operator endpoints: the `admin` scope (a Prometheus scraper gets an admin key)."""


def needed_scope(path: str) -> roles.Scope:
    """The key scope a path needs: `events` for POST /events, `admin` for the operator's
    endpoints, `search` for every search, suggestion, carousel and placement."""
    path = path.rstrip("/")
    if path == "/events":
        return "events"
    return "admin" if path in ADMIN_PATHS else "search"


def bearer(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"authorization":
            kind, _, credential = value.decode("latin-1").strip().partition(" ")
            if kind.lower() in ("bearer", "apikey") and credential.strip():
                return credential.strip()
    return None


@dataclass
class _Cached:
    record: KeyRecord | None
    at: float
    verified: set[str] = field(default_factory=set)


class KeyCache:
    """Key records by id, read from OpenSearch at most every KEY_TTL_S seconds per key; a
    secret's argon2 check runs once per record read (kept as a sha256 of it, in memory)."""

    def __init__(self, http: EngineHTTP, index: str, ttl: float = KEY_TTL_S) -> None:
        self.http = http
        self.index = index
        self.ttl = ttl
        self._cache: dict[str, _Cached] = {}

    async def check(self, presented: str) -> KeyRecord | None:
        parts = hashing.split_key(presented)
        if parts is None:
            return None
        key_id, secret = parts
        entry = self._cache.get(key_id)
        if entry is None or time.monotonic() - entry.at > self.ttl:
            record = await self._read(key_id)
            keep = (
                entry.verified
                if entry
                and entry.record
                and record
                and (entry.record.secret_hash == record.secret_hash)
                else set()
            )
            entry = _Cached(record, time.monotonic(), keep)
            self._cache[key_id] = entry
        if entry.record is None or entry.record.revoked:
            return None
        digest = hashlib.sha256(presented.encode()).hexdigest()
        if digest in entry.verified:
            return entry.record
        if await asyncio.to_thread(key_matches, entry.record, secret):
            entry.verified.add(digest)
            return entry.record
        return None

    async def _read(self, key_id: str) -> KeyRecord | None:
        response = await self.http.get(f"/{self.index}/_doc/{key_doc_id(key_id)}")
        if response.status == 404:
            return None
        if response.status != 200:
            raise EngineError(f"reading key {key_id}: OpenSearch answered {response.status}")
        doc = orjson.loads(response.content)
        return KeyRecord.from_source(doc["_source"]) if doc.get("found") else None


class AuthGate:
    """The middleware; `required` False lets everything through (AFFINITY_AUTH=off)."""

    def __init__(self, app: ASGIApp, required: bool, secret: bytes, keys: KeyCache) -> None:
        self.app = app
        self.required = required
        self.secret = secret
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if (
            not self.required
            or scope["type"] != "http"
            or path in OPEN_PATHS
            or path.startswith(SELF_CHECKED)
        ):
            await self.app(scope, receive, send)
            return
        try:
            scope = await self._admit(scope, path)
        except ProxyError as err:
            headers = {"www-authenticate": "Bearer"} if err.status == 401 else None
            await err.response(headers)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _admit(self, scope: Scope, path: str) -> Scope:
        need = needed_scope(path)
        credential = bearer(scope.get("headers", []))
        if credential is None:
            raise ProxyError(
                401,
                "affinity_auth_required",
                f"{path} needs an API key with the {need!r} scope or a user token: send "
                "`Authorization: Bearer <key>` (`affinity keys create`)",
            )
        if credential.startswith(tokens.USER_TOKEN_PREFIX):
            return self._as_user(scope, credential)
        try:
            record = await self.keys.check(credential)
        except EngineError as exc:
            raise ProxyError(
                503, "affinity_auth_unavailable", f"the API key could not be checked: {exc}"
            ) from None
        if record is None:
            raise ProxyError(
                401, "affinity_bad_credential", "the API key is unknown, revoked or wrong"
            )
        if not roles.scope_allows(record.scopes, need):
            raise ProxyError(
                403,
                "affinity_scope_refused",
                f"key {record.key_id} ({', '.join(record.scopes)}) lacks the {need!r} scope "
                f"that {path} needs",
            )
        return scope

    def _as_user(self, scope: Scope, token: str) -> Scope:
        try:
            user = tokens.read_user_token(self.secret, token)
        except tokens.TokenError as exc:
            raise ProxyError(401, "affinity_bad_credential", f"user token: {exc}") from None
        headers = [(k, v) for k, v in scope.get("headers", []) if k != b"x-user-id"]
        sent = [v for k, v in scope.get("headers", []) if k == b"x-user-id"]
        if any(v.decode("latin-1") != user for v in sent):
            raise ProxyError(
                403,
                "affinity_user_mismatch",
                "X-User-Id differs from the user the token was issued for",
            )
        headers.append((b"x-user-id", user.encode()))
        return {**scope, "headers": headers, TOKEN_USER: user}
