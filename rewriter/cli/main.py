"""`affinity`: the command line. Thin: parse, call the package, print."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click
from opensearchpy.exceptions import ConnectionError as OSConnectionError
from opensearchpy.exceptions import TransportError
from tqdm import tqdm

from rewriter import config
from rewriter.cli import access, boost, facets, measure, recommend, retention, suggestions, users
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
    unreachable, an index missing, a boost profile invalid: common.EXPLAINED; a setting it
    cannot use: config.SettingError), ends the command with one line saying what happened
    and what to run, never a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except config.SettingError as exc:
            _fail(str(exc))
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
    help="Build the launcher on first use, start the node (or, with --nodes, a cluster of nodes "
    "on 127.0.0.1) in the background, wait for yellow health and print its URL.",
)
@click.option(
    "--port",
    type=int,
    default=None,
    help="HTTP port (default 9200 or AFFINITY_ENGINE_PORT). A cluster's nodes take PORT, "
    "PORT+1, ... for HTTP and PORT+100, PORT+101, ... for transport.",
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Where the node keeps data and logs (default $AFFINITY_HOME/engine); node N of a "
    "cluster in <data-dir>/node-N.",
)
@click.option(
    "--nodes",
    type=click.IntRange(1, 9),
    default=None,
    help="Nodes in the cluster, one JVM each (default 1; a data dir that holds a cluster "
    "starts the nodes of that cluster that do not run).",
)
@click.option(
    "--heap",
    default=None,
    help="JVM heap (-Xms/-Xmx) per node [default: 1g for one node, 512m per node of a cluster].",
)
@click.option(
    "--timeout",
    type=float,
    default=None,
    help="Seconds to wait for the nodes to serve [default: 120 for one node, 240 for a cluster].",
)
def engine_start(
    port: int | None,
    data_dir: Path | None,
    nodes: int | None,
    heap: str | None,
    timeout: float | None,
) -> None:
    s = _settings()
    if s.remote:
        click.echo(
            f"OPENSEARCH_URL is set ({s.url}): affinity uses that cluster; "
            "the local engine is not needed. Unset it to use the local engine."
        )
    t0 = time.monotonic()
    where = _data_dir(data_dir)
    if (nodes or 1) > 1 or local_node.read_layout(where.resolve()) is not None:
        timeout = timeout or 240.0
        st = local_node.start_cluster(
            where, nodes, port or s.engine_port, heap or "512m", timeout, _err, s.node_registry
        )
    else:
        timeout = timeout or 120.0
        port = port or s.engine_port
        st = local_node.start(where, port, heap or "1g", timeout, _err, s.node_registry)
    es = connect(config.Settings(url=st.url))
    health = wait_for_health(es, "yellow", timeout, nodes=len(st.nodes) or None)
    click.echo(
        f"OpenSearch {es.info()['version']['number']} is up at {st.url} "
        f"(pid {st.pid}, health {health['status']}) in {time.monotonic() - t0:.1f} s."
    )
    for node in st.nodes:
        click.echo(f"  {node.data_dir.name}: pid {node.pid}, {node.url}, data {node.data_dir}")


def _err(message: str) -> None:
    click.echo(message, err=True)


_NODE_DIR = click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="The node's data dir (default: the one `affinity engine start` started, whichever "
    "its data dir; else $AFFINITY_HOME/engine).",
)


@engine.command(
    "stop", help="Stop the local node, or every node of the local cluster (data is kept)."
)
@_NODE_DIR
def engine_stop(data_dir: Path | None) -> None:
    where = _node_dir(data_dir, "stop").resolve()
    what = _what(where)
    if local_node.stop(where):
        click.echo(f"The {what} (data dir {where}) stopped.")
    else:
        click.echo(f"The {what} was not running (data dir {where}).")


def _what(data_dir: Path) -> str:
    layout = local_node.read_layout(data_dir)
    return "local engine" if layout is None else f"local {layout.size}-node cluster"


@engine.command(
    "status",
    help="Version, health, data dir and pid of the local node; of a local cluster, each node "
    "and the cluster's health. Exit 3: not running; 4: running but not answering, or a node "
    "of the cluster down.",
)
@_NODE_DIR
def engine_status(data_dir: Path | None) -> None:
    st = local_node.status(_node_dir(data_dir, "status"))
    if not st.running:
        click.echo(
            f"The {_what(st.data_dir)} is not running (data dir {st.data_dir}). "
            "Start it with `affinity engine start`."
        )
        sys.exit(3)
    if st.nodes:
        sys.exit(_cluster_status(st))
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


def _cluster_status(st: local_node.EngineStatus) -> int:
    """Print each node and the cluster's health (asked of the first node that answers);
    the exit code: 0 when every node runs and the cluster answers, else 4."""
    health = _cluster_health([node.url for node in st.nodes if node.url])
    if health is None:
        click.echo(f"cluster (data dir {st.data_dir}): no node answers")
    else:
        click.echo(
            f"cluster (data dir {st.data_dir}): health {health['status']}, "
            f"{health['number_of_nodes']} of {len(st.nodes)} nodes joined, cluster manager "
            f"{health['cluster_manager']}, {health['active_shards']} active shards, "
            f"{health['unassigned_shards']} unassigned"
        )
    for node in st.nodes:
        state = f"running: pid {node.pid}, {node.url}" if node.running else "not running"
        click.echo(f"  {node.data_dir.name}: {state}, data {node.data_dir}")
    down = [node.data_dir.name for node in st.nodes if not node.running]
    if down:
        click.echo(
            f"{', '.join(down)} not running: `affinity engine start --data-dir {st.data_dir}` "
            "starts the nodes that are down."
        )
    return 0 if health is not None and not down else 4


def _cluster_health(urls: list[str]) -> dict | None:
    """The cluster's health and the name of its elected cluster manager, asked of the first
    node that answers; None when none does."""
    for url in urls:
        es = connect(config.Settings(url=url), timeout=5)
        try:
            manager = es.cat.cluster_manager(format="json", h="node")
            return {
                **es.cluster.health(),
                "cluster_manager": manager[0]["node"] if manager else "?",
            }
        except (OSConnectionError, TransportError):
            continue
    return None


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
    import os

    import uvicorn

    from rewriter.auth import mode

    s = _settings()
    config.user_secret(s)
    requires_bootstrap(connect(s, timeout=10))
    os.environ["AFFINITY_AUTH"] = mode.resolve(s.auth, host)  # the workers read it
    click.echo(f"affinity proxy on http://{host}:{port} -> {s.opensearch_url}", err=True)
    click.echo(f"auth {os.environ['AFFINITY_AUTH']}; dashboard /_affinity/ui/", err=True)
    uvicorn.run(
        "rewriter.web.server:app",
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
@click.option(
    "--baseline",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Source tree of an older commit (git archive COMMIT | tar -x -C DIR): its proxy "
    "runs beside this one (cases b0, c0), for before/after in one run.",
)
@click.option(
    "--suggest",
    is_flag=True,
    help="Autocomplete instead: keystrokes of the configured catalog's suggestions, direct "
    "vs proxy generic vs proxy personalized (measure/suggest_bench.py).",
)
@click.option("--boost-profile", default=None, help="With --suggest: the boost profile.")
@click.option("--ratings", default=None, help="With --suggest: user ids from this ratings.csv.")
def bench(
    items: int,
    users: int,
    queries: int,
    threads: int,
    prefix: str,
    baseline: Path | None = None,
    suggest: bool = False,
    boost_profile: str | None = None,
    ratings: str | None = None,
) -> None:
    from dataclasses import replace

    from rewriter.measure import search_bench

    if suggest:
        from rewriter.measure import suggest_bench

        s = _settings()
        boost = boost_profile or s.index_profile_map.get(s.indices.catalog) or "default"
        people = suggest_bench.default_users(Path(ratings) if ratings else None)
        found = suggest_bench.run(s, s.indices.catalog, boost, people, n=queries * 2)
        click.echo(suggest_bench.report(found))
        return

    s = replace(_settings(), indices=config.Indices(prefix=prefix))
    results = search_bench.run(
        s, items, users, queries, threads, log=lambda m: click.echo(m, err=True), baseline=baseline
    )
    click.echo(search_bench.report(results))


# --------------------------------------------------------------------------- measurement
for _command in (measure.experiment, measure.evaluate, measure.simulate, measure.shop):
    main.add_command(_command)
for _command in (users.profile, users.user, users.segments, boost.boost, retention.retention):
    main.add_command(_command)
ingest.add_command(users.ingest_events)
main.add_command(facets.facets)
main.add_command(suggestions.suggestions)
main.add_command(recommend.recommendations)
main.add_command(recommend.placements)
main.add_command(recommend.audit)
main.add_command(recommend.export)
main.add_command(access.staff)
main.add_command(access.keys)


if __name__ == "__main__":
    main()
