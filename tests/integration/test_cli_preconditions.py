"""Commands used in the wrong order: before `affinity bootstrap`, or with no engine at all.

Each refuses with one line naming what to run, exits non-zero, prints no traceback and creates
nothing. One un-bootstrapped prefix serves the whole module; nothing may ever appear under it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from opensearchpy import OpenSearch

import cli
from rewriter import config
from rewriter.events import formats
from rewriter.ingest import catalog_files
from rewriter.measure.serve_thread import free_port

SECRET = "test-secret-0123456789abcdef"


EXPERIMENT = """name: ab
index: catalog
salt: s1
start: 2024-05-01T00:00:00Z
variants:
  generic: {traffic: 50, generic: true}
  personal: {traffic: 50, boost_profile: default}
"""


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Plausible inputs for every command: a one-item catalog and an event for it, MovieLens
    ratings and movies, the boost profiles plus a second version of one, an experiment."""
    d = tmp_path_factory.mktemp("preconditions")
    item = {"id": "i1", "title": "Trail runner", "brand": "acme", "category": ["shoes"]}
    (d / "items.jsonl").write_text(json.dumps(item) + "\n")
    event = {"user_id": "u1", "item_id": "i1", "type": "click", "timestamp": "2024-01-01T00:00:00Z"}
    (d / "events.jsonl").write_text(json.dumps(event) + "\n")
    movies = (config.ROOT / "data" / "movielens" / "movies.csv").read_text().splitlines()[:4]
    (d / "movies.csv").write_text("\n".join(movies) + "\n")
    ratings = ["userId,movieId,rating,timestamp", "1,1,4.0,964982703", "1,3,4.0,964981247"]
    (d / "ratings.csv").write_text("\n".join([*ratings, "2,1,5.0,964982703"]) + "\n")
    profiles = d / "profiles"
    (profiles / "experiments").mkdir(parents=True)
    for path in (config.ROOT / "profiles").glob("*.yaml"):
        (profiles / path.name).write_text(path.read_text())
    (profiles / "experiments" / "ab.yaml").write_text(EXPERIMENT)
    default = (config.ROOT / "profiles" / "default.yaml").read_text()
    (d / "default_v2.yaml").write_text(default.replace("alpha: 1.0", "alpha: 2.0"))
    return d


@pytest.fixture(scope="module")
def bare(index_prefix: str) -> str:
    """A prefix nobody bootstraps."""
    return f"{index_prefix}bare-"


@pytest.fixture(scope="module")
def base_env(files: Path) -> dict[str, str]:
    return {
        "AFFINITY_SECRET": SECRET,
        "AFFINITY_HOME": str(files / "home"),
        "AFFINITY_PROFILES_DIR": str(files / "profiles"),
    }


@pytest.fixture(scope="module")
def bare_env(engine_url: str, bare: str, base_env: dict[str, str]) -> dict[str, str]:
    """The session's engine, under a prefix nobody bootstraps."""
    return {**base_env, "OPENSEARCH_URL": engine_url, "AFFINITY_INDEX_PREFIX": bare}


def _nothing_under(es: OpenSearch, prefix: str) -> list[str]:
    return sorted(es.indices.get(index=f"{prefix}*", expand_wildcards="all"))


def _assert_refused(result: Result, what_to_run: str) -> None:
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert what_to_run in result.output, result.output


def test_ingest_catalog_before_bootstrap_refuses_and_creates_no_index(
    files: Path, bare_env: dict[str, str], opensearch: OpenSearch, bare: str
) -> None:
    args = ["ingest", "catalog", str(files / "items.jsonl"), "--quiet"]
    result = CliRunner().invoke(cli.main, args, env=bare_env)
    _assert_refused(result, "affinity bootstrap")
    assert f"{bare}catalog" in result.output
    assert _nothing_under(opensearch, bare) == []


def test_ingest_catalog_into_a_missing_index_refuses(
    files: Path, bare_env: dict[str, str], opensearch: OpenSearch, bootstrapped: config.Settings
) -> None:
    """Bootstrapped, but --index names nothing: loading would create it with dynamic mapping."""
    env = {**bare_env, "AFFINITY_INDEX_PREFIX": bootstrapped.indices.prefix}
    target = f"{bootstrapped.indices.prefix}nowhere"
    args = ["ingest", "catalog", str(files / "items.jsonl"), "--index", target, "--quiet"]
    result = CliRunner().invoke(cli.main, args, env=env)
    _assert_refused(result, "index_templates/catalog.json")
    assert target in result.output
    assert not opensearch.indices.exists(index=target)


def test_load_catalog_never_creates_the_catalog(opensearch: OpenSearch, bare: str) -> None:
    """The writer itself refuses a missing target: no race creates a dynamic-mapping index."""
    parsed = formats.parse_catalog_jsonl(['{"id": "r1", "title": "Race"}'], None)
    with pytest.raises(catalog_files.CatalogMissing, match="affinity bootstrap"):
        catalog_files.load_catalog(opensearch, f"{bare}catalog", parsed)
    assert _nothing_under(opensearch, bare) == []


