"""Helpers every command module shares: settings and the one way to fail."""

from __future__ import annotations

import sys
from typing import NoReturn

import click
from opensearchpy import OpenSearch

from rewriter import config
from rewriter.engine.client import connect


def settings() -> config.Settings:
    return config.load()


def fail(message: str, code: int = 1) -> NoReturn:
    """Print `message` in red on stderr and exit with `code`."""
    click.secho(message, fg="red", err=True)
    sys.exit(code)


def client(timeout: float = 120) -> OpenSearch:
    """A client for the configured cluster; fails clearly when no pseudonymization key."""
    s = settings()
    try:
        config.user_secret(s)
    except config.SecretMissing as exc:
        fail(str(exc))
    return connect(s, timeout=timeout)
