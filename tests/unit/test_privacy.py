"""Pseudonyms and the secret file."""

from __future__ import annotations

import hashlib
import hmac
import stat
from pathlib import Path

import pytest

from rewriter.privacy import (
    MIN_SECRET_BYTES,
    PSEUDONYM_HEX_CHARS,
    SECRET_BYTES,
    SecretError,
    load_or_create_secret,
    pseudonymize,
)

KEY = bytes(range(32))


def test_pseudonym_is_truncated_hmac_sha256_hex() -> None:
    expected = hmac.new(KEY, b"alice@example.com", hashlib.sha256).hexdigest()[:32]
    assert pseudonymize("alice@example.com", KEY) == expected
    assert len(expected) == PSEUDONYM_HEX_CHARS
    assert int(expected, 16) >= 0  # hex


def test_pseudonym_known_answer() -> None:
    # Pinned: a change here orphans every stored profile, so it must be deliberate.
    assert pseudonymize("u1", b"k" * 32) == "4b3cc1583c6d0617acde108c31b20bc7"


def test_pseudonym_depends_on_secret_and_exact_id() -> None:
    other_key = bytes(reversed(KEY))
    assert pseudonymize("bob", KEY) == pseudonymize("bob", KEY)
    assert pseudonymize("bob", KEY) != pseudonymize("bob", other_key)
    assert pseudonymize("bob", KEY) != pseudonymize("Bob", KEY)
    assert pseudonymize("bob", KEY) != pseudonymize("bob ", KEY)


def test_pseudonym_refuses_empty_id_and_short_secret() -> None:
    with pytest.raises(ValueError, match="user id is empty"):
        pseudonymize("", KEY)
    with pytest.raises(SecretError, match=f"at least {MIN_SECRET_BYTES}"):
        pseudonymize("bob", b"short")


def test_secret_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "secret"
    first = load_or_create_secret(path)
    assert len(first) == SECRET_BYTES
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_secret(path) == first
    assert path.read_bytes() == first


def test_two_new_secrets_differ(tmp_path: Path) -> None:
    assert load_or_create_secret(tmp_path / "a") != load_or_create_secret(tmp_path / "b")


def test_existing_secret_is_used_as_is(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_bytes(b"x" * 40)
    assert load_or_create_secret(path) == b"x" * 40


def test_unreadable_secret_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.mkdir()  # a directory cannot be read as bytes, even by root
    with pytest.raises(SecretError, match=r"cannot read the pseudonymization secret .*secret"):
        load_or_create_secret(path)


def test_truncated_secret_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_bytes(b"abc")
    with pytest.raises(SecretError, match="holds 3 bytes"):
        load_or_create_secret(path)


def test_uncreatable_secret_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(SecretError, match="cannot create the pseudonymization secret"):
        load_or_create_secret(blocker / "secret")
