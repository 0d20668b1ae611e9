"""Staff sign-in for the dashboard: signed session cookies that expire, a CSRF token on every
form, a login rate limit, and the one check every page makes (`require`).

A request is a staff member's when it carries a valid session cookie (auth/tokens.py) of an
enabled account, or an API key with the `admin` scope (`Authorization: Bearer afk_...`; the
admin role). With AFFINITY_AUTH off there is no sign-in at all: every request acts as
`local` with the admin role (for local experiments only).
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import deque
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from rewriter.auth import hashing, roles, tokens
from rewriter.auth.store import AuthStore, key_matches

COOKIE = "affinity_session"
LOGIN_WINDOW_S = 300.0
LOGIN_ATTEMPTS = 5
CLIENT_ATTEMPTS = 20
"""At most LOGIN_ATTEMPTS failed sign-ins per account name, and CLIENT_ATTEMPTS per client
address (offices share one), in LOGIN_WINDOW_S seconds; the next ones get 429 until the
window has passed, whatever the password."""


class Refused(Exception):
    """The request may not do this: `status` 401 (sign in), 403 (role) or 429."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Staff:
    """Who is asking: a name, a role, and their CSRF token ('' for key-authenticated calls,
    which carry no cookie and so need none)."""

    name: str
    role: str
    csrf: str
    via_key: bool = False

    def may(self, action: roles.Action) -> bool:
        return roles.allowed(self.role, action)


class LoginLimiter:
    """Failed sign-ins per account name and per client address, in a sliding window."""

    def __init__(
        self,
        attempts: int = LOGIN_ATTEMPTS,
        per_client: int = CLIENT_ATTEMPTS,
        window: float = LOGIN_WINDOW_S,
    ) -> None:
        self.attempts = attempts
        self.per_client = per_client
        self.window = window
        self._failures: dict[str, deque[float]] = {}

    def blocked(self, *keys: str) -> bool:
        now = time.monotonic()
        return any(
            len(self._recent(k, now))
            >= (self.per_client if k.startswith("client:") else self.attempts)
            for k in keys
        )

    def failed(self, *keys: str) -> None:
        for key in keys:
            self._failures.setdefault(key, deque()).append(time.monotonic())

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._failures.get(key, deque())
        while q and now - q[0] > self.window:
            q.popleft()
        return q


class Gate:
    """Sessions of one app: the auth mode, the signing secret, the account store."""

    def __init__(self, required: bool, secret: bytes, store: AuthStore) -> None:
        self.required = required
        self.secret = secret
        self.store = store
        self.limiter = LoginLimiter()

    def new_session(self, name: str, role: str) -> str:
        return tokens.issue_session(self.secret, tokens.Session(name, role, secrets.token_hex(16)))

    async def staff(self, request: Request) -> Staff | None:
        """The signed-in staff member, or None."""
        if not self.required:
            session = tokens.Session("local", "admin", "auth-off")
            return Staff("local", "admin", tokens.csrf_token(self.secret, session))
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            return await self._by_key(header[7:].strip())
        cookie = request.cookies.get(COOKIE)
        if not cookie:
            return None
        try:
            session = tokens.read_session(self.secret, cookie)
        except tokens.TokenError:
            return None
        record = await run_in_threadpool(self.store.staff, session.staff)
        if record is None or record.disabled:  # disabled accounts lose their sessions
            return None
        return Staff(record.name, record.role, tokens.csrf_token(self.secret, session))

    async def _by_key(self, presented: str) -> Staff | None:
        parts = hashing.split_key(presented)
        if parts is None:
            raise Refused(401, "the dashboard takes a staff session or an admin-scope API key")
        keys = {k.key_id: k for k in await run_in_threadpool(self.store.list_keys)}
        record = keys.get(parts[0])
        if record is None or not await run_in_threadpool(key_matches, record, parts[1]):
            raise Refused(401, "the API key is unknown, revoked or wrong")
        if not roles.scope_allows(record.scopes, "admin"):
            raise Refused(
                403,
                f"key {record.key_id} ({', '.join(record.scopes)}) lacks the 'admin' scope the "
                "dashboard needs",
            )
        return Staff(f"key:{record.key_id}", roles.SCOPE_ROLE["admin"], "", via_key=True)

    async def require(self, request: Request, action: roles.Action) -> Staff:
        """The staff member, if they may take `action`; for a POST also a valid CSRF token."""
        staff = await self.staff(request)
        if staff is None:
            raise Refused(401, "sign in first")
        if not staff.may(action):
            raise Refused(403, f"the {staff.role} role may not {action.replace('_', ' ')}")
        if request.method == "POST" and not staff.via_key:
            form = await request.form()
            presented = form.get("csrf")
            if not isinstance(presented, str) or not hmac.compare_digest(presented, staff.csrf):
                raise Refused(
                    403, "the form's CSRF token is missing or wrong: reload the page and retry"
                )
        return staff
