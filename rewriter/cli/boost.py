"""Merchandiser commands: `affinity boost check|preview|diff`.

Thin, like cli.py (which registers them): parse, call the package, print.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from rewriter import config
from rewriter.boost.profile import BoostProfile
from rewriter.cli.common import client as _client
from rewriter.cli.common import engine_problem, requires_bootstrap
from rewriter.cli.common import fail as _fail
from rewriter.cli.common import settings as _settings
from rewriter.engine.client import connect

if TYPE_CHECKING:
    from rewriter.ranking.rewrite import RequestContext


@click.group(help="Merchandiser boost profiles (profiles/*.yaml): check, preview, diff.")
def boost() -> None:
    pass


def _boost_index(index: str | None, s: config.Settings) -> Callable[[BoostProfile], str]:
    """--index, else the first index whose default profile this is, else the catalog alias."""
    from rewriter.measure.boost_compare import boost_index

    return lambda profile: boost_index(s, profile.name, index)


def _load_boost_file(path: Path) -> BoostProfile:
    from rewriter.boost.profile import BoostProfileError, load_boost_profile

    try:
        return load_boost_profile(path)
    except BoostProfileError as exc:
        _fail(f"{exc}\n{path} is invalid; `affinity boost check {path}` lists every problem")
        raise  # unreachable: _fail exits


def _context_option(value: str | None) -> RequestContext:
    from rewriter.ranking.rewrite import RequestContext

    try:
        raw = json.loads(value) if value else {}
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise click.BadParameter('give a JSON object, e.g. {"device": "mobile", "geo": "DE"}')
    device, geo = raw.get("device"), raw.get("geo")
    return RequestContext(
        device=device if isinstance(device, str) else None,
        geo=geo if isinstance(geo, str) else None,
        raw=raw,
    )


_BOOST_INDEX = click.option(
    "--index",
    default=None,
    help="Catalog index or alias (default: the index whose default "
    "profile it is (AFFINITY_INDEX_PROFILES), else the catalog alias).",
)
_CONTEXT = click.option(
    "--context",
    "context_json",
    default=None,
    help='Request context as X-User-Context would send it, e.g. \'{"device": "mobile"}\'.',
)


@boost.command(
    "check",
    help="Validate boost profiles (default: every file in the profiles directory): keys, "
    "types, ranges, segments, schedules, pins; then fields and pinned items against the "
    "catalog mapping. Prints file:line:column: problem; exit 1 on errors, 2 if the catalog "
    "could not be checked (use --offline to skip it on purpose).",
)
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
@_BOOST_INDEX
@click.option("--offline", is_flag=True, help="Check the files only, not the catalog.")
def boost_check(files: tuple[Path, ...], index: str | None, offline: bool) -> None:
    from rewriter.boost import checker
    from rewriter.measure import boost_catalog

    s = _settings()
    paths = list(files) or sorted(Path(s.boost_dir).glob("*.yaml"))
    if not paths:
        _fail(f"no boost profiles given and none in {s.boost_dir}", 2)
    lookup, problem = None, None
    if not offline:  # the files are checked even when the catalog cannot be
        es = connect(s, timeout=10)
        problem = engine_problem(es, s)
        if problem is None:
            lookup = boost_catalog.engine_catalog(es, _boost_index(index, s))
    report = checker.check_files(paths, lookup)
    for finding in report.findings:
        click.echo(str(finding))
    for note in report.catalog_notes:
        click.echo(note, err=True)
    if problem:
        click.echo(
            f"catalog not checked: {problem} Or pass --offline to check the files only.", err=True
        )
    unchecked = bool(problem or report.catalog_notes)
    warnings = len(report.findings) - len(report.errors)
    click.echo(
        f"{len(paths)} file(s): {len(report.errors)} error(s), {warnings} warning(s)"
        + ("" if offline or unchecked else ", fields checked against the catalog")
    )
    if report.errors:
        sys.exit(1)
    if unchecked:
        sys.exit(2)


@boost.command(
    "preview",
    help="Generic, personalized and personalized-with-rules rankings of QUERY for a user, "
    "side by side, and what moved each item (affinity, which rule, by how much).",
)
@click.option(
    "--boost-profile",
    "--profile",
    "profile_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The boost profile file to preview (it need not be deployed).",
)
@click.option("--user", "user_id", required=True, help="Raw user id (pseudonymized inside).")
@_BOOST_INDEX
@_CONTEXT
@click.option("--size", type=int, default=10, show_default=True)
@click.argument("query")
def boost_preview(
    profile_file: Path,
    user_id: str,
    index: str | None,
    context_json: str | None,
    size: int,
    query: str,
) -> None:
    from rewriter.measure import boost_compare

    s = _settings()
    profile = _load_boost_file(profile_file)
    es = requires_bootstrap(_client(30))
    pv = boost_compare.preview(
        es,
        s,
        _boost_index(index, s)(profile),
        profile,
        user_id,
        query,
        size,
        _context_option(context_json),
    )
    click.echo(boost_compare.format_preview(pv, size))


@boost.command(
    "diff",
    help="Compare two versions of a boost profile over sampled users and queries: top-10 "
    "results that change, mean and largest rank shifts, how often each rule fires.",
)
@click.argument("old", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("new", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--users",
    type=int,
    default=50,
    show_default=True,
    help="Users sampled from the profiles index (fixed seed).",
)
@click.option(
    "--queries",
    "queries_file",
    default=None,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="One query per line (an empty line browses). Default: words sampled from "
    "catalog titles, plus browse.",
)
@_BOOST_INDEX
@_CONTEXT
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def boost_diff(
    old: Path,
    new: Path,
    users: int,
    queries_file: Path | None,
    index: str | None,
    context_json: str | None,
    seed: int,
    as_json: bool,
) -> None:
    from rewriter.measure import boost_diff

    s = _settings()
    before, after = _load_boost_file(old), _load_boost_file(new)
    queries = None
    if queries_file:
        queries = queries_file.read_text(encoding="utf-8").splitlines()
    es = requires_bootstrap(_client(60))
    report = boost_diff.diff(
        es,
        s,
        _boost_index(index, s)(after),
        before,
        after,
        users=users,
        queries=queries,
        context=_context_option(context_json),
        seed=seed,
    )
    if as_json:
        click.echo(json.dumps(report.as_json(), indent=2, ensure_ascii=False))
    else:
        click.echo(boost_diff.format_diff(report))
