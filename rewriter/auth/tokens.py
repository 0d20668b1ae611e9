"""Signed, short-lived tokens (itsdangerous): user tokens for browser-side events and
searches, staff session cookies, and the CSRF token of each session.

Every signing key is derived from the deployment's one secret (config.user_secret, the
pseudonymization key) with its own purpose, so a session cookie never passes as a user token.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

USER_TOKEN_PREFIX = "afu_"
USER_TOKEN_TTL_S = 3600
SESSION_TTL_S = 8 * 3600


class TokenError(ValueError):
    """A token that is malformed, forged or expired; the message says which."""


def _serializer(secret: bytes, purpose: str) -> URLSafeTimedSerializer:
    key = hmac.new(secret, f"affinity-{purpose}-v1".encode(), hashlib.sha256).hexdigest()
    return URLSafeTimedSerializer(key, salt=purpose)


def issue_user_token(secret: bytes, user_id: str) -> str:
    """A token that lets a browser search and send events as `user_id` only."""
    return USER_TOKEN_PREFIX + _serializer(secret, "user-token").dumps({"u": user_id})


def read_user_token(secret: bytes, token: str, max_age: int = USER_TOKEN_TTL_S) -> str:
    """The user id a token was issued for; TokenError when it is not valid now."""
    if not token.startswith(USER_TOKEN_PREFIX):
        raise TokenError("not a user token (they start with afu_)")
    data = _load(_serializer(secret, "user-token"), token[len(USER_TOKEN_PREFIX) :], max_age)
    user = data.get("u") if isinstance(data, dict) else None
    if not isinstance(user, str) or not user:
        raise TokenError("the user token names no user")
    return user


@dataclass(frozen=True)
class Session:
    """A logged-in staff member: name, role, and the nonce that binds the CSRF token."""

    staff: str
    role: str
    nonce: str


def issue_session(secret: bytes, session: Session) -> str:
    body = {"s": session.staff, "r": session.role, "n": session.nonce}
    return _serializer(secret, "session").dumps(body)


def read_session(secret: bytes, cookie: str, max_age: int = SESSION_TTL_S) -> Session:
    data = _load(_serializer(secret, "session"), cookie, max_age)
    if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in "srn"):
        raise TokenError("the session cookie is malformed")
    return Session(data["s"], data["r"], data["n"])


def csrf_token(secret: bytes, session: Session) -> str:
    """The token every form of this session carries (HMAC of the session's nonce)."""
    key = hmac.new(secret, b"affinity-csrf-v1", hashlib.sha256).digest()
    return hmac.new(key, session.nonce.encode(), hashlib.sha256).hexdigest()


def csrf_ok(secret: bytes, session: Session, presented: str | None) -> bool:
    return bool(presented) and hmac.compare_digest(csrf_token(secret, session), presented or "")


def _load(serializer: URLSafeTimedSerializer, token: str, max_age: int) -> object:
    try:
        return serializer.loads(token, max_age=max_age)
    except SignatureExpired:
        raise TokenError("the token has expired") from None
    except BadSignature:
        raise TokenError("the token's signature is not valid") from None
