"""AFFINITY_SHARDS and AFFINITY_REPLICAS: read from the environment, laid over the templates."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

import cli
from rewriter import config
from rewriter.engine.bootstrap import TEMPLATE_NAMES, index_layout, load_templates


def _layouts(env: dict[str, str]) -> dict[str, tuple[int, int]]:
    s = config.load(env)
    return {t.name: index_layout(t, s) for t in load_templates()}


def test_defaults_are_the_templates_counts() -> None:
    assert _layouts({}) == {name: (1, 0) for name in TEMPLATE_NAMES}


def test_shards_split_catalog_and_profiles_replicas_copy_every_index() -> None:
    got = _layouts({"AFFINITY_SHARDS": "3", "AFFINITY_REPLICAS": "1"})
    assert got == {
        "catalog": (3, 1),
        "profiles": (3, 1),
        "events": (1, 1),
        "impressions": (1, 1),
        "journal": (1, 1),
        "retired": (1, 1),  # the retention's per-user totals: one shard, copied like the logs
        "changes": (1, 1),  # the profile caches' change feed
    }


@pytest.mark.parametrize(
    ("name", "value"),
    [("AFFINITY_SHARDS", "0"), ("AFFINITY_SHARDS", "x"), ("AFFINITY_REPLICAS", "-1")],
)
def test_unusable_counts_are_refused_by_name(name: str, value: str) -> None:
    with pytest.raises(config.SettingError, match=f"{name}='{value}'"):
        config.load({name: value})


def test_an_unusable_count_ends_a_command_in_one_line() -> None:
    result = CliRunner(env={"AFFINITY_SHARDS": "three"}).invoke(cli.main, ["bootstrap"])
    assert result.exit_code == 1
    assert "AFFINITY_SHARDS='three' is not a whole number" in result.output
    assert "Traceback" not in result.output
