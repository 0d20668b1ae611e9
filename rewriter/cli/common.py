"""Helpers every command module shares: settings, the one way to fail, the checks a command
runs before it touches the cluster, and what to say about an error from any command."""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from typing import NoReturn

import click
from opensearchpy import OpenSearch
from opensearchpy.exceptions import AuthenticationException, NotFoundError, TransportError
from opensearchpy.exceptions import ConnectionError as EngineUnreachable

from rewriter import config
from rewriter.boost.profile import BoostProfileError
from rewriter.boost.rules_schema import duration_seconds
from rewriter.engine import local_node
from rewriter.engine.bootstrap import TEMPLATE_NAMES, missing_aliases
from rewriter.engine.client import EngineUnavailable, connect
from rewriter.experiments.assignment import ExperimentError
from rewriter.ingest.event_files import FoldProfileError


def settings() -> config.Settings:
    return config.load()


def fail(message: str, code: int = 1) -> NoReturn:
    """Print `message` in red on stderr and exit with `code`."""
    click.secho(message, fg="red", err=True)
    sys.exit(code)


def since_seconds(since: str) -> float:
    """A `--since` period (30d, 12h, 2w, ...) in seconds; exit 2 naming it otherwise."""
    seconds = duration_seconds(since)
    if seconds is None:
        fail(f"--since {since!r}: expected a duration like 30d (units s m h d w)", 2)
    return seconds


def client(timeout: float = 120) -> OpenSearch:
    """A client for the configured cluster; fails clearly when no pseudonymization key."""
    s = settings()
    try:
        config.user_secret(s)
    except config.SecretMissing as exc:
        fail(str(exc))
    return connect(s, timeout=timeout)


# --------------------------------------------------------------------------- what to say
def unreachable(s: config.Settings, exc: Exception) -> str:
    """Nothing answers at the configured URL."""
    found = re.search(r"\[Errno -?\d+\] ([^)\]'\"]+)", str(exc))
    where = (
        f"OpenSearch at {s.opensearch_url} is not reachable "
        f"({found.group(1) if found else exc.__class__.__name__})"
    )
    if s.remote:
        return (
            f"{where}: check that OPENSEARCH_URL points at a running cluster, or unset it and "
            "start the local engine with `affinity engine start`."
        )
    return (
        f"{where}: start the local engine with `affinity engine start`, or set OPENSEARCH_URL "
        "to a running cluster."
    )


def not_bootstrapped(s: config.Settings, missing: Sequence[str]) -> str:
    """Affinity's aliases `missing` do not exist on the cluster."""
    prefix = f" for AFFINITY_INDEX_PREFIX {s.indices.prefix!r}" if s.indices.prefix else ""
    return (
        f"OpenSearch at {s.opensearch_url} has no affinity indices{prefix} (missing: "
        f"{', '.join(missing)}): run `affinity bootstrap` first, then this command again."
    )


def _missing_index(s: config.Settings, exc: NotFoundError) -> str:
    info = exc.info if isinstance(exc.info, dict) else {}
    error = info.get("error") if isinstance(info.get("error"), dict) else {}
    found = re.search(r"no such index \[([^\]]+)\]", str(exc))
    name = str(error.get("index") or (found.group(1) if found else "?"))
    if name in {s.indices.alias(t) for t in TEMPLATE_NAMES}:
        return not_bootstrapped(s, [name])
    return (
        f"OpenSearch at {s.opensearch_url} has no index or alias {name!r}: check the name "
        "(--index), or load it first."
    )


def _refused(s: config.Settings, exc: TransportError) -> str:
    if isinstance(exc, AuthenticationException):
        return (
            f"OpenSearch at {s.opensearch_url} refused the credentials (401): set "
            "OPENSEARCH_USER and OPENSEARCH_PASSWORD to a user of that cluster."
        )
    info = exc.info if isinstance(exc.info, dict) else {}
    error = info.get("error") if isinstance(info.get("error"), dict) else {}
    reason = error.get("reason") or exc.info or exc.error
    return (
        f"OpenSearch at {s.opensearch_url} refused a request ({exc.status_code} {exc.error}): "
        f"{reason}"
    )


EXPLAINED: tuple[type[Exception], ...] = (
    TransportError,  # the engine: unreachable (its ConnectionError), an index missing, refused
    EngineUnavailable,
    local_node.EngineError,
    config.SecretMissing,
    BoostProfileError,
    FoldProfileError,
    ExperimentError,
)
"""Errors any command may meet that a person can act on: the command group turns each into
one line (`explain`) instead of a traceback."""


def explain(exc: Exception, s: config.Settings) -> str:
    """One line for an EXPLAINED error: what happened and what to run."""
    if isinstance(exc, EngineUnreachable):
        return unreachable(s, exc)
    if isinstance(exc, NotFoundError) and exc.error == "index_not_found_exception":
        return _missing_index(s, exc)
    if isinstance(exc, TransportError):
        return _refused(s, exc)
    return str(exc)


# --------------------------------------------------------------------------- checks
def engine_problem(es: OpenSearch, s: config.Settings) -> str | None:
    """Why a command on affinity's indices cannot run on `es`'s cluster (unreachable, or not
    bootstrapped under the prefix), or None."""
    try:
        missing = missing_aliases(es, s)
    except EngineUnreachable as exc:
        return unreachable(s, exc)
    return not_bootstrapped(s, missing) if missing else None


def requires_bootstrap(es: OpenSearch) -> OpenSearch:
    """`es`, once affinity's indices exist on its cluster; else exit saying what to run.

    Every command that reads or writes affinity's indices calls this first: before bootstrap
    a write would create an index with OpenSearch's dynamic mapping, and a read would fail."""
    problem = engine_problem(es, settings())
    if problem:
        fail(problem)
    return es


def requires_engine(es: OpenSearch) -> OpenSearch:
    """`es`, once its cluster answers; for commands that set up their own indices. Checked
    before their local work, so they fail at once rather than after it."""
    try:
        es.info()
    except EngineUnreachable as exc:
        fail(unreachable(settings(), exc))
    return es