def test_ingest_events_before_bootstrap_says_run_bootstrap(
    files: Path, bare_env: dict[str, str], opensearch: OpenSearch, bare: str
) -> None:
    args = ["ingest", "events", str(files / "events.jsonl"), "--quiet"]
    result = CliRunner().invoke(cli.main, args, env=bare_env)
    _assert_refused(result, "affinity bootstrap")
    assert _nothing_under(opensearch, bare) == []


# --------------------------------------------------------------------------- every command
Args = Callable[[Path], list[str]]

NEEDS_BOOTSTRAP: dict[str, Args] = {
    "ingest catalog": lambda f: ["ingest", "catalog", str(f / "items.jsonl"), "--quiet"],
    "ingest events": lambda f: ["ingest", "events", str(f / "events.jsonl"), "--quiet"],
    "profile show": lambda f: ["profile", "show", "u1"],
    "profile rebuild": lambda f: ["profile", "rebuild", "--quiet"],
    "user export": lambda f: ["user", "export", "u1"],
    "user delete": lambda f: ["user", "delete", "u1"],
    "user opt-out": lambda f: ["user", "opt-out", "u1"],
    "user opt-in": lambda f: ["user", "opt-in", "u1"],
    "segments build": lambda f: ["segments", "build", "--quiet"],
    "search": lambda f: ["search", "--user", "u1", "shoes"],
    "boost check": lambda f: ["boost", "check"],
    "boost preview": lambda f: [
        "boost", "preview", "--profile", str(f / "profiles" / "default.yaml"), "--user", "u1",
        "shoes",
    ],
    "boost diff": lambda f: [
        "boost", "diff", str(f / "profiles" / "default.yaml"), str(f / "default_v2.yaml"),
        "--users", "3",
    ],
    "experiment report": lambda f: ["experiment", "report", "ab"],
    "serve": lambda f: ["serve", "--port", str(free_port())],
}  # fmt: skip
"""Commands on affinity's own indices: they need the engine and `affinity bootstrap`."""

NEEDS_ENGINE: dict[str, Args] = {
    "bootstrap": lambda f: ["bootstrap"],
    "bench": lambda f: ["bench", "--items", "20", "--users", "2", "--queries", "1"],
    "evaluate": lambda f: [
        "evaluate", "--events", str(f / "ratings.csv"), "--catalog", str(f / "movies.csv"),
        "--cutoff", "user:0.5", "--sample", "5",
    ],
    "simulate --end-to-end": lambda f: [
        "simulate", "--runs", "2", "--users", "50", "--ab-users", "100", "--end-to-end",
    ],
}  # fmt: skip
"""Commands that set up their own indices (bootstrap, or scratch ones under --prefix): they
need only an engine. engine start|stop|status manage the local node and need none; experiment
check, boost check --offline and simulate without --end-to-end never touch the engine."""


@pytest.fixture
def no_uvicorn(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """`affinity serve` records that it would start the server instead of serving forever."""
    started: list[str] = []
    monkeypatch.setattr("uvicorn.run", lambda app, **kw: started.append(app))
    return started


@pytest.mark.parametrize("name", [*NEEDS_BOOTSTRAP, *NEEDS_ENGINE])
def test_no_engine_reachable(
    name: str, files: Path, base_env: dict[str, str], no_uvicorn: list[str]
) -> None:
    """OPENSEARCH_URL names a port nothing listens on."""
    args = {**NEEDS_BOOTSTRAP, **NEEDS_ENGINE}[name](files)
    env = {**base_env, "OPENSEARCH_URL": f"http://127.0.0.1:{free_port()}"}
    result = CliRunner().invoke(cli.main, args, env=env)
    _assert_refused(result, "affinity engine start")
    assert "not reachable" in result.output and env["OPENSEARCH_URL"] in result.output
    assert no_uvicorn == []


@pytest.mark.parametrize("name", list(NEEDS_BOOTSTRAP))
def test_engine_never_bootstrapped(
    name: str,
    files: Path,
    bare_env: dict[str, str],
    bare: str,
    opensearch: OpenSearch,
    no_uvicorn: list[str],
) -> None:
    result = CliRunner().invoke(cli.main, NEEDS_BOOTSTRAP[name](files), env=bare_env)
    _assert_refused(result, "affinity bootstrap")
    assert no_uvicorn == []
    assert _nothing_under(opensearch, bare) == []


def test_an_index_that_does_not_exist_is_named(
    bare_env: dict[str, str], bootstrapped: config.Settings
) -> None:
    """Bootstrapped, but --index names nothing: one line naming it, no traceback."""
    env = {**bare_env, "AFFINITY_INDEX_PREFIX": bootstrapped.indices.prefix}
    missing = f"{bootstrapped.indices.prefix}nowhere"
    result = CliRunner().invoke(
        cli.main, ["search", "--user", "u1", "--index", missing, "x"], env=env
    )
    _assert_refused(result, "--index")
    assert f"no index or alias {missing!r}" in result.output
