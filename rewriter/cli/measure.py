"""Measurement commands: `affinity experiment`, `affinity evaluate`, `affinity simulate`,
`affinity shop generate`.

Thin, like cli.py (which registers them): parse, call the package, print.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from rewriter import config
from rewriter.boost.profile import (
    BoostProfile,
    BoostProfileError,
    load_boost_profile,
    load_boost_profiles,
)
from rewriter.cli.common import fail as _fail
from rewriter.cli.common import requires_bootstrap, requires_engine
from rewriter.engine.bootstrap import bootstrap_cluster
from rewriter.engine.client import connect
from rewriter.experiments.assignment import (
    ExperimentError,
    ExperimentSet,
    experiments_dir,
    load_experiments,
)

if TYPE_CHECKING:
    from opensearchpy import OpenSearch

    from rewriter.measure import evaluate as ev


def _err(message: str) -> None:
    click.echo(message, err=True)


def _experiments(s: config.Settings) -> ExperimentSet:
    try:
        boosts = load_boost_profiles(s.boost_dir)
        return load_experiments(experiments_dir(s.boost_dir), boosts)
    except (ExperimentError, BoostProfileError) as exc:
        _fail(str(exc))
        raise  # unreachable


# --------------------------------------------------------------------------- experiment
@click.group(help="A/B experiments: check definitions, report results with intervals.")
def experiment() -> None:
    pass


@experiment.command(
    "check",
    help="Validate every experiment in <AFFINITY_PROFILES_DIR>/experiments/*.yaml "
    "(errors name file:line:column) and list them with their variants and split.",
)
def experiment_check() -> None:
    s = config.load()
    found = _experiments(s)
    if not len(found):
        click.echo(f"no experiments in {experiments_dir(s.boost_dir)}")
    now = time.time()
    for exp in found:
        state = "active" if exp.active(now) else "inactive"
        arms = ", ".join(
            f"{v.name} {v.traffic:g}% "
            + ("generic" if v.generic else f"{v.boost_profile or '(index default)'}")
            + ("" if v.alpha is None else f" alpha {v.alpha:g}")
            for v in exp.variants
        )
        click.echo(f"{exp.name} ({state}) on {exp.index}: {arms}  [{exp.source}]")


@experiment.command(
    "report",
    help="Per-variant users, impressions, CTR, add-to-cart, conversion, order value, revenue "
    "per user, repeat visits; lifts vs control with 95% CIs and p-values; sample-ratio check; "
    "verdict on the primary metric.",
)
@click.argument("name")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write a PNG: each metric per variant with its 95% interval.",
)
def experiment_report(name: str, fmt: str, plot: Path | None) -> None:
    from rewriter.measure import experiment_report as er

    s = config.load()
    try:
        exp = _experiments(s).get(name)
    except KeyError as exc:
        _fail(str(exc.args[0]))
        return
    es = requires_bootstrap(connect(s, timeout=120))
    impressions, events = er.fetch(es, s, exp, time.time())
    report = er.build_report(exp, impressions, events)
    _print_report(report, fmt, plot)


def _print_report(report: object, fmt: str, plot: Path | None) -> None:
    from rewriter.measure import experiment_report as er
    from rewriter.measure import plots

    assert isinstance(report, er.Report)
    if fmt == "json":
        click.echo(json.dumps(report.to_json(), indent=2, default=str))
    else:
        click.echo(er.render_table(report))
    if plot:
        _err(f"plot: {plots.experiment_plot(report, plot)}")


# --------------------------------------------------------------------------- evaluate
def _eval_boost(s: config.Settings, profile: str | None, events: Path) -> BoostProfile:
    from rewriter.ingest.event_files import FoldProfileError, fold_boost, guess_format

    try:
        if profile and Path(profile).is_file():
            return load_boost_profile(profile)
        return fold_boost(s, profile, guess_format(events))
    except (FoldProfileError, BoostProfileError) as exc:
        _fail(str(exc))
        raise


def _events_format(events: Path) -> str:
    from rewriter.ingest.event_files import guess_format

    return guess_format(events)


def _catalog_for(events: Path, catalog: Path | None) -> Path:
    if catalog:
        return catalog
    sibling = events.with_name("movies.csv")
    if events.name == "ratings.csv" and sibling.is_file():
        return sibling
    _fail("--catalog FILE is needed (only MovieLens ratings.csv finds movies.csv beside it)")
    raise SystemExit(1)


@click.command(
    help="Offline replay: build profiles from events before --cutoff in scratch indices "
    "(--prefix), replay later positive interactions through the rewriter, and print NDCG@10, "
    "MRR, HitRate@10 and coverage for generic, popularity, each alpha and the boost profile "
    "(and --compare ones); NDCG@10 by seen / never-seen item and history length with 95% "
    "intervals; recommend alpha."
)
@click.option(
    "--events",
    "events_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
)
@click.option(
    "--cutoff",
    required=True,
    help="A time (2016-01-01, ISO 8601, epoch s), user:F (per user, first F trains), or "
    "last (leave-last-out: each user's last positive event is tested).",
)
@click.option(
    "--catalog",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Catalog file (default: movies.csv beside ratings.csv).",
)
@click.option("--alpha", "alphas", default="0,0.25,0.5,1,2", show_default=True)
@click.option(
    "--boost-profile",
    "--profile",
    "profile",
    default=None,
    help="Boost profile name or YAML file (default: the fold profile for the format).",
)
@click.option(
    "--compare",
    multiple=True,
    help="Another boost profile (name or YAML file) to rank with, at its own alpha; the "
    "scratch profiles stay folded with --profile's event weights. Repeatable.",
)
@click.option(
    "--positives",
    default=None,
    help="Event types tested, comma-separated (default: rating_high,click,add_to_cart,"
    "purchase; a shop log: view,add_to_cart,purchase).",
)
@click.option(
    "--seen",
    type=click.Choice(["exclude", "keep"]),
    default=None,
    help="Take items the user interacted with before out of rankings (default: exclude for "
    "MovieLens ratings, keep for other formats: shoppers come back to items).",
)
@click.option("--prefix", default="eval-", show_default=True, help="Scratch index prefix.")
@click.option("--sample", "sample_size", type=int, default=2000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--shape",
    type=click.Choice(["rescore", "function_score"]),
    default=None,
    help="Override the profile's engine shape.",
)
@click.option(
    "--fallback",
    type=click.Choice(["category", "category_by_popularity", "category_words"]),
    default="category",
    show_default=True,
    help="Query for events without one: a category term query, the same ranked "
    "by popularity (a genre page), or the words of the item's category path as a text "
    "query (a shop: 'electronics audio headphone').",
)
@click.option("--tune-weights", is_flag=True, help="Coordinate search over attribute weights.")
@click.option(
    "--tune",
    is_flag=True,
    help="With --cutoff last: search alpha, attribute and horizon weights and half-lives on a "
    "validation split (each user's positive before the tested one), report validation and "
    "test apart, print the best boost profile as a YAML patch.",
)
@click.option(
    "--tune-objective",
    type=click.Choice(["guarded", "all"]),
    default="guarded",
    show_default=True,
    help="What --tune maximizes: NDCG@10 without lowering it on never-seen items below the "
    "starting profile's (guarded), or NDCG@10 alone (all).",
)
@click.option("--reuse", is_flag=True, help="Keep scratch indices built from the same inputs.")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None)
def evaluate(
    events_path: Path,
    cutoff: str,
    catalog: Path | None,
    alphas: str,
    profile: str | None,
    compare: tuple[str, ...],
    positives: str | None,
    seen: str | None,
    prefix: str,
    sample_size: int,
    seed: int,
    shape: str | None,
    fallback: str,
    tune_weights: bool,
    tune: bool,
    tune_objective: str,
    reuse: bool,
    plot: Path | None,
) -> None:
    from rewriter.measure import evaluate as ev
    from rewriter.measure import plots
    from rewriter.measure.evaluate_scratch import ScratchError

    s = config.load()
    boost = _eval_boost(s, profile, events_path)
    fmt = _events_format(events_path)
    try:
        opts = ev.Options(
            events=events_path,
            catalog=_catalog_for(events_path, catalog),
            cutoff=ev.parse_cutoff(cutoff),
            alphas=tuple(float(a) for a in alphas.split(",")),
            prefix=prefix,
            sample_size=sample_size,
            seed=seed,
            reuse=reuse,
            shape=shape,
            tune_weights=tune_weights,
            fallback=fallback,  # type: ignore[arg-type]
            positive_types=(
                ev.parse_positives(positives, tuple(boost.event_weights))
                if positives
                else ev.POSITIVE_TYPES
            ),
            exclude_seen=(seen or ("exclude" if fmt == "movielens" else "keep")) == "exclude",
            compare=tuple(_eval_boost(s, name, events_path) for name in compare),
            tune_objective=tune_objective,
        )
    except ValueError as exc:
        _fail(str(exc))
        return
    es = requires_engine(connect(s, timeout=300))
    if tune:
        _tune(es, s, boost, opts)
        return
    try:
        result = ev.run(es, s, boost, opts, log=_err)
    except (ScratchError, config.SecretMissing, ValueError) as exc:
        _fail(str(exc))
        return
    click.echo(result.report)
    if plot:
        alpha_rows = [r for r in result.rows if r.method.startswith("alpha=")]
        base = {
            r.method: {"NDCG@10": r.ndcg, "MRR@100": r.mrr, "Hit@10": r.hit}
            for r in result.rows
            if not r.method.startswith("alpha=")
        }
        series = {
            "NDCG@10": [r.ndcg for r in alpha_rows],
            "MRR@100": [r.mrr for r in alpha_rows],
            "Hit@10": [r.hit for r in alpha_rows],
        }
        out = plots.evaluation_plot(opts.alphas, series, base, plot, result.report.split("\n")[0])
        _err(f"plot: {out}")


def _tune(es: OpenSearch, s: config.Settings, boost: BoostProfile, opts: ev.Options) -> None:
    from rewriter.measure import evaluate_tune
    from rewriter.measure.evaluate_scratch import ScratchError

    try:
        click.echo(evaluate_tune.run(es, s, boost, opts, log=_err).report)
    except (ScratchError, config.SecretMissing, ValueError) as exc:
        _fail(str(exc))


# --------------------------------------------------------------------------- simulate
@click.command(
    help="Simulated shop with known preferences and a position-biased click model: A/A "
    "false-positive rate over --runs experiments, one A/B report with the true lift, and "
    "optionally one run end to end through the proxy and the engine (--end-to-end)."
)
@click.option("--runs", type=int, default=200, show_default=True, help="A/A experiments.")
@click.option("--users", type=int, default=2000, show_default=True, help="Users per A/A run.")
@click.option("--ab-users", type=int, default=4000, show_default=True)
@click.option(
    "--alpha",
    type=float,
    default=1.0,
    show_default=True,
    help="Weight of the favourite brand in the personalized arm (sets the true lift).",
)
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--end-to-end", is_flag=True, help="Also run through the proxy and the engine.")
@click.option(
    "--prefix",
    default="sim-",
    show_default=True,
    help="Index prefix of the end-to-end run (its indices are recreated).",
)
@click.option("--e2e-users", type=int, default=400, show_default=True)
def simulate(
    runs: int,
    users: int,
    ab_users: int,
    alpha: float,
    plot: Path | None,
    end_to_end: bool,
    prefix: str,
    e2e_users: int,
) -> None:
    from rewriter.measure import simulate as sim

    if end_to_end:  # before minutes of simulation, not after
        requires_engine(connect(config.load(), timeout=60))
    t0 = time.monotonic()
    fp = sim.aa_false_positive_rate(runs, users)
    click.echo(f"{sim.describe_rates(fp)} ({time.monotonic() - t0:.1f} s)\n")
    report, truth = sim.ab_report(ab_users, alpha=alpha)
    ctr = next(c for c in report.comparisons if c.metric == "ctr")
    covered = ctr.lift_low <= truth <= ctr.lift_high
    click.echo(
        f"A/B with a known lift: true relative CTR lift {truth:+.2%}; estimated "
        f"{ctr.lift:+.2%} [{ctr.lift_low:+.2%}, {ctr.lift_high:+.2%}]: "
        f"{'covers' if covered else 'MISSES'} the truth\n"
    )
    _print_report(report, "table", plot)
    if end_to_end:
        _simulate_e2e(prefix, e2e_users)


def _simulate_e2e(prefix: str, users: int) -> None:
    from rewriter.measure import experiment_report as er
    from rewriter.measure import simulate_proxy
    from rewriter.measure.evaluate_scratch import owned_indices, scratch_settings

    s = scratch_settings(config.load(), prefix)
    es = connect(s, timeout=60)
    for name in owned_indices(es, s):
        es.indices.delete(index=name)
    bootstrap_cluster(es, s)
    result = simulate_proxy.run(es, s, users, log=_err)
    click.echo(f"\nend to end through the proxy ({result.seconds:.1f} s):")
    click.echo(er.render_table(result.report))


# --------------------------------------------------------------------------- shop
@click.group(help="A synthetic shop with known ground truth, to try the evaluator on.")
def shop() -> None:
    pass


@shop.command(
    "generate",
    help="Write catalog.jsonl, events.jsonl (views, carts, purchases in sessions; formats "
    "`affinity ingest` reads) and truth.json (each user's favourite brands, interests, "
    "loyalty) to --out. Deterministic for a --seed.",
)
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--users", type=int, default=2000, show_default=True)
@click.option("--items", type=int, default=1200, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def shop_generate(out: Path, users: int, items: int, seed: int) -> None:
    from rewriter.measure import shop as synthetic

    try:
        made = synthetic.generate(users, items, seed)
        paths = synthetic.write(made, out)
    except (ValueError, OSError) as exc:
        _fail(str(exc))
        return
    click.echo(
        f"{len(made.catalog)} items, {len(made.events)} events of {users} users: "
        f"{paths['catalog.jsonl']}, {paths['events.jsonl']}, {paths['truth.json']}"
    )
