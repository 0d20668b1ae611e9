"""Pseudonymous user ids: the only form of a user id that affinity stores.

Raw user ids (what the application sends in `X-User-Id` or in events) are turned into a keyed
HMAC-SHA256 pseudonym before anything is written. Without the secret the pseudonym cannot be
reversed or recomputed from a guessed id (unlike a plain hash of an e-mail address), and
rotating the secret unlinks every stored profile from its user.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

SECRET_BYTES = 32
"""Length of a generated secret: 256 bits, the output size of SHA-256."""

MIN_SECRET_BYTES = 16
"""Shorter secrets are refused: they make pseudonyms guessable by brute force."""

PSEUDONYM_HEX_CHARS = 32
"""Pseudonyms are the first 128 bits of the HMAC, hex: short doc ids, no practical collisions."""


class SecretError(RuntimeError):
    """The pseudonymization secret is missing, unreadable or too short."""


def pseudonymize(raw_user_id: str, secret: bytes) -> str:
    """Return the stable pseudonym (32 lowercase hex chars) of `raw_user_id` under `secret`.

    The id is used exactly as given (no trimming or case folding): normalizing ids is the
    application's decision, and silently merging "Bob" and "bob" would merge two users.
    """
    if not raw_user_id:
        raise ValueError("user id is empty; send the application's id for the user")
    if len(secret) < MIN_SECRET_BYTES:
        raise SecretError(
            f"pseudonymization secret is {len(secret)} bytes; use at least {MIN_SECRET_BYTES}"
        )
    digest = hmac.new(secret, raw_user_id.encode("utf-8"), hashlib.sha256).hexdigest()
    return digest[:PSEUDONYM_HEX_CHARS]


def load_or_create_secret(path: Path) -> bytes:
    """Read the secret at `path`, creating it (32 random bytes, mode 0600) on first use.

    Creation uses O_EXCL, so two processes starting at once cannot both write a secret: the
    loser reads the winner's. An existing file is never rewritten, because a new secret would
    orphan every stored profile.
    """
    if not path.exists():
        _create_secret(path)
    return _read_secret(path)


def _create_secret(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if path.exists():  # another process won the race: read its secret
            return
        raise SecretError(
            f"cannot create the pseudonymization secret {path}: a parent is not a directory"
        ) from None
    except OSError as err:
        raise SecretError(
            f"cannot create the pseudonymization secret {path}: {err.strerror}; "
            "make its directory writable or set AFFINITY_SECRET"
        ) from err
    with os.fdopen(fd, "wb") as out:
        out.write(secrets.token_bytes(SECRET_BYTES))


def _read_secret(path: Path) -> bytes:
    try:
        secret = path.read_bytes()
    except OSError as err:
        raise SecretError(
            f"cannot read the pseudonymization secret {path}: {err.strerror}; "
            "fix its permissions (it should be mode 0600, owned by this user)"
        ) from err
    if len(secret) < MIN_SECRET_BYTES:
        raise SecretError(
            f"pseudonymization secret {path} holds {len(secret)} bytes, fewer than "
            f"{MIN_SECRET_BYTES}; restore it from backup (deleting it unlinks all profiles)"
        )
    return secret
