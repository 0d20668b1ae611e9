"""`affinity`: the command line. Thin: parse, call the package, print."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click
from opensearchpy import OpenSearch
from tqdm import tqdm

from rewriter import cli_measure, config, events_ingest, local_engine
from rewriter import engine as engine_mod
from rewriter import imports as imports_mod
from rewriter import ingest as ingest_mod
from rewriter import users as users_mod
from rewriter.boost_profiles import BoostProfile
from rewriter.pipeline import Pipeline
from rewriter.profiles import ProfileError

if TYPE_CHECKING:
    from rewriter.rewrite import RequestContext


def _settings() -> config.Settings:
    return config.load()


def _fail(message: str, code: int = 1) -> None:
    click.secho(message, fg="red", err=True)
    sys.exit(code)


@click.group(
    help="affinity: personalized search ranking inside OpenSearch.",
    epilog="\b\nSettings (environment variables):\n"
    + "\n".join(f"  {k}: {v}" for k, v in config.SETTINGS.items()),
)
@click.version_option(package_name="affinity")
def main() -> None:
    pass


# --------------------------------------------------------------------------- engine
@main.group(help="The local OpenSearch node (engine/): start, stop, status.")
def engine() -> None:
    pass


def _data_dir(data_dir: Path | None) -> Path:
    return data_dir or _settings().engine_dir


@engine.command(
    "start",
    help="Build the launcher on first use, start the node in the "
    "background, wait for yellow health and print its URL.",
)
@click.option(
    "--port", type=int, default=None, help="HTTP port (default 9200 or AFFINITY_ENGINE_PORT)."
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Where the node keeps data and logs (default $AFFINITY_HOME/engine).",
)
@click.option("--heap", default="1g", show_default=True, help="JVM heap (-Xms/-Xmx).")
@click.option(
    "--timeout",
    type=float,
    default=120.0,
    show_default=True,
    help="Seconds to wait for the node to serve.",
)
def engine_start(port: int | None, data_dir: Path | None, heap: str, timeout: float) -> None:
    s = _settings()
    if s.remote:
        click.echo(
            f"OPENSEARCH_URL is set ({s.url}): affinity uses that cluster; "
            "the local engine is not needed. Unset it to use the local engine."
        )
    t0 = time.monotonic()
    try:
        st = local_engine.start(
            _data_dir(data_dir),
            port or s.engine_port,
            heap,
            timeout,
            log=lambda m: click.echo(m, err=True),
        )
        es = engine_mod.client(config.Settings(url=st.url))
        health = engine_mod.wait_for_health(es, "yellow", timeout)
    except (local_engine.EngineError, engine_mod.EngineUnavailable) as exc:
        _fail(str(exc))
        return
    click.echo(
        f"OpenSearch {es.info()['version']['number']} is up at {st.url} "
        f"(pid {st.pid}, health {health['status']}) in {time.monotonic() - t0:.1f} s."
    )


@engine.command("stop", help="Stop the local node (data is kept).")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None)
def engine_stop(data_dir: Path | None) -> None:
    if local_engine.stop(_data_dir(data_dir)):
        click.echo("The local engine stopped.")
    else:
        click.echo("The local engine was not running.")


@engine.command("status", help="Version, health, data dir and pid of the local node.")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None)
def engine_status(data_dir: Path | None) -> None:
    st = local_engine.status(_data_dir(data_dir))
    if not st.running:
        click.echo(
            f"The local engine is not running (data dir {st.data_dir}). "
            "Start it with `affinity engine start`."
        )
        sys.exit(3)
    try:
        es = engine_mod.client(config.Settings(url=st.url), timeout=5)
        info, health = es.info(), es.cluster.health()
        click.echo(
            f"running: pid {st.pid}, {st.url}, OpenSearch {info['version']['number']}, "
            f"health {health['status']}, data dir {st.data_dir}"
        )
    except Exception as exc:
        click.echo(
            f"running: pid {st.pid}, {st.url}, but not answering ({exc}); "
            f"data dir {st.data_dir}. Log tail:\n{local_engine.log_tail(st.data_dir)}"
        )
        sys.exit(4)


# --------------------------------------------------------------------------- bootstrap
@main.command(help="Apply index templates, aliases and stored Painless scripts (idempotent).")
@click.option(
    "--reindex",
    "reindex_name",
    type=click.Choice(engine_mod.TEMPLATE_NAMES),
    default=None,
    help="Copy this index into its template's current version and "
    "move the alias (after a template change).",
)
def bootstrap(reindex_name: str | None) -> None:
    s = _settings()
    es = engine_mod.client(s)
    try:
        engine_mod.wait_for_health(es, "yellow", 30)
    except engine_mod.EngineUnavailable as exc:
        _fail(str(exc))
    if reindex_name:
        click.echo(engine_mod.reindex(es, s, reindex_name))
    report = engine_mod.bootstrap(es, s)
    for line in report.lines:
        click.echo(line)
    if report.needs_action:
        _fail("Some templates need a reindex (see above).", 2)
    click.echo("Bootstrap changed something." if report.changed else "Nothing to change.")


# --------------------------------------------------------------------------- ingest
@main.group(help="Bulk loads: catalog records and user events.")
def ingest() -> None:
    pass


@ingest.command(
    "catalog",
    help="Load catalog records (JSONL or CSV, or MovieLens movies.csv) "
    "into the catalog index. Bad records are reported with line and reason and "
    "skipped; exit 1 if any were rejected.",
)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(ingest_mod.CATALOG_FORMATS),
    default=None,
    help="Input format (default: from the file name).",
)
@click.option(
    "--mapping",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="YAML/JSON: {fields: {id: sku, category: cats}, separator: "
    "'|', facets: [author]} — which source column is which field.",
)
@click.option("--index", default=None, help="Target index or alias (default: the catalog alias).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def ingest_catalog(
    file: Path, fmt: str | None, mapping: Path | None, index: str | None, quiet: bool
) -> None:
    s = _settings()
    es = engine_mod.client(s, timeout=120)
    try:
        field_mapping = imports_mod.load_mapping(mapping) if mapping else None
        parsed = ingest_mod.parse_catalog(file, fmt or ingest_mod.guess_format(file), field_mapping)
    except (imports_mod.MappingError, ValueError) as exc:
        _fail(str(exc))
        return
    t0 = time.monotonic()
    with tqdm(desc=f"catalog {file.name}", unit=" items", disable=quiet, file=sys.stderr) as bar:
        try:
            result = ingest_mod.load_catalog(es, index or s.indices.catalog, parsed, bar.update)
        except imports_mod.MappingError as exc:
            _fail(f"{file}: {exc}")
            return
    for line in result.rejected[:50]:
        click.echo(f"{file}: {line}", err=True)
    if len(result.rejected) > 50:
        click.echo(f"... and {len(result.rejected) - 50} more rejections", err=True)
    click.echo(
        f"loaded {result.loaded}, rejected {len(result.rejected)} in {time.monotonic() - t0:.1f} s"
    )
    if result.rejected:
        sys.exit(1)


# --------------------------------------------------------------------------- serve / search
@main.command(
    help="Run the proxy: OpenSearch-compatible search endpoints (personalized), "
    "/events, /_affinity/health."
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8800, show_default=True)
@click.option(
    "--workers", type=int, default=1, show_default=True, help="Server processes (uvicorn workers)."
)
@click.option("--log-level", default="info", show_default=True)
def serve(host: str, port: int, workers: int, log_level: str) -> None:
    import uvicorn

    s = _settings()
    try:
        config.user_secret(s)
    except config.SecretMissing as exc:
        _fail(str(exc))
    click.echo(f"affinity proxy on http://{host}:{port} -> {s.opensearch_url}", err=True)
    uvicorn.run(
        "rewriter.server:app",
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        factory=False,
        access_log=False,
    )


def _hit_line(hit: dict, width: int) -> str:
    source = hit.get("_source") or {}
    cats = source.get("category") or []
    tags = "/".join(cats if isinstance(cats, list) else [cats])
    label = f"{source.get('title', hit['_id'])} [{tags}]"
    return f"{label[: width - 9]:<{width - 9}} {hit.get('_score') or 0:8.3f}"


@main.command(
    help="Generic and personalized top 10 for a user, side by side, with the score breakdown."
)
@click.option("--user", "user_id", required=True, help="Raw user id (pseudonymized inside).")
@click.option("--index", default=None, help="Index or alias (default: the catalog alias).")
@click.option("--profile", "boost_profile", default=None, help="Boost profile name.")
@click.option("--size", type=int, default=10, show_default=True)
@click.option("--explain", is_flag=True, help="Show each personalized hit's breakdown.")
@click.argument("query")
def search(
    user_id: str, index: str | None, boost_profile: str | None, size: int, explain: bool, query: str
) -> None:
    from rewriter import reference
    from rewriter.api import Personalizer

    s = _settings()
    index = index or s.indices.catalog
    es = engine_mod.client(s)
    try:
        p = Personalizer(es, s)
        boost = p.boost(boost_profile or s.index_profile_map.get(index))
    except (config.SecretMissing, KeyError) as exc:
        _fail(str(exc))
        return
    body = {
        "size": size,
        "query": {"multi_match": {"query": query, "fields": ["title^2", "description"]}},
    }
    generic = es.search(index=index, body=body)["hits"]["hits"]
    personal = p.search(index, body, user_id, boost_profile=boost.name)
    info = personal["personalization"]
    w = 60
    click.echo(
        f"query {query!r}, user {user_id}, boost profile {boost.name} "
        f"({boost.version}): applied={info.get('applied')} "
        f"alpha_eff={info.get('alpha_eff') or 0:.3f} reason={info.get('reason')}"
    )
    click.echo(f"{'GENERIC':<{w}}   {'PERSONALIZED':<{w}}")
    rows = personal["hits"]["hits"]
    for i in range(max(len(generic), len(rows))):
        left = _hit_line(generic[i], w) if i < len(generic) else ""
        right = _hit_line(rows[i], w) if i < len(rows) else ""
        click.echo(f"{left:<{w}}   {right:<{w}}")
    if explain and rows:
        user = p.user_affinity(user_id, boost)
        params = reference.script_params(user, boost)
        click.echo("\nwhy (personalized): relevance + alpha_eff * affinity")
        for hit in rows:
            item = reference.hit_from_source(
                hit["_id"], 0.0, hit["_source"], list(params["attributes"])
            )
            aff, matches = reference.affinity(item.attributes, params)
            parts = ", ".join(
                f"{m.attribute}={m.value} {m.affinity:.2f}x{m.weight:g}" for m in matches if m.value
            )
            alpha_eff = float(info.get("alpha_eff") or 0.0)
            relevance = (hit.get("_score") or 0.0) - alpha_eff * aff
            click.echo(
                f"  {_hit_line(hit, w)} = {relevance:.3f} + {alpha_eff:.3f} x {aff:.3f} "
                f"({parts or 'no known value'})"
            )


# --------------------------------------------------------------------------- bench
@main.command(
    help="Benchmark: direct OpenSearch vs proxy (off) vs proxy personalized "
    "(rescore, function_score) on generated data; p50/p99 and QPS as ratios."
)
@click.option("--items", type=int, default=100_000, show_default=True)
@click.option("--users", type=int, default=10_000, show_default=True)
@click.option("--queries", type=int, default=500, show_default=True)
@click.option(
    "--threads", type=int, default=4, show_default=True, help="Client threads for the QPS run."
)
@click.option(
    "--prefix",
    default="bench-",
    show_default=True,
    help="Index prefix for the generated data (kept between runs).",
)
def bench(items: int, users: int, queries: int, threads: int, prefix: str) -> None:
    from dataclasses import replace

    from rewriter import bench as bench_mod

    s = replace(_settings(), indices=config.Indices(prefix=prefix))
    results = bench_mod.run(
        s, items, users, queries, threads, log=lambda m: click.echo(m, err=True)
    )
    click.echo(bench_mod.report(results))


# ------------------------------------------------------------------ events, profiles, users
def _fold_boost(name: str | None, fmt: str | None = None) -> BoostProfile:
    from rewriter.events_ingest import FoldProfileError, fold_boost

    try:
        return fold_boost(_settings(), name, fmt)
    except FoldProfileError as exc:
        _fail(str(exc))
        raise  # unreachable: _fail exits


def _client(timeout: float = 120) -> OpenSearch:
    s = _settings()
    try:
        config.user_secret(s)
    except config.SecretMissing as exc:
        _fail(str(exc))
    return engine_mod.client(s, timeout=timeout)


_PROFILE_OPTION = click.option(
    "--profile",
    "boost_name",
    default=None,
    help="Boost profile whose event weights and half-life fold events "
    "(default: AFFINITY_FOLD_PROFILE, movielens for --format movielens, else default).",
)


@ingest.command(
    "events",
    help="Load user events into the events log and fold them into profiles "
    "(idempotent: re-loading a file changes nothing). Bad events are reported with line and "
    "reason and skipped; exit 1 if any were rejected.",
)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(events_ingest.EVENT_FORMATS),
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
    default=events_ingest.BATCH_SIZE,
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
    fmt = fmt or events_ingest.guess_format(file)
    boost = _fold_boost(boost_name, fmt)
    es = _client()
    pipeline = Pipeline(es, _settings(), boost)
    t0 = time.monotonic()
    with (
        file.open(encoding="utf-8", newline="") as handle,
        tqdm(desc=f"events {file.name}", unit=" events", disable=quiet, file=sys.stderr) as bar,
    ):
        try:
            field_mapping = imports_mod.load_mapping(mapping) if mapping else None
            parsed = events_ingest.parse_events(
                handle, fmt, tuple(boost.event_weights), field_mapping
            )
            result = events_ingest.ingest_events(pipeline, parsed, bar.update, batch_size)
        except imports_mod.MappingError as exc:
            _fail(f"{file}: {exc}")
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


@main.group(help="Users' affinity profiles: show one decoded, rebuild from the events log.")
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
    "--profile",
    "boost_name",
    default=None,
    help="Boost profile for top_k (default: the fold profile).",
)
@click.option("--top", type=int, default=10, show_default=True, help="Values per attribute.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def profile_show(user: str, boost_name: str | None, top: int, as_json: bool) -> None:
    s = _settings()
    es = _client(30)
    boost = _fold_boost(boost_name)
    pseudo = users_mod.pseudonym(s, user)
    source = users_mod.read_profile(es, s, pseudo)
    if source is None:
        _fail(
            f"no profile for user {user!r} (pseudonym {pseudo}): no events folded yet, or "
            "the user was deleted. Send events, or run `affinity profile rebuild --user`.",
            2,
        )
        return
    try:
        view = users_mod.describe(source, boost, time.time(), top)
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
@_PROFILE_OPTION
@click.option("--quiet", is_flag=True, help="No progress bar.")
def profile_rebuild(user: str | None, boost_name: str | None, quiet: bool) -> None:
    s = _settings()
    es = _client()
    boost = _fold_boost(boost_name)
    users = [users_mod.pseudonym(s, user)] if user else None
    t0 = time.monotonic()
    with tqdm(desc="rebuild", unit=" users", disable=quiet, file=sys.stderr) as bar:
        result = users_mod.Rebuilder(es, s, boost).run(users, bar.update)
    for error in result.errors[:50]:
        click.echo(error, err=True)
    click.echo(
        f"rebuilt {result.users} profiles from {result.events} events with boost profile "
        f"{boost.name} in {time.monotonic() - t0:.1f} s ({result.opted_out} opted out, "
        f"{result.retried} retried after a concurrent write)"
    )
    if result.errors:
        sys.exit(1)


@main.group(help="Privacy operations on one user (raw id; pseudonymized inside).")
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
    data = users_mod.export(_client(), _settings(), user_id)
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
    report = users_mod.delete(_client(), _settings(), _fold_boost(None), user_id)
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
    pseudo = users_mod.opt_out(_client(), _settings(), _fold_boost(None), user_id)
    click.echo(
        f"user {user_id} (pseudonym {pseudo}) opted out: profile and events erased; "
        "new events are refused and searches are generic"
    )


@user.command("opt-in", help="Remove the user's opt-out: they start fresh with no history.")
@click.argument("user_id")
def user_opt_in(user_id: str) -> None:
    if users_mod.opt_in(_client(), _settings(), user_id):
        click.echo(f"user {user_id} opted back in; their profile starts empty")
    else:
        click.echo(f"user {user_id} had not opted out; nothing changed")


@main.group(help="Segment priors for cold start (by device and geo).")
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
    from rewriter import segments as segments_mod

    s = _settings()
    es = _client()
    boost = _fold_boost(boost_name)
    with tqdm(desc="segments", unit=" profiles", disable=quiet, file=sys.stderr) as bar:
        result = segments_mod.build(es, s, boost, bar.update)
    click.echo(
        f"{result.profiles} profiles, {result.with_segment} with a segment; "
        f"{len(result.priors)} priors stored"
        + (f", {len(result.removed)} stale removed" if result.removed else "")
    )
    for segment, members in sorted(result.priors.items()):
        click.echo(f"  {segments_mod.segment_id(segment)}: {members} users")


# ------------------------------------------------------------------ boost profiles
@main.group(help="Merchandiser boost profiles (profiles/*.yaml): check, preview, diff.")
def boost() -> None:
    pass


def _boost_index(index: str | None, s: config.Settings) -> Callable[[BoostProfile], str]:
    """--index, else the first index whose default profile this is, else the catalog alias."""

    def index_for(profile: BoostProfile) -> str:
        mapped = [i for i, name in s.index_profile_map.items() if name == profile.name]
        return index or (mapped[0] if mapped else s.indices.catalog)

    return index_for


def _load_boost_file(path: Path) -> BoostProfile:
    from rewriter.boost_profiles import BoostProfileError, load_boost_profile

    try:
        return load_boost_profile(path)
    except BoostProfileError as exc:
        _fail(f"{exc}\n{path} is invalid; `affinity boost check {path}` lists every problem")
        raise  # unreachable: _fail exits


def _context_option(value: str | None) -> RequestContext:
    from rewriter.rewrite import RequestContext

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
    from rewriter import boost_tools

    s = _settings()
    paths = list(files) or sorted(Path(s.profiles_dir).glob("*.yaml"))
    if not paths:
        _fail(f"no boost profiles given and none in {s.profiles_dir}", 2)
    lookup = None
    if not offline:
        es = engine_mod.client(s, timeout=10)
        lookup = boost_tools.engine_catalog(es, _boost_index(index, s))
    report = boost_tools.check_files(paths, lookup)
    for finding in report.findings:
        click.echo(str(finding))
    for note in report.catalog_notes:
        click.echo(note, err=True)
    warnings = len(report.findings) - len(report.errors)
    click.echo(
        f"{len(paths)} file(s): {len(report.errors)} error(s), {warnings} warning(s)"
        + ("" if offline or report.catalog_notes else ", fields checked against the catalog")
    )
    if report.errors:
        sys.exit(1)
    if report.catalog_notes:
        sys.exit(2)


@boost.command(
    "preview",
    help="Generic, personalized and personalized-with-rules rankings of QUERY for a user, "
    "side by side, and what moved each item (affinity, which rule, by how much).",
)
@click.option(
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
    from rewriter import boost_compare

    s = _settings()
    profile = _load_boost_file(profile_file)
    es = _client(30)
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
    from rewriter import boost_diff

    s = _settings()
    before, after = _load_boost_file(old), _load_boost_file(new)
    queries = None
    if queries_file:
        queries = queries_file.read_text(encoding="utf-8").splitlines()
    es = _client(60)
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


# --------------------------------------------------------------------------- measurement
for _command in (cli_measure.experiment, cli_measure.evaluate, cli_measure.simulate):
    main.add_command(_command)


if __name__ == "__main__":
    main()
