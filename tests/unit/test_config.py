"""Settings from the environment: numbers affinity cannot use are refused by name."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

import cli
from rewriter import config


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AFFINITY_TIMEOUT", "abc"),
        ("AFFINITY_TIMEOUT", "0"),
        ("AFFINITY_TIMEOUT", "-3"),
        ("AFFINITY_TIMEOUT", "nan"),
        ("AFFINITY_TIMEOUT", "inf"),
        ("AFFINITY_ENGINE_PORT", "http"),
        ("AFFINITY_ENGINE_PORT", "0"),
    ],
)
def test_unusable_numbers_are_refused_by_name(name: str, value: str) -> None:
    with pytest.raises(config.SettingError, match=f"{name}='{value}'"):
        config.load({name: value})


def test_usable_numbers_are_read() -> None:
    settings = config.load({"AFFINITY_TIMEOUT": " 2.5 ", "AFFINITY_ENGINE_PORT": "9300"})
    assert (settings.timeout, settings.engine_port) == (2.5, 9300)
    assert (config.load({}).timeout, config.load({}).engine_port) == (10.0, 9200)


def test_an_unusable_timeout_ends_a_command_in_one_line() -> None:
    result = CliRunner(env={"AFFINITY_TIMEOUT": "ten"}).invoke(cli.main, ["engine", "status"])
    assert result.exit_code == 1
    assert "AFFINITY_TIMEOUT='ten' is not a positive number" in result.output
    assert "Traceback" not in result.output
