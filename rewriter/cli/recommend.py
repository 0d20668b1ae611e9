"""`affinity recommendations build`: the co-view and co-purchase tables behind `related` and
`bought_together` (recommend/build.py).

Thin, like cli.py (which registers it): parse, call the package, print.
"""

from __future__ import annotations

import json
from dataclasses import asdict

import click
from opensearchpy.exceptions import OpenSearchException

from rewriter.cli.common import client as _client
from rewriter.cli.common import explain, requires_bootstrap
from rewriter.cli.common import fail as _fail
from rewriter.cli.common import settings as _settings
from rewriter.cooccurrence.pairs import PAIR_WINDOW, SESSION_GAP_SECONDS


@click.group(help="Recommendation carousels (POST /_affinity/recommend): pair tables, reports.")
def recommendations() -> None:
    pass


@recommendations.command(
    "build",
    help="Count co-views and co-purchases in sessions of the events log (only events since the "
    "last build, unless --full), score pairs by log-likelihood ratio, and swap the new tables in "
    "behind the alias. The recommend endpoint serves the old tables until the swap.",
)
@click.option("--full", is_flag=True, help="Recount every event instead of adding new ones.")
@click.option(
    "--window",
    type=int,
    default=PAIR_WINDOW,
    show_default=True,
    help="Pair items at most this many positions apart in a session.",
)
@click.option(
    "--gap-minutes",
    type=float,
    default=SESSION_GAP_SECONDS / 60,
    show_default=True,
    help="A new session starts after this long without an event (events without session_id).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def build(full: bool, window: int, gap_minutes: float, as_json: bool) -> None:
    from rewriter.recommend import build as table_build

    if window < 1 or gap_minutes <= 0:
        _fail("--window must be at least 1 and --gap-minutes above 0")
    s = _settings()
    es = requires_bootstrap(_client())
    try:
        result = table_build.build(
            es,
            s,
            window=window,
            gap=gap_minutes * 60,
            full=full,
            progress=lambda m: click.echo(m, err=True),
        )
    except OpenSearchException as exc:
        _fail(explain(exc, s))
    if as_json:
        click.echo(json.dumps(asdict(result), indent=2))
        return
    click.echo(f"tables: {result.index} (replaced {result.previous or 'nothing'})")
    click.echo(f"events read: {result.events}")
    for model in result.sessions:
        click.echo(
            f"{model}: {result.new_sessions[model]} new sessions, {result.sessions[model]} in all, "
            f"{result.items[model]} items, {result.with_neighbors[model]} with neighbours"
        )


def _report(kind: str, as_json: bool) -> None:
    from rewriter.measure import placement_report

    s = _settings()
    es = requires_bootstrap(_client())
    try:
        report = placement_report.fetch(es, s, kind)
    except OpenSearchException as exc:
        _fail(explain(exc, s))
    if as_json:
        click.echo(json.dumps(placement_report.to_json(report), indent=2))
    else:
        click.echo(placement_report.render(report, kind))


@recommendations.command(
    "report",
    help="Carousels served per model, clicked and bought (events carrying recommendation_id), "
    "per segment and experiment variant: CTR and conversion with 95% intervals.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
def recommendations_report(as_json: bool) -> None:
    _report("recommendations", as_json)


@click.group(help="Banners and offers per slot (boost profiles' placements:): reports.")
def placements() -> None:
    pass


@placements.command(
    "report",
    help="Placements served, shown, clicked and bought (events carrying decision_id), per "
    "segment and experiment variant: CTR and conversion with 95% intervals.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
def placements_report(as_json: bool) -> None:
    _report("placements", as_json)


@click.group(help="Audits of what personalization does to what people see.")
def audit() -> None:
    pass


@audit.command(
    "exposure",
    help="For a sample of users and queries, each brand's and category's share of the top-10 "
    "exposure at each alpha (0 = generic), with the Gini coefficient of the shares.",
)
@click.option("--boost-profile", "boost_name", default="default", show_default=True)
@click.option("--alpha", "alphas", type=float, multiple=True, help="Repeat; default 0, 1, 2.")
@click.option("--users", type=int, default=50, show_default=True)
@click.option("--query", "queries", multiple=True, help="Repeat; default: a few title words.")
@click.option("--index", default=None, help="Catalog index (default: the catalog alias).")
def audit_exposure(
    boost_name: str,
    alphas: tuple[float, ...],
    users: int,
    queries: tuple[str, ...],
    index: str | None,
) -> None:
    from rewriter.boost.profile import load_directory
    from rewriter.measure import exposure_audit

    s = _settings()
    boosts, _ = load_directory(s.boost_dir)
    if boost_name not in boosts:
        _fail(f"boost profile {boost_name!r} is not in {s.boost_dir} (known: {', '.join(boosts)})")
    es = requires_bootstrap(_client())
    try:
        rows = exposure_audit.audit(
            es,
            s,
            boosts[boost_name],
            alphas or (0.0, 1.0, 2.0),
            users,
            queries or exposure_audit.DEFAULT_QUERIES,
            index=index,
        )
    except OpenSearchException as exc:
        _fail(explain(exc, s))
    click.echo(exposure_audit.render(rows))


@click.command(
    "export",
    help="Export what affinity learned, one row per user keyed by pseudonym: `segments` (the "
    "boost profile's segments that hold on each profile) or `profiles` (also the top values "
    "per attribute). Opted-out and deleted users never appear.",
)
@click.argument("kind", type=click.Choice(["segments", "profiles"]))
@click.option("--since", default=None, help="Only profiles updated since (ISO 8601 or epoch s).")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl")
@click.option("--boost-profile", "boost_name", default="default", show_default=True)
def export(kind: str, since: str | None, fmt: str, boost_name: str) -> None:
    from rewriter.boost.profile import load_directory
    from rewriter.events.fields import parse_timestamp
    from rewriter.ingest import profile_export

    s = _settings()
    boosts, _ = load_directory(s.boost_dir)
    if boost_name not in boosts:
        _fail(f"boost profile {boost_name!r} is not in {s.boost_dir} (known: {', '.join(boosts)})")
    try:
        start = parse_timestamp(since) if since else None
    except ValueError as exc:
        _fail(f"--since: {exc}")
    es = requires_bootstrap(_client())
    if fmt == "csv":
        click.echo(profile_export.csv_header(kind))
    try:
        for found in profile_export.rows(es, s, boosts[boost_name], kind, start):
            click.echo(profile_export.render(found, fmt))
    except OpenSearchException as exc:
        _fail(explain(exc, s))
