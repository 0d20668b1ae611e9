"""Helpers every command module shares: settings, the one way to fail, and the checks a
command runs before it touches the cluster."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import NoReturn

import click
from opensearchpy import OpenSearch

from rewriter import config
from rewriter.engine.bootstrap import missing_aliases
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


def not_bootstrapped(s: config.Settings, missing: Sequence[str]) -> str:
    """What to say when affinity's aliases `missing` do not exist on the cluster."""
    prefix = f" for AFFINITY_INDEX_PREFIX {s.indices.prefix!r}" if s.indices.prefix else ""
    return (
        f"OpenSearch at {s.opensearch_url} has no affinity indices{prefix} (missing: "
        f"{', '.join(missing)}): run `affinity bootstrap` first, then this command again."
    )


def requires_bootstrap(es: OpenSearch) -> OpenSearch:
    """`es`, once affinity's indices exist on its cluster; else exit saying to bootstrap.

    Every command that reads or writes affinity's indices calls this first: before bootstrap
    a write would create an index with OpenSearch's dynamic mapping, and a read would fail."""
    s = settings()
    missing = missing_aliases(es, s)
    if missing:
        fail(not_bootstrapped(s, missing))
    return es
