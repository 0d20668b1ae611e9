"""Signed tokens, hashes and the auth mode: pure, no engine."""

from __future__ import annotations

import time

import pytest

from rewriter.auth import hashing, mode, tokens

SECRET = b"unit-test-secret-0123456789abcdef"


def test_user_token_round_trip_and_forgery() -> None:
    token = tokens.issue_user_token(SECRET, "user-42")
    assert token.startswith("afu_")
    assert tokens.read_user_token(SECRET, token) == "user-42"
    with pytest.raises(tokens.TokenError, match="signature"):
        tokens.read_user_token(b"another-secret-0123456789abcdef!", token)
    tampered = token[:-3] + ("AAA" if token[-3:] != "AAA" else "BBB")
    with pytest.raises(tokens.TokenError, match="signature"):
        tokens.read_user_token(SECRET, tampered)
    with pytest.raises(tokens.TokenError, match="not a user token"):
        tokens.read_user_token(SECRET, "afk_abc_def")


def test_user_token_expires() -> None:
    token = tokens.issue_user_token(SECRET, "u")
    time.sleep(1.1)
    with pytest.raises(tokens.TokenError, match="expired"):
        tokens.read_user_token(SECRET, token, max_age=0)


def test_a_session_cookie_is_not_a_user_token() -> None:
    cookie = tokens.issue_session(SECRET, tokens.Session("ann", "viewer", "n1"))
    with pytest.raises(tokens.TokenError):
        tokens.read_user_token(SECRET, tokens.USER_TOKEN_PREFIX + cookie)
    assert tokens.read_session(SECRET, cookie) == tokens.Session("ann", "viewer", "n1")
    time.sleep(1.1)
    with pytest.raises(tokens.TokenError, match="expired"):
        tokens.read_session(SECRET, cookie, max_age=0)


def test_csrf_token_is_bound_to_the_session() -> None:
    a = tokens.Session("ann", "viewer", "nonce-a")
    b = tokens.Session("ann", "viewer", "nonce-b")
    assert tokens.csrf_ok(SECRET, a, tokens.csrf_token(SECRET, a))
    assert not tokens.csrf_ok(SECRET, a, tokens.csrf_token(SECRET, b))
    assert not tokens.csrf_ok(SECRET, a, None)
    assert not tokens.csrf_ok(SECRET, a, "")


def test_key_hashing() -> None:
    key_id, secret, full = hashing.new_key()
    assert full == f"afk_{key_id}_{secret}"
    assert hashing.split_key(full) == (key_id, secret)
    stored = hashing.hash_secret(secret)
    assert stored.startswith("$argon2id$") and secret not in stored
    assert hashing.verify_secret(stored, secret)
    assert not hashing.verify_secret(stored, secret + "x")
    assert not hashing.verify_secret("not-a-hash", secret)
    assert hashing.split_key("afk_nosecret") is None
    assert hashing.split_key("Bearer x") is None


@pytest.mark.parametrize(
    ("setting", "host", "resolved"),
    [
        ("auto", "127.0.0.1", "off"),
        ("auto", "localhost", "off"),
        ("auto", "::1", "off"),
        ("auto", "0.0.0.0", "required"),
        ("auto", "10.1.2.3", "required"),
        ("auto", "shop.internal", "required"),
        ("off", "0.0.0.0", "off"),
        ("required", "127.0.0.1", "required"),
    ],
)
def test_auth_mode(setting: str, host: str, resolved: str) -> None:
    assert mode.resolve(setting, host) == resolved


def test_auth_setting_is_checked() -> None:
    from rewriter import config

    assert config.load({"AFFINITY_AUTH": "Required"}).auth == "required"
    assert config.load({}).auth == "auto"
    with pytest.raises(config.SettingError, match="AFFINITY_AUTH='on' is not one of"):
        config.load({"AFFINITY_AUTH": "on"})
