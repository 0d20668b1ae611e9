"""`affinity ingest catalog`: good, bad and mixed files, through the CLI, into the engine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from opensearchpy import OpenSearch

import cli
from rewriter import config


@pytest.fixture
def env(bootstrapped: config.Settings) -> dict[str, str]:
    return {
        "OPENSEARCH_URL": bootstrapped.opensearch_url,
        "AFFINITY_INDEX_PREFIX": bootstrapped.indices.prefix,
    }


def _count(es: OpenSearch, index: str, **term: str) -> int:
    query = {"term": term} if term else {"match_all": {}}
    return es.count(index=index, body={"query": query})["count"]


def test_good_jsonl_with_mapping(
    tmp_path: Path, env: dict, opensearch: OpenSearch, bootstrapped: config.Settings
) -> None:
    rows = [
        {
            "sku": "g1",
            "name": "Trail runner",
            "maker": "acme",
            "cats": "shoes|running",
            "price": 89.5,
            "author": "n/a",
        },
        {"sku": "g2", "name": "Rain jacket", "maker": "zenit", "cats": "outerwear", "price": "120"},
    ]
    data = tmp_path / "items.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(
        "fields: {id: sku, title: name, brand: maker, category: cats}\nseparator: '|'\n"
        "facets: [author]\n"
    )
    result = CliRunner().invoke(
        cli.main, ["ingest", "catalog", str(data), "--mapping", str(mapping), "--quiet"], env=env
    )
    assert result.exit_code == 0, result.output
    assert "loaded 2, rejected 0" in result.output
    doc = opensearch.get(index=bootstrapped.indices.catalog, id="g1")["_source"]
    assert doc["category"] == ["shoes", "running"] and doc["brand"] == "acme"
    assert doc["price"] == 89.5
    assert _count(opensearch, bootstrapped.indices.catalog, category="running") >= 1


def test_bad_file_rejects_everything_with_line_and_reason(tmp_path: Path, env: dict) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_text('{"id": "b1"}\nnot json\n{"id": "b3", "title": "x", "price": "cheap"}\n')
    result = CliRunner().invoke(cli.main, ["ingest", "catalog", str(data), "--quiet"], env=env)
    assert result.exit_code == 1
    out = result.output  # stdout and stderr, interleaved
    assert "loaded 0, rejected 3" in out
    assert "line 1:" in out and "title" in out
    assert "line 2:" in out
    assert "line 3:" in out and "price" in out


def test_mixed_csv_loads_the_good_and_exits_nonzero(
    tmp_path: Path, env: dict, opensearch: OpenSearch, bootstrapped: config.Settings
) -> None:
    data = tmp_path / "mixed.csv"
    data.write_text(
        "id,title,brand,category,price,created_at\n"
        "m1,Blue kettle,acme,kitchen|tea,19.9,2024-05-01\n"
        "m2,,acme,kitchen,10,2024-05-01\n"
        "m3,Red kettle,acme,kitchen,abc,2024-05-01\n"
        "m4,Green kettle,zenit,kitchen,25,2024-05-01T10:00:00Z\n"
    )
    result = CliRunner().invoke(cli.main, ["ingest", "catalog", str(data), "--quiet"], env=env)
    assert result.exit_code == 1
    assert "loaded 2, rejected 2" in result.output
    assert "line 3:" in result.output and "line 4:" in result.output
    idx = bootstrapped.indices.catalog
    assert opensearch.exists(index=idx, id="m1") and opensearch.exists(index=idx, id="m4")
    assert not opensearch.exists(index=idx, id="m2")


def test_movielens_movies_load(
    env: dict, opensearch: OpenSearch, bootstrapped: config.Settings
) -> None:
    movies = config.ROOT / "data" / "movielens" / "movies.csv"
    result = CliRunner().invoke(cli.main, ["ingest", "catalog", str(movies), "--quiet"], env=env)
    assert result.exit_code == 0, result.output
    assert "loaded 9742, rejected 0" in result.output
    toy = opensearch.get(index=bootstrapped.indices.catalog, id="1")["_source"]
    assert toy["title"] == "Toy Story (1995)"
    assert "Animation" in toy["category"]
