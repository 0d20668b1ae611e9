"""`affinity boost check|preview|diff` against a real engine."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from opensearchpy import OpenSearch

import cli
from rewriter import config, privacy
from rewriter.boost.checker import check_files
from rewriter.boost.profile import parse_boost_profile
from rewriter.measure.boost_catalog import engine_catalog
from rewriter.measure.boost_compare import format_preview, preview
from rewriter.measure.boost_diff import diff, format_diff
from rewriter.profiles.fold import FoldConfig, empty_profile

pytestmark = pytest.mark.engine

OLD = "name: shop\nalpha: 1.0\nattributes: {brand: 1.0}\n"
NEW = OLD + "rules:\n  - {id: acme-up, boost: {brand: acme, weight: 5}}\n"


@pytest.fixture(scope="module")
def shop(opensearch: OpenSearch, bootstrapped: config.Settings) -> Iterator[str]:
    index = f"{bootstrapped.indices.prefix}tools-shop"
    mappings = {"properties": {"title": {"type": "text"}, "brand": {"type": "keyword"}}}
    opensearch.indices.create(index=index, body={"mappings": mappings})
    for i, brand in enumerate(["zenit", "acme", "other", "zenit"]):
        opensearch.index(
            index=index, id=str(i), body={"title": f"running shoe {i}", "brand": brand}
        )
    opensearch.indices.refresh(index=index)
    pseudonym = privacy.pseudonymize("tool-user", config.user_secret(bootstrapped))
    doc = dict(empty_profile(pseudonym, FoldConfig()))
    doc.update(landmark=time.time(), mass=10.0, affinities={"brand": {"zenit": 10.0}})
    opensearch.index(index=bootstrapped.indices.profiles, id=pseudonym, body=doc, refresh=True)
    yield index
    opensearch.indices.delete(index=index, ignore_unavailable=True)


def test_check_against_the_catalog_mapping(
    opensearch: OpenSearch, shop: str, tmp_path: Path
) -> None:
    path = tmp_path / "shop.yaml"
    path.write_text(OLD + "rules:\n  - {id: x, hide: {terms: {colour: red}}}\n")
    report = check_files([path], engine_catalog(opensearch, lambda _p: shop))
    [error] = report.errors
    assert (error.line, error.column) == (5, 28)  # the key `colour`
    assert f"field 'colour' is not in the mapping of {shop}" in error.message


def test_preview_shows_three_rankings_and_why(
    opensearch: OpenSearch, bootstrapped: config.Settings, shop: str
) -> None:
    pv = preview(opensearch, bootstrapped, shop, parse_boost_profile(NEW), "tool-user", "running")
    assert pv.with_rules[0]["_source"]["brand"] == "acme"
    assert pv.personalized[0]["_source"]["brand"] == "zenit"
    assert any("acme-up +5" in reason for reason in pv.why["1"])
    text = format_preview(pv)
    assert "GENERIC" in text and "WITH RULES" in text and "acme-up +5" in text


def test_diff_counts_changes_and_rules(
    opensearch: OpenSearch, bootstrapped: config.Settings, shop: str
) -> None:
    old, new = parse_boost_profile(OLD), parse_boost_profile(NEW)
    report = diff(opensearch, bootstrapped, shop, old, new, users=500, queries=["running", ""])
    assert report.users >= 1 and report.pairs == report.users * 2
    assert report.new.rules["acme-up"] == report.pairs and not report.old.rules
    assert report.changed >= 1 and report.largest["shift"] >= 1
    data = report.as_json()
    assert data["new"]["rules_fired"]["acme-up"]["share"] == 1.0
    assert "top 10 changed" in format_diff(report)


def test_cli_diff_json(bootstrapped: config.Settings, shop: str, tmp_path: Path) -> None:
    (tmp_path / "old.yaml").write_text(OLD)
    (tmp_path / "new.yaml").write_text(NEW)
    (tmp_path / "queries.txt").write_text("running\n")
    env = {
        "OPENSEARCH_URL": bootstrapped.opensearch_url,
        "AFFINITY_SECRET": bootstrapped.secret or "",
        "AFFINITY_INDEX_PREFIX": bootstrapped.indices.prefix,
    }
    args = [
        "boost",
        "diff",
        str(tmp_path / "old.yaml"),
        str(tmp_path / "new.yaml"),
        "--index",
        shop,
        "--queries",
        str(tmp_path / "queries.txt"),
        "--json",
    ]
    result = CliRunner(env=env).invoke(cli.main, args)
    assert result.exit_code == 0, result.output
    assert '"top10_changed"' in result.output
