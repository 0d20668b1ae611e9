"""`affinity suggestions build`: the catalog's suggestions index (ingest/suggestions.py).

Thin, like cli.py (which registers it): parse, call the package, print.
"""

from __future__ import annotations

import click

from rewriter.boost.deny_list import load_deny_list
from rewriter.boost.yaml_fields import BoostProfileError
from rewriter.cli.common import client as _client
from rewriter.cli.common import fail as _fail
from rewriter.cli.common import requires_bootstrap, since_seconds
from rewriter.cli.common import settings as _settings
from rewriter.ingest import suggestions as build_module
from rewriter.serve.api import Personalizer


@click.group(help="Autocomplete: the suggestions index each catalog's suggest endpoint searches.")
def suggestions() -> None:
    pass


@suggestions.command(
    "build",
    help="Build the suggestions of a catalog from the queries users ran (impressions: at "
    "least --min-users distinct users, no e-mail addresses, phone numbers or long digit "
    "strings, nothing on the deny list, at least one result) and from the catalog's titles "
    "and attribute values; swap the alias `<index>-suggestions` atomically.",
)
@click.option("--index", default=None, help="Catalog index or alias (default: the catalog).")
@click.option("--since", default="30d", show_default=True, help="Queries of this period.")
@click.option(
    "--min-users",
    type=click.IntRange(1),
    default=build_module.DEFAULT_MIN_USERS,
    show_default=True,
    help="Distinct users who must have run a query before it is suggested.",
)
@click.option("--deny-list", type=click.Path(dir_okay=False), help="YAML deny list (deny: [...]).")
@click.option("--boost-profile", default=None, help="Whose attributes the suggestions carry.")
def build(
    index: str | None, since: str, min_users: int, deny_list: str | None, boost_profile: str | None
) -> None:
    since_s = since_seconds(since)
    try:
        deny = load_deny_list(deny_list) if deny_list else ()
    except BoostProfileError as exc:
        _fail(str(exc), 2)
    except OSError as exc:
        _fail(f"--deny-list {deny_list}: cannot read: {exc}", 2)
    s = _settings()
    es = requires_bootstrap(_client())
    catalog = index or s.indices.catalog
    try:
        boost = Personalizer(es, s).boost(boost_profile or s.index_profile_map.get(catalog))
    except KeyError as exc:
        _fail(str(exc))
    cfg = build_module.BuildConfig(catalog, tuple(boost.attributes), since_s, min_users, deny)
    report = build_module.build(es, s, cfg)
    for line in report.lines():
        click.echo(line)


@suggestions.command(
    "evaluate",
    help="Autocomplete quality on MovieLens: each user's last liked film held out, the first "
    "1..4 characters of its title typed; MRR and Hit@8 of that film among the suggestions, "
    "personalized vs generic. Works in its own indices (<prefix>sq-*).",
)
@click.option(
    "--data", default="data/movielens", show_default=True, help="movies.csv + ratings.csv."
)
@click.option("--users", type=click.IntRange(1), default=None, help="Evaluate the first N users.")
@click.option("--boost-profile", default="movielens", show_default=True)
@click.option("--csv", "csv_path", default=None, help="Also write the table as CSV.")
def evaluate(data: str, users: int | None, boost_profile: str, csv_path: str | None) -> None:
    from dataclasses import replace
    from pathlib import Path

    from rewriter import config
    from rewriter.measure import suggest_quality
    from rewriter.measure.serve_thread import serve_in_thread
    from rewriter.serve.app import create_app

    base = _settings()
    s = replace(base, indices=config.Indices(prefix=base.indices.prefix + "sq-"))
    es = _client()
    try:
        boost = Personalizer(es, base).boost(boost_profile)
    except KeyError as exc:
        _fail(str(exc))
    cases = suggest_quality.prepare(es, s, Path(data), boost, log=click.echo)
    with serve_in_thread(create_app(s)) as url:
        rows = suggest_quality.evaluate(url, s.indices.catalog, cases[:users], boost.name)
    click.echo(suggest_quality.report(rows))
    if csv_path:
        suggest_quality.write_csv(rows, Path(csv_path))


@suggestions.command(
    "show",
    help="One user's suggestions for PREFIX and one facet of the search for it, generic "
    "beside personalized (through an in-process proxy; favored facet values are starred).",
)
@click.option("--user", "user_id", required=True, help="Raw user id.")
@click.option("--index", default=None, help="Catalog index or alias (default: the catalog).")
@click.option("--boost-profile", default=None, help="Boost profile (default: the index's).")
@click.option("--facet", default="category", show_default=True, help="Facet field.")
@click.argument("prefix")
def show(
    user_id: str, index: str | None, boost_profile: str | None, facet: str, prefix: str
) -> None:
    from rewriter.measure.suggest_compare import side_by_side

    s = _settings()
    catalog = index or s.indices.catalog
    boost = boost_profile or s.index_profile_map.get(catalog) or "default"
    click.echo(side_by_side(s, catalog, user_id, prefix, boost, facet))
