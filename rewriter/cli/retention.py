"""`affinity retention plan|run`: delete old events and impressions within safe horizons.

Thin, like cli.py (which registers it): parse, call ingest/retention.py, print.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import click
from opensearchpy.exceptions import OpenSearchException

from rewriter import config
from rewriter.boost.profile import load_directory
from rewriter.cli.common import client as _client
from rewriter.cli.common import fail as _fail
from rewriter.cli.common import settings as _settings
from rewriter.experiments.assignment import ExperimentError, experiments_dir, load_experiments
from rewriter.ingest.event_files import FoldProfileError, fold_boost
from rewriter.ingest.retention import Policy, Retention, RetentionError, RetentionReport


@click.group(
    help="Delete events and impressions older than their horizons "
    "(AFFINITY_RETENTION_EVENTS_DAYS, AFFINITY_RETENTION_IMPRESSIONS_DAYS): never events a "
    "profile rebuild still needs, nor a running experiment's impressions, unless forced."
)
def retention() -> None:
    pass


def _options(command: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(
        [
            click.option(
                "--events-days",
                default=None,
                help="Instead of AFFINITY_RETENTION_EVENTS_DAYS: `safe`, `off` or days.",
            ),
            click.option(
                "--impressions-days",
                default=None,
                help="Instead of AFFINITY_RETENTION_IMPRESSIONS_DAYS: `off` or days.",
            ),
            click.option(
                "--force",
                is_flag=True,
                help="Apply horizons shorter than what profile rebuilds and running "
                "experiments need (AFFINITY_RETENTION_FORCE=1); the output says what they lose.",
            ),
            click.option("--json", "as_json", is_flag=True, help="Print JSON."),
        ]
    ):
        command = option(command)
    return command


@retention.command(
    "plan",
    help="Dry run: per index, how many documents `affinity retention run` would delete, "
    "the cut-off times and why, and what is kept. Deletes nothing.",
)
@_options
def retention_plan(
    events_days: str | None, impressions_days: str | None, force: bool, as_json: bool
) -> None:
    _run(True, events_days, impressions_days, force, as_json)


@retention.command(
    "run",
    help="Delete what `affinity retention plan` shows: old events (after writing their users' "
    "retired totals, which rebuilds start from) and old impressions; prints what it deleted.",
)
@_options
def retention_run(
    events_days: str | None, impressions_days: str | None, force: bool, as_json: bool
) -> None:
    _run(False, events_days, impressions_days, force, as_json)


def _run(
    dry_run: bool,
    events_days: str | None,
    impressions_days: str | None,
    force: bool,
    as_json: bool,
) -> None:
    s = _settings()
    try:
        policy = Policy.parse(
            events_days or s.retention_events,
            impressions_days or s.retention_impressions,
            force or s.retention_force,
        )
        job = _job(s)
        report = job.run(policy, dry_run=dry_run)
    except (RetentionError, FoldProfileError) as exc:
        _fail(str(exc))
    except OpenSearchException as exc:
        _fail(
            f"retention stopped: OpenSearch answered {exc}. What it deleted before is "
            "consistent (totals are written before events go); run it again."
        )
    _print(report, as_json)
    if report.errors:
        sys.exit(1)


def _job(s: config.Settings) -> Retention:
    """The job with the boost profiles and experiments as they are on disk; a file that does
    not load is passed on as an error, which keeps what it guards."""
    boosts, broken = load_directory(s.boost_dir)
    try:
        experiments = list(load_experiments(experiments_dir(s.boost_dir), boosts))
        experiment_errors: list[str] = []
    except ExperimentError as exc:
        experiments, experiment_errors = [], [str(exc)]
    return Retention(
        _client(),
        s,
        boosts,
        fold_boost(s, boosts=boosts),
        experiments=experiments,
        boost_errors=[str(e) for e in broken.values()],
        experiment_errors=experiment_errors,
    )


def _print(report: RetentionReport, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
        return
    for line in report.lines():
        click.echo(line)
    if report.dry_run:
        click.echo("dry run: nothing was deleted; `affinity retention run` deletes this.")
