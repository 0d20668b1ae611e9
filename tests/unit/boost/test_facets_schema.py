"""facets: in profiles/*.yaml (issue 11, item 7): parsed values, which rules apply to a
segment, every mistake at file:line:column, and `affinity boost check` on it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

import cli
from rewriter.boost.checker import CatalogView, check_files, flatten_mapping
from rewriter.boost.facets import FacetRule, FacetSettings
from rewriter.boost.profile import BoostProfileError, load_boost_profile, parse_boost_profile

PROFILES = Path(__file__).resolve().parents[3] / "profiles"

GOOD = """name: shop
segments:
  staff: {when: {users: [s-1]}}
  new_user: {when: {sessions: {lt: 2}}}
facets:
  max_favored: 2
  min_affinity: 0.5
  rules:
    - {id: pin-house, group: brand, pin: [acme, zenit]}
    - {id: staff-no-brands, segment: staff, group: brand, hide: all}
    - {id: no-outlet, group: category, hide: outlet}
    - {id: new-one, segment: new_user, max_favored: 1}
    - {id: staff-off, segment: staff, personalize: false}
"""


def _errors(text: str) -> list[str]:
    with pytest.raises(BoostProfileError) as info:
        parse_boost_profile(text, source="shop.yaml")
    return [str(e) for e in info.value.errors]


def test_facets_parse_into_settings_and_rules() -> None:
    facets = parse_boost_profile(GOOD).facets
    assert (facets.personalize, facets.max_favored, facets.min_affinity) == (True, 2, 0.5)
    assert facets.rules[0] == FacetRule("pin-house", "brand", "pin", ("acme", "zenit"))
    assert facets.rules[1] == FacetRule("staff-no-brands", "brand", "hide", (), "staff")
    assert facets.rules[2].values == ("outlet",)
    assert facets.rules[3] == FacetRule("new-one", segment="new_user", max_favored=1)


def test_default_profile_has_the_built_in_facet_settings() -> None:
    assert load_boost_profile(PROFILES / "default.yaml").facets == FacetSettings()
    retail = load_boost_profile(PROFILES / "retail.yaml").facets
    assert {r.id for r in retail.rules} >= {"staff-generic-facets", "pin-house-brand"}


def test_for_segments_keeps_the_rules_that_apply_and_overrides() -> None:
    facets = parse_boost_profile(GOOD).facets
    everyone = facets.for_segments([])
    assert everyone.fired == ("pin-house", "no-outlet") and everyone.max_favored == 2
    staff = facets.for_segments(["staff"])
    assert staff.personalize is False
    assert [r.id for r in staff.hidden("brand.keyword")] == ["staff-no-brands"]
    assert [r.id for r in staff.pinned("brand")] == ["pin-house"]
    assert facets.for_segments(["new_user"]).max_favored == 1


@pytest.mark.parametrize(
    ("facets", "expected"),
    [
        (
            "facets:\n  max_favored: 500\n",
            "shop.yaml:3:16: facets.max_favored: must be between 0 and 100, got 500",
        ),
        ("facets:\n  min_affinity: 2\n", "shop.yaml:3:17: facets.min_affinity:"),
        ("facets:\n  personalise: false\n", "shop.yaml:3:3: facets: unknown key 'personalise'"),
        (
            "facets:\n  rules:\n    - {id: a, hide: [x]}\n",
            "shop.yaml:4:7: facets.rules[0]: hide needs `group:`",
        ),
        (
            "facets:\n  rules:\n    - {id: a, group: brand, hide: [x], pin: [y]}\n",
            "shop.yaml:4:7: facets.rules[0]: one of hide or pin per facet rule",
        ),
        (
            "facets:\n  rules:\n    - {id: a, segment: vip, max_favored: 1}\n",
            "shop.yaml:4:24: facets.rules[0].segment: unknown segment 'vip'",
        ),
        (
            "facets:\n  rules:\n    - {id: a}\n",
            "shop.yaml:4:7: facets.rules[0]: a facet rule needs one of hide, pin, max_favored",
        ),
        (
            "facets:\n  rules:\n    - {id: a, personalize: false}\n    - {id: a, max_favored: 1}\n",
            "shop.yaml:5:7: facets.rules[1]: duplicate facet rule id 'a' (first used on line 4)",
        ),
        (
            "facets:\n  rules:\n    - {group: brand, pin: [x]}\n",
            "shop.yaml:4:7: facets.rules[0]: missing required key 'id'",
        ),
    ],
)
def test_each_mistake_is_named_at_its_line(facets: str, expected: str) -> None:
    errors = _errors("name: shop\n" + facets)
    assert any(e.startswith(expected) for e in errors), errors


def test_boost_check_confirms_facet_groups_against_the_catalog(tmp_path: Path) -> None:
    path = tmp_path / "shop.yaml"
    path.write_text(
        "name: shop\nfacets:\n  rules:\n"
        "    - {id: a, group: brnad, hide: [x]}\n"
        "    - {id: b, group: price, pin: ['1']}\n"
    )
    mapping = {"c": {"mappings": {"properties": {"brand": {"type": "keyword"}, "price": {}}}}}
    catalog = CatalogView("catalog", flatten_mapping(mapping), frozenset())
    report = check_files([path], lambda profile: catalog)
    text = [str(e) for e in [*report.errors, *report.findings]]
    assert any(t.startswith(f"{path}:4:") and "brnad" in t for t in text), text
    assert any(t.startswith(f"{path}:5:") and "price" in t for t in text), text


def test_cli_boost_check_reports_facet_mistakes_with_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "shop.yaml"
    path.write_text("name: shop\nfacets:\n  max_favored: -1\n  rules:\n    - {id: x, hide: all}\n")
    result = CliRunner().invoke(cli.main, ["boost", "check", "--offline", str(path)])
    assert result.exit_code == 1
    lines = [ln for ln in result.output.splitlines() if ln.startswith(str(path))]
    assert [re.match(r".*?:(\d+):\d+: ", ln).groups()[0] for ln in lines] == ["3", "5"], lines  # type: ignore[union-attr]
