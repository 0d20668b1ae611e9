"""`affinity boost check`: shipped files pass, mistakes are reported at file:line:column,
fields are checked against a catalog mapping."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

import cli
from rewriter.boost.checker import CatalogView, catalog_findings, check_files, flatten_mapping
from rewriter.boost.profile import parse_boost_profile

ROOT = Path(__file__).resolve().parents[3]
SHIPPED = sorted((ROOT / "profiles").glob("*.yaml"))
FIVE = ROOT / "tests" / "fixtures" / "boost" / "five_mistakes.yaml"
MAPPING = {
    "catalog-v1": {
        "mappings": {
            "properties": {
                "title": {"type": "text", "fields": {"raw": {"type": "keyword"}}},
                "brand": {"type": "keyword"},
                "category": {"type": "keyword"},
                "created_at": {"type": "date"},
                "in_stock": {"type": "boolean"},
                "price": {"type": "double"},
                "meta": {"properties": {"color": {"type": "keyword"}}},
            }
        }
    }
}
CATALOG = CatalogView("catalog", flatten_mapping(MAPPING), frozenset({"sku-1"}))


def test_flatten_mapping_names_multi_fields_and_objects() -> None:
    fields = flatten_mapping(MAPPING)
    assert fields["title"] == "text" and fields["title.raw"] == "keyword"
    assert fields["meta.color"] == "keyword" and fields["meta"] == "object"


def test_shipped_profiles_pass_offline_and_against_the_template_mapping() -> None:
    assert {p.name for p in SHIPPED} >= {"default.yaml", "movielens.yaml", "retail.yaml"}
    report = check_files(SHIPPED, lambda profile: CATALOG)
    assert report.errors == []
    assert {f.message.split(":")[0] for f in report.findings} <= {
        "rules[2].pin[0].item",  # retail's seasonal pin names items not in this catalog
        "rules[2].pin[1].item",
    }


def test_cli_five_mistakes_five_messages() -> None:
    result = CliRunner().invoke(cli.main, ["boost", "check", "--offline", str(FIVE)])
    assert result.exit_code == 1
    lines = [ln for ln in result.output.splitlines() if ln.startswith(str(FIVE))]
    assert [re.match(r".*?:(\d+):(\d+): ", ln).groups() for ln in lines] == [  # type: ignore[union-attr]
        ("3", "8"),
        ("4", "1"),
        ("12", "14"),
        ("16", "40"),
        ("19", "9"),
    ]
    assert "did you mean 'window'?" in lines[1] and "did you mean 'high_value'?" in lines[2]
    assert "1 file(s): 5 error(s)" in result.output


def test_cli_shipped_profiles_offline() -> None:
    result = CliRunner().invoke(cli.main, ["boost", "check", "--offline", *map(str, SHIPPED)])
    assert result.exit_code == 0, result.output
    assert f"{len(SHIPPED)} file(s): 0 error(s)" in result.output


def test_cli_unreachable_engine_is_exit_2_not_a_pass() -> None:
    env = {"OPENSEARCH_URL": "http://127.0.0.1:9", "AFFINITY_SECRET": "x" * 32}
    result = CliRunner(env=env).invoke(cli.main, ["boost", "check", str(SHIPPED[0])])
    assert result.exit_code == 2, result.output
    assert "catalog not checked" in result.output and "--offline" in result.output


@pytest.mark.parametrize(
    ("yaml_text", "fragment"),
    [
        (
            "attributes: {brnd: 1}",
            "field 'brnd' is not in the mapping of catalog; did you mean 'brand'",
        ),
        (
            "attributes: {title: 1}",
            "need a keyword field (the script reads its doc values); use 'title.raw'",
        ),
        ("attributes: {price: 1}", "price' is double, but affinity attributes need a keyword"),
        ("rules: [{id: a, boost: {terms: {title: x}, weight: 1}}]", "is text: filters compare"),
        (
            "rules: [{id: a, hide: {filter: {term: {colour: red}}}}]",
            "'colour' is not in the mapping",
        ),
        ("rules: [{id: a, hide: {filter: {term: {meta.color: red}}}}]", None),
    ],
)
def test_catalog_fields(yaml_text: str, fragment: str | None) -> None:
    profile = parse_boost_profile(f"name: s\n{yaml_text}\n", source="s.yaml")
    findings = [str(f) for f in catalog_findings(profile, CATALOG)]
    if fragment is None:
        assert findings == []
    else:
        assert len(findings) == 1 and fragment in findings[0], findings
        assert findings[0].startswith("s.yaml:2:")


def test_created_within_needs_a_date_field() -> None:
    profile = parse_boost_profile(
        "name: s\nrules: [{id: a, boost: {created_within: 7d, weight: 1}}]"
    )
    view = CatalogView("c", {"created_at": "keyword", "brand": "keyword", "category": "keyword"})
    [finding] = catalog_findings(profile, view)
    assert "created_within needs 'created_at' to be a date field, but it is keyword" in str(finding)


def test_pinned_items_missing_from_the_catalog_are_warnings() -> None:
    profile = parse_boost_profile(
        "name: s\nrules:\n  - id: p\n"
        "    pin: [{item: sku-1, position: 1}, {item: sku-2, position: 2}]\n"
    )
    [finding] = catalog_findings(profile, CATALOG)
    assert finding.severity == "warning" and "'sku-2' is not in catalog" in finding.message
    assert str(finding).startswith("<string>:4:") and ": warning: " in str(finding)
