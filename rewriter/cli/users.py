"""Commands on events, profiles and users: `ingest events`, `profile`, `user`, `segments`.

Thin, like cli.py (which registers them): parse, call the package, print.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click
from tqdm import tqdm

from rewriter.boost.profile import BoostProfile
from rewriter.cli.common import client as _client
from rewriter.cli.common import fail as _fail
from rewriter.cli.common import requires_bootstrap
from rewriter.cli.common import settings as _settings
from rewriter.engine.client import EngineUnavailable
from rewriter.events import formats
from rewriter.ingest import event_files, user_ops
from rewriter.ingest.pipeline import Pipeline
from rewriter.profiles.doc import ProfileError

if TYPE_CHECKING:
    pass


def _fold_boost(name: str | None, fmt: str | None = None) -> BoostProfile:
    from rewriter.ingest.event_files import FoldProfileError, fold_boost

    try:
        return fold_boost(_settings(), name, fmt)
    except FoldProfileError as exc:
        _fail(str(exc))
        raise  # unreachable: _fail exits


_PROFILE_OPTION = click.option(
    "--boost-profile",
    "--profile",
    "boost_name",
    default=None,
    help="Boost profile whose event weights and half-life fold events "
    "(default: AFFINITY_FOLD_PROFILE, movielens for --format movielens, else default).",
)


@click.command(
    "events",
    help="Load user events into the events log and fold them into profiles "
    "(idempotent: re-loading a file changes nothing). Bad events are reported with line and "
    "reason and skipped; exit 1 if any were rejected.",
)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(event_files.EVENT_FORMATS),
    default=None,
    help="jsonl (our fields), csv (with --mapping), segment (track calls), ubi (ubi_events "
    "documents), movielens (ratings.csv). Default: from the file name.",
)
@click.option(
    "--mapping",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="CSV only. YAML/JSON {fields: {item_id: sku, context.device: device}, separator: '|'}.",
)
@_PROFILE_OPTION
@click.option(
    "--batch-size",
    type=int,
    default=event_files.BATCH_SIZE,
    show_default=True,
    help="Events per _bulk.",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def ingest_events(
    file: Path,
    fmt: str | None,
    mapping: Path | None,
    boost_name: str | None,
    batch_size: int,
    quiet: bool,
) -> None:
    fmt = fmt or event_files.guess_format(file)
    boost = _fold_boost(boost_name, fmt)
    es = requires_bootstrap(_client())
    pipeline = Pipeline(es, _settings(), boost, source=fmt)
    t0 = time.monotonic()
    with (
        file.open(encoding="utf-8", newline="") as handle,
        tqdm(desc=f"events {file.name}", unit=" events", disable=quiet, file=sys.stderr) as bar,
    ):
        try:
            field_mapping = formats.load_mapping(mapping) if mapping else None
            parsed = event_files.parse_events(
                handle, fmt, tuple(boost.event_weights), field_mapping
            )
            result = event_files.ingest_events(pipeline, parsed, bar.update, batch_size)
        except formats.MappingError as exc:
            _fail(f"{file}: {exc}")
            return
        except EngineUnavailable as exc:
            _fail(
                f"{file}: the import stopped: {exc} Running it again is safe: events already "
                "stored count as duplicates."
            )
            return
    seconds = time.monotonic() - t0
    for line in result.rejected[:50]:
        click.echo(f"{file}: {line}", err=True)
    if len(result.rejected) > 50:
        click.echo(f"... and {len(result.rejected) - 50} more rejections", err=True)
    for line in result.warnings[:20]:
        click.echo(f"warning: {line}", err=True)
    click.echo(
        f"accepted {result.accepted}, duplicates {result.duplicates}, rejected "
        f"{len(result.rejected)}, not stored (opted out) {result.not_stored}, unknown items "
        f"{len(result.unknown_items)} ({result.unknown_item_events} events); folded "
        f"{result.folded} into profiles with boost profile {boost.name} in {seconds:.1f} s "
        f"({result.accepted / max(seconds, 1e-9):,.0f} events/s)"
    )
    if result.rejected:
        sys.exit(1)


@click.group(help="Users' affinity profiles: show one decoded, rebuild from the events log.")
def profile() -> None:
    pass


def _print_profile(user: str, view: dict) -> None:
    click.echo(
        f"user {user} (pseudonym {view['user']})" + ("  OPTED OUT" if view["opt_out"] else "")
    )
    click.echo(
        f"  event mass {view['event_mass']:.3f} (half-life {view['half_life_days']:g} days), "
        f"last seen {view['last_seen'] or '-'}, first seen {view['first_seen'] or '-'}"
    )
    counters = ", ".join(f"{k} {v:g}" for k, v in view["counters"].items())
    click.echo(f"  counters: {counters}")
    click.echo(f"  segments: {', '.join(view['segments']) or '-'}")
    for attribute, values in view["top"].items():
        click.echo(f"  {attribute} (top {len(values)} of {view['values_stored'][attribute]}):")
        for entry in values:
            click.echo(f"    {entry['affinity']:6.3f}  {entry['value']}")


@profile.command(
    "show",
    help="A user's decoded profile: top values per attribute with "
    "normalized affinity (1 = the user's favourite), event mass, counters, segments.",
)
@click.argument("user")
@click.option(
    "--boost-profile",
    "--profile",
    "boost_name",
    default=None,
    help="Boost profile for top_k (default: the fold profile).",
)
@click.option("--top", type=int, default=10, show_default=True, help="Values per attribute.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def profile_show(user: str, boost_name: str | None, top: int, as_json: bool) -> None:
    s = _settings()
    es = requires_bootstrap(_client(30))
    boost = _fold_boost(boost_name)
    pseudo = user_ops.pseudonym(s, user)
    source = user_ops.read_profile(es, s, pseudo)
    if source is None:
        _fail(
            f"no profile for user {user!r} (pseudonym {pseudo}): no events folded yet, or "
            "the user was deleted. Send events, or run `affinity profile rebuild --user`.",
            2,
        )
        return
    try:
        view = user_ops.describe(source, boost, time.time(), top)
    except ProfileError as exc:
        _fail(str(exc))
        return
    if as_json:
        click.echo(json.dumps({"user_id": user, **view}, indent=2, ensure_ascii=False))
    else:
        _print_profile(user, view)


@profile.command(
    "rebuild",
    help="Recompute profiles from the events log (all users, or one). "
    "Safe while events arrive; opted-out users keep their tombstone.",
)
@click.option("--user", "user", default=None, help="Raw user id (default: every user).")
@click.option(
    "--pseudonym",
    default=None,
    help="A user's pseudonym, as logs name it (instead of --user).",
)
@click.option(
    "--boost-profile",
    "--profile",
    "boost_name",
    default=None,
    help="Boost profile whose event weights and half-life fold events (default: "
    "AFFINITY_FOLD_PROFILE, else the one that folded each profile, else default).",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def profile_rebuild(
    user: str | None, pseudonym: str | None, boost_name: str | None, quiet: bool
) -> None:
    from rewriter.boost.profile import load_boost_profiles

    s = _settings()
    es = requires_bootstrap(_client())
    boost = _fold_boost(boost_name)
    chosen = boost_name or s.fold_profile  # else: each profile's own (`fold_profile`)
    by_name = None if chosen else load_boost_profiles(s.boost_dir)
    if user and pseudonym:
        _fail("give --user or --pseudonym, not both")
    users = [user_ops.pseudonym(s, user)] if user else [pseudonym] if pseudonym else None
    t0 = time.monotonic()
    with tqdm(desc="rebuild", unit=" users", disable=quiet, file=sys.stderr) as bar:
        try:
            result = user_ops.Rebuilder(es, s, boost, by_name).run(users, bar.update)
        except EngineUnavailable as exc:
            _fail(f"the rebuild stopped: {exc} Profiles rebuilt so far are kept; run it again.")
            return
    for error in result.errors[:50]:
        click.echo(error, err=True)
    used = ", ".join(f"{n} ({c})" for n, c in result.by_profile.most_common()) or boost.name
    click.echo(
        f"rebuilt {result.users} profiles from {result.events} events"
        + (f" and the retired totals of {result.retired} more" if result.retired else "")
        + f" with boost profile {used} in {time.monotonic() - t0:.1f} s ({result.opted_out} "
        f"opted out, "
        f"{result.retried} retried after a concurrent write"
        + (
            f", {result.late_enriched} events enriched from items added to the catalog since"
            if result.late_enriched
            else ""
        )
        + ")"
    )
    if result.errors:
        sys.exit(1)


@click.group(help="Privacy operations on one user (raw id; pseudonymized inside).")
def user() -> None:
    pass


@user.command("export", help="Everything stored about the user (profile and every event), as JSON.")
@click.argument("user_id")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write to this file (default: stdout).",
)
def user_export(user_id: str, output: Path | None) -> None:
    es = requires_bootstrap(_client())
    data = user_ops.export(es, _settings(), user_id)
    text = json.dumps(data, indent=2, ensure_ascii=False)
    if output:
        output.write_text(text + "\n", encoding="utf-8")
        click.echo(
            f"wrote {output}: profile {'yes' if data['profile'] else 'none'}, "
            f"{len(data['events'])} events",
            err=True,
        )
    else:
        click.echo(text)


@user.command(
    "delete",
    help="Erase the user's profile and every event, then search every "
    "affinity index for the pseudonym; exit 1 if anything remains.",
)
@click.argument("user_id")
def user_delete(user_id: str) -> None:
    es = requires_bootstrap(_client())
    report = user_ops.delete(es, _settings(), _fold_boost(None), user_id)
    click.echo(
        f"user {user_id} (pseudonym {report.pseudonym}): deleted "
        f"{report.deleted['profiles']} profile(s), {report.deleted['events']} event(s)"
        + "".join(
            f", {n} {kind}"
            for kind, n in report.deleted.items()
            if kind not in ("profiles", "events")
        )
    )
    for index, count in report.remaining.items():
        click.echo(f"  {index}: {count} document(s) with the pseudonym")
    if not report.clean:
        _fail(
            "documents with the pseudonym remain (events arriving meanwhile?); run the "
            "delete again, or opt the user out to stop new events first"
        )
    click.echo("verified: nothing with the pseudonym remains in any affinity index")


@user.command(
    "opt-out",
    help="Erase the user and keep a tombstone: their events are no "
    "longer stored and their searches are not personalized.",
)
@click.argument("user_id")
def user_opt_out(user_id: str) -> None:
    es = requires_bootstrap(_client())
    pseudo = user_ops.opt_out(es, _settings(), _fold_boost(None), user_id)
    click.echo(
        f"user {user_id} (pseudonym {pseudo}) opted out: profile and events erased; "
        "new events are refused and searches are generic"
    )


@user.command("opt-in", help="Remove the user's opt-out: they start fresh with no history.")
@click.argument("user_id")
def user_opt_in(user_id: str) -> None:
    es = requires_bootstrap(_client())
    if user_ops.opt_in(es, _settings(), user_id):
        click.echo(f"user {user_id} opted back in; their profile starts empty")
    else:
        click.echo(f"user {user_id} had not opted out; nothing changed")


@click.group(help="Segment priors for cold start (by device and geo).")
def segments() -> None:
    pass


@segments.command(
    "build",
    help="Average normalized affinities per segment (device, geo of "
    "each user's most recent event) and store them in the profiles index as "
    "documents `segment:<dimension>=<value>`.",
)
@_PROFILE_OPTION
@click.option("--quiet", is_flag=True, help="No progress bar.")
def segments_build(boost_name: str | None, quiet: bool) -> None:
    from rewriter.ingest import segment_priors

    s = _settings()
    es = requires_bootstrap(_client())
    boost = _fold_boost(boost_name)
    with tqdm(desc="segments", unit=" profiles", disable=quiet, file=sys.stderr) as bar:
        result = segment_priors.build(es, s, boost, bar.update)
    click.echo(
        f"{result.profiles} profiles, {result.with_segment} with a segment; "
        f"{len(result.priors)} priors stored"
        + (f", {len(result.removed)} stale removed" if result.removed else "")
    )
    for segment, members in sorted(result.priors.items()):
        click.echo(f"  {segment_priors.segment_id(segment)}: {members} users")
    for problem in result.unreadable[:20]:
        click.echo(f"warning: left out of the priors: {problem}", err=True)
