"""`affinity facets report`: how each segment uses each facet (measure/facets_report.py).

Thin, like cli.py (which registers it): parse, call the package, print.
"""

from __future__ import annotations

import json

import click

from rewriter.cli.common import client as _client
from rewriter.cli.common import requires_bootstrap, since_seconds
from rewriter.cli.common import settings as _settings
from rewriter.measure import facets_report


@click.group(help="Facets ordered by the user: how segments use them.")
def facets() -> None:
    pass


@facets.command(
    "report",
    help="Per segment and facet: searches that showed it, facet_select events that picked "
    "one of its values (joined by query_id), and the selection rate; notes where a segment "
    "never or rarely uses a facet (what to hide or reweight in the boost profile).",
)
@click.option("--since", default="30d", show_default=True, help="Period: 30d, 12h, 2w, ...")
@click.option(
    "--min-shown",
    default=facets_report.DEFAULT_MIN_SHOWN,
    show_default=True,
    type=click.IntRange(1),
    help="Shown at least this often before a segment's facet gets a note.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def report(since: str, min_shown: int, as_json: bool) -> None:
    since_s = since_seconds(since)
    es = requires_bootstrap(_client())
    impressions, selections = facets_report.load(es, _settings(), since_s)
    result = facets_report.facet_report(impressions, selections, min_shown)
    if as_json:
        click.echo(json.dumps(result.as_json(), indent=2))
    else:
        click.echo(facets_report.render(result))
