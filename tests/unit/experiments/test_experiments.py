"""Experiment definitions (file:line errors), hash assignment, and the proxy hooks."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from scipy import stats as ss

from rewriter import privacy
from rewriter.boost.profile import BoostProfile
from rewriter.experiments import assignment as ex
from rewriter.ranking.rewrite import RequestContext
from rewriter.serve.state import ProxyState

GOOD = """\
name: movielens-alpha
index: catalog
salt: 2024-05-a
start: 2024-05-01T00:00:00Z
end: 2024-06-01
primary_metric: conversion_rate
control: generic
variants:
  generic: {traffic: 50, generic: true}
  personal: {traffic: 30, boost_profile: movielens, alpha: 2.5}
  default: {traffic: 20}
"""
PROFILES = ("default", "movielens")


def parse(text: str, known: tuple[str, ...] | None = PROFILES) -> ex.Experiment:
    return ex.parse_experiment(textwrap.dedent(text), "exp.yaml", known)


def error(text: str) -> str:
    with pytest.raises(ex.ExperimentError) as info:
        parse(text)
    return str(info.value)


def test_a_valid_experiment() -> None:
    e = parse(GOOD)
    assert (e.name, e.index, e.salt, e.control, e.primary_metric) == (
        "movielens-alpha", "catalog", "2024-05-a", "generic", "conversion_rate",
    )  # fmt: skip
    assert e.start == 1714521600.0 and e.end == 1717200000.0
    assert [v.name for v in e.variants] == ["generic", "personal", "default"]
    assert e.variant("personal") == ex.Variant("personal", 30.0, False, "movielens", 2.5)
    assert e.variant("generic").generic and [v.name for v in e.treatments] == [
        "personal",
        "default",
    ]
    assert e.active(1714521600.0) and not e.active(1717200000.0) and not e.active(0)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("control: generic", "contrl: generic"), "exp.yaml:7:1: unknown key 'contrl' in the "
         "experiment; did you mean 'control'?"),
        (("traffic: 20", "traffic: 25"), "exp.yaml:9:3: variant traffic must add up to 100"),
        (("{traffic: 50, generic: true}", "{traffic: 50, generic: true, alpha: 1}"),
         "exp.yaml:9:12: variant 'generic' is generic: it cannot also set boost_profile or alpha"),
        (("boost_profile: movielens", "boost_profile: movies"),
         "exp.yaml:10:42: boost profile 'movies' is not loaded (known: default, movielens)"),
        (("end: 2024-06-01", "end: 2024-04-01"), "exp.yaml:5:6: end 2024-04-01T00:00:00Z is not "
         "after start"),
        (("salt: 2024-05-a\n", ""), "exp.yaml:1:1: missing required key 'salt'"),
        (("control: generic", "control: other"), "exp.yaml:7:10: control 'other' is not a variant"),
        (("primary_metric: conversion_rate", "primary_metric: clicks"),
         "exp.yaml:6:17: primary_metric 'clicks' is not one of ctr, "),
        (("start: 2024-05-01T00:00:00Z", "start: soon"), "exp.yaml:4:8: start is 'soon', not "
         "ISO 8601"),
        (("alpha: 2.5", "alpha: -1"), "exp.yaml:10:60: alpha must be a number between 0 and inf"),
        (("traffic: 30,", "trafic: 30,"), "exp.yaml:10:14: unknown key 'trafic' in variant "
         "'personal'; did you mean 'traffic'?"),
        (("index: catalog", "index: [a, b]"), "exp.yaml:2:8: expected a single value here"),
        (("variants:", "variants: {}\nx:"), "exp.yaml:9:1: unknown key 'x'"),
    ],
)  # fmt: skip
def test_errors_name_file_line_and_column(change: tuple[str, str], expected: str) -> None:
    message = error(GOOD.replace(*change))
    assert message.startswith(expected), message


def test_one_variant_and_bad_yaml_are_refused() -> None:
    one = "name: a\nindex: c\nsalt: s\nstart: 0\nvariants:\n  only: {traffic: 100}\n"
    assert "at least two variants, got 1" in error(one)
    assert error("name: [unclosed\n").startswith("exp.yaml:2:1: invalid YAML")
    assert "empty experiment file" in error("")


def _write(directory: Path, name: str, text: str) -> None:
    directory.mkdir(exist_ok=True)
    (directory / f"{name}.yaml").write_text(text)


def test_load_refuses_duplicate_names_and_overlaps_on_one_index(tmp_path: Path) -> None:
    assert len(ex.load_experiments(tmp_path / "missing")) == 0
    d = tmp_path / "experiments"
    _write(d, "a", GOOD)
    _write(d, "b", GOOD.replace("movielens-alpha", "later").replace("2024-05-01T", "2024-06-01T")
           .replace("end: 2024-06-01", "end: 2024-07-01"))  # fmt: skip
    assert [e.name for e in ex.load_experiments(d, PROFILES)] == ["movielens-alpha", "later"]
    _write(d, "c", GOOD.replace("movielens-alpha", "overlapping").replace("end: 2024-06-01\n", ""))
    with pytest.raises(ex.ExperimentError, match=r"c\.yaml:1:1: overlapping and movielens-alpha"):
        ex.load_experiments(d, PROFILES)
    _write(d, "c", GOOD.replace("index: catalog", "index: products"))
    with pytest.raises(ex.ExperimentError, match="already used by"):
        ex.load_experiments(d, PROFILES)


def test_assignment_is_deterministic_split_as_configured_and_salted() -> None:
    e = parse(GOOD)
    users = [f"user-{i}" for i in range(30_000)]
    first = [e.assign(u).name for u in users]
    again = parse(GOOD)
    assert first == [again.assign(u).name for u in users]  # stable across loads
    counts = [first.count(v.name) for v in e.variants]
    assert ss.chisquare(counts, [0.5 * 30_000, 0.3 * 30_000, 0.2 * 30_000]).pvalue > 0.001
    resalted = parse(GOOD.replace("2024-05-a", "2024-05-b"))
    moved = sum(a != resalted.assign(u).name for a, u in zip(first, users, strict=True))
    assert 0.55 < moved / len(users) < 0.70  # 1 − (0.5² + 0.3² + 0.2²) = 0.62 if independent


def test_assignments_of_two_experiments_are_independent() -> None:
    a = parse(GOOD)
    b = parse(GOOD.replace("movielens-alpha", "another"))  # same salt, other name
    table = [[0] * 3 for _ in range(3)]
    names = [v.name for v in a.variants]
    for i in range(30_000):
        u = f"u{i}"
        table[names.index(a.assign(u).name)][names.index(b.assign(u).name)] += 1
    assert ss.chi2_contingency(table).pvalue > 0.001


def test_enroll_only_active_identified_searches_on_the_target_index() -> None:
    e = parse(GOOD)
    found = ex.ExperimentSet([e])
    u1 = privacy.pseudonymize("u1", b"s" * 32)
    at = e.start + 10
    arm = ex.enroll_search(found, "catalog", u1, chosen=False, now=at)
    assert arm is not None and arm.experiment == "movielens-alpha"
    assert ex.enroll_search(found, "products", u1, chosen=False, now=at) is None
    assert ex.enroll_search(found, "catalog", None, chosen=False, now=at) is None
    assert ex.enroll_search(found, "catalog", u1, chosen=True, now=at) is None
    assert ex.enroll_search(found, "catalog", u1, chosen=False, now=e.end) is None
    with pytest.raises(KeyError, match="known: movielens-alpha"):
        found.get("nope")


def test_arm_hooks_for_the_proxy() -> None:
    e = parse(GOOD)
    generic = ex.Arm(e.name, e.variant("generic"))
    personal = ex.Arm(e.name, e.variant("personal"))
    assert ex.arm_context(generic, RequestContext()).personalization_off
    assert not ex.arm_context(personal, RequestContext()).personalization_off
    log_a: dict = {"reason": "personalization_off"}
    log_b: dict = {}
    ex.tag_log(log_a, generic)
    ex.tag_log(log_b, None)
    assert log_a["variant"] == "generic" and log_a["reason"] == "experiment_control"
    assert log_b["experiment"] is None and log_b["query_id"] != log_a["query_id"]
    assert len(log_a["query_id"]) == 32


def test_proxy_boost_for_takes_the_variant_after_the_header() -> None:
    e = parse(GOOD)
    boosts = {"default": BoostProfile("default"), "movielens": BoostProfile("movielens", alpha=2)}
    state = ProxyState(
        settings=None, http=None, profiles=None, boost_profiles=boosts, secret=b"s" * 32,
        index_profiles={"catalog": "default"},
    )  # type: ignore[arg-type]  # fmt: skip
    personal = ex.Arm(e.name, e.variant("personal"))
    chosen = state.boost_for("catalog", None, personal)
    assert (chosen.name, chosen.alpha) == ("movielens", 2.5)
    assert state.boost_for("catalog", "default", personal).name == "default"
    plain = state.boost_for("catalog", None, ex.Arm(e.name, e.variant("default")))
    assert (plain.name, plain.alpha) == ("default", 1.0)
    assert state.boost_for("catalog", None).name == "default"


def test_the_documented_example_is_valid() -> None:
    doc = ex.__doc__ or ""
    block = doc.split("by default; boost profiles")[1].split("\n\n")[1]
    example = textwrap.dedent(block)
    parsed = ex.parse_experiment(example, "docstring", PROFILES)
    assert parsed.name == "movielens-alpha" and parsed.variant("personal").alpha == 2.5
