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
