"""`affinity`: the command line. Thin: parse, call the package, print."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click
from tqdm import tqdm

from rewriter import config
from rewriter.cli import boost, measure, retention, users
from rewriter.cli.common import EXPLAINED, explain, requires_bootstrap, requires_engine
from rewriter.cli.common import fail as _fail
from rewriter.cli.common import settings as _settings
from rewriter.engine import local_node
from rewriter.engine.bootstrap import TEMPLATE_NAMES, bootstrap_cluster, reindex
from rewriter.engine.client import connect, wait_for_health
from rewriter.events import formats
from rewriter.ingest import catalog_files


class AffinityGroup(click.Group):
    """The `affinity` group. An error a person can act on, from any command (the engine
    unreachable, an index missing, a boost profile invalid: common.EXPLAINED), ends the
    command with one line saying what happened and what to run, never a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except EXPLAINED as exc:
            _fail(explain(exc, _settings()))


@click.group(
    cls=AffinityGroup,
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


def _node_dir(data_dir: Path | None, command: str) -> Path:
    """--data-dir, else the data dir of the node `engine start` started: the default one, or
    the one recorded node that runs elsewhere (local_node.locate)."""
    if data_dir:
        return data_dir
    s = _settings()
    return local_node.locate(s.engine_dir, s.node_registry, command)


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
    st = local_node.start(
        _data_dir(data_dir),
        port or s.engine_port,
        heap,
        timeout,
        log=lambda m: click.echo(m, err=True),
        registry=s.node_registry,
    )
    es = connect(config.Settings(url=st.url))
    health = wait_for_health(es, "yellow", timeout)
    click.echo(
        f"OpenSearch {es.info()['version']['number']} is up at {st.url} "
        f"(pid {st.pid}, health {health['status']}) in {time.monotonic() - t0:.1f} s."
    )


_NODE_DIR = click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="The node's data dir (default: the one `affinity engine start` started, whichever "
    "its data dir; else $AFFINITY_HOME/engine).",
)


@engine.command("stop", help="Stop the local node (data is kept).")
@_NODE_DIR
def engine_stop(data_dir: Path | None) -> None:
    where = _node_dir(data_dir, "stop").resolve()
    if local_node.stop(where):
        click.echo(f"The local engine (data dir {where}) stopped.")
    else:
        click.echo(f"The local engine was not running (data dir {where}).")


@engine.command("status", help="Version, health, data dir and pid of the local node.")
@_NODE_DIR
def engine_status(data_dir: Path | None) -> None:
    st = local_node.status(_node_dir(data_dir, "status"))
    if not st.running:
        click.echo(
            f"The local engine is not running (data dir {st.data_dir}). "
            "Start it with `affinity engine start`."
        )
        sys.exit(3)
    try:
        es = connect(config.Settings(url=st.url), timeout=5)
        info, health = es.info(), es.cluster.health()
        click.echo(
            f"running: pid {st.pid}, {st.url}, OpenSearch {info['version']['number']}, "
            f"health {health['status']}, data dir {st.data_dir}"
        )
    except Exception as exc:
        click.echo(
            f"running: pid {st.pid}, {st.url}, but not answering ({exc}); "
            f"data dir {st.data_dir}. Log tail:\n{local_node.log_tail(st.data_dir)}"
        )
        sys.exit(4)


