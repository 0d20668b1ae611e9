"""Passwords and API key secrets: argon2id hashes (argon2-cffi), never the secret itself.

An API key reads `afk_<id>_<secret>`: the id finds the stored record, the secret is checked
against its argon2 hash. Keys are shown once, when created.
"""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

KEY_PREFIX = "afk_"

_HASHER = PasswordHasher()


def hash_secret(secret: str) -> str:
    return _HASHER.hash(secret)


def verify_secret(stored_hash: str, secret: str) -> bool:
    try:
        return _HASHER.verify(stored_hash, secret)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def new_key() -> tuple[str, str, str]:
    """(key id, secret, the full key to hand out once)."""
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(24)
    return key_id, secret, f"{KEY_PREFIX}{key_id}_{secret}"


def split_key(presented: str) -> tuple[str, str] | None:
    """(key id, secret) of a presented key, or None when it is not shaped like one."""
    if not presented.startswith(KEY_PREFIX):
        return None
    key_id, sep, secret = presented[len(KEY_PREFIX) :].partition("_")
    if not sep or not key_id or not secret or len(presented) > 200:
        return None
    return key_id, secret
