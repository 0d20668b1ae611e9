"""Commands used in the wrong order: before `affinity bootstrap`, or with no engine at all.

Each refuses with one line naming what to run, exits non-zero, prints no traceback and creates
nothing. One un-bootstrapped prefix serves the whole module; nothing may ever appear under it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from opensearchpy import OpenSearch

import cli
from rewriter import config
from rewriter.events import formats
from rewriter.ingest import catalog_files

ROOT = Path(__file__).resolve().parents[2]
SECRET = "test-secret-0123456789abcdef"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-item catalog and one event for it."""
    d = tmp_path_factory.mktemp("preconditions")
    item = {"id": "i1", "title": "Trail runner", "brand": "acme", "category": ["shoes"]}
    (d / "items.jsonl").write_text(json.dumps(item) + "\n")
    event = {"user_id": "u1", "item_id": "i1", "type": "click", "timestamp": "2024-01-01T00:00:00Z"}
    (d / "events.jsonl").write_text(json.dumps(event) + "\n")
    return d


@pytest.fixture(scope="module")
def bare(index_prefix: str) -> str:
    """A prefix nobody bootstraps."""
    return f"{index_prefix}bare-"


@pytest.fixture(scope="module")
def bare_env(engine_url: str, bare: str, files: Path) -> dict[str, str]:
    return {
        "OPENSEARCH_URL": engine_url,
        "AFFINITY_INDEX_PREFIX": bare,
        "AFFINITY_SECRET": SECRET,
        "AFFINITY_HOME": str(files / "home"),
    }


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