# --------------------------------------------------------------------------- bootstrap
@main.command(help="Apply index templates, aliases and stored Painless scripts (idempotent).")
@click.option(
    "--reindex",
    "reindex_name",
    type=click.Choice(TEMPLATE_NAMES),
    default=None,
    help="Copy this index into its template's current version and "
    "move the alias (after a template change).",
)
def bootstrap(reindex_name: str | None) -> None:
    s = _settings()
    es = requires_engine(connect(s))
    wait_for_health(es, "yellow", 30)
    if reindex_name:
        click.echo(reindex(es, s, reindex_name))
    report = bootstrap_cluster(es, s)
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
    type=click.Choice(catalog_files.CATALOG_FORMATS),
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
    try:
        field_mapping = formats.load_mapping(mapping) if mapping else None
        parsed = catalog_files.parse_catalog(
            file, fmt or catalog_files.guess_format(file), field_mapping
        )
    except (formats.MappingError, ValueError) as exc:
        _fail(str(exc))
        return
    es = requires_bootstrap(connect(s, timeout=120))
    t0 = time.monotonic()
    with tqdm(desc=f"catalog {file.name}", unit=" items", disable=quiet, file=sys.stderr) as bar:
        try:
            result = catalog_files.load_catalog(es, index or s.indices.catalog, parsed, bar.update)
        except catalog_files.CatalogMissing as exc:
            _fail(str(exc))
            return
        except formats.MappingError as exc:
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
    config.user_secret(s)
    requires_bootstrap(connect(s, timeout=10))
    click.echo(f"affinity proxy on http://{host}:{port} -> {s.opensearch_url}", err=True)
    uvicorn.run(
        "rewriter.serve.server:app",
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


def _why(part: dict | None) -> str:
    """One line of a hit's `_affinity` breakdown (the proxy's `?explain=true`)."""
    if not part:
        return "pinned (placed by position, not by score)"
    values = ", ".join(
        f"{a}={m['value']} {m['affinity']:.2f}x{m['weight']:g}"
        for a, m in part["attributes"].items()
        if m["value"]
    )
    rules = f"; rules {', '.join(part['rules'])}" if part["rules"] else ""
    relevance = part["relevance"] if part["relevance"] is not None else 0.0
    head = f"({relevance:.3f} + {part['boost']:.3f}) x {part['bury']:.2f} + {part['added']:.3f}"
    if part["mode"] == "popularity":
        return f"{head} (popularity: no usable profile{rules})"
    return (
        f"{head} (alpha_eff {part['alpha_eff']:.3f} x affinity {part['affinity']:.3f}: "
        f"{values or 'no known value'}{rules})"
    )


@main.command(
    help="Generic and personalized top 10 for a user, side by side, with the score breakdown."
)
@click.option("--user", "user_id", required=True, help="Raw user id (pseudonymized inside).")
@click.option("--index", default=None, help="Index or alias (default: the catalog alias).")
@click.option(
    "--boost-profile", "--profile", "boost_profile", default=None, help="Boost profile name."
)
@click.option("--size", type=int, default=10, show_default=True)
@click.option("--explain", is_flag=True, help="Show each personalized hit's breakdown.")
@click.argument("query")
def search(
    user_id: str, index: str | None, boost_profile: str | None, size: int, explain: bool, query: str
) -> None:
    from rewriter.ranking.rewrite import RequestContext
    from rewriter.serve.api import Personalizer

    s = _settings()
    index = index or s.indices.catalog
    es = requires_bootstrap(connect(s))
    try:
        p = Personalizer(es, s)
        boost = p.boost(boost_profile or s.index_profile_map.get(index))
    except KeyError as exc:
        _fail(str(exc))
        return
    body = {
        "size": size,
        "query": {"multi_match": {"query": query, "fields": ["title^2", "description"]}},
    }
    generic = es.search(index=index, body=body)["hits"]["hits"]
    context = RequestContext(explain=explain)
    personal = p.search(index, body, user_id, context, boost_profile=boost.name)
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
        click.echo("\nwhy (personalized): (relevance + boost) x bury + added")
        for hit in rows:
            click.echo(f"  {_hit_line(hit, w)} = {_why(hit.get('_affinity'))}")


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

    from rewriter.measure import search_bench

    s = replace(_settings(), indices=config.Indices(prefix=prefix))
    results = search_bench.run(
        s, items, users, queries, threads, log=lambda m: click.echo(m, err=True)
    )
    click.echo(search_bench.report(results))


# --------------------------------------------------------------------------- measurement
for _command in (measure.experiment, measure.evaluate, measure.simulate, measure.shop):
    main.add_command(_command)
for _command in (users.profile, users.user, users.segments, boost.boost, retention.retention):
    main.add_command(_command)
ingest.add_command(users.ingest_events)


if __name__ == "__main__":
    main()
