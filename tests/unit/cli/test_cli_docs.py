"""Every command says what it does; every setting is documented (in --help and README)."""

from __future__ import annotations

from pathlib import Path

import click
from click.testing import CliRunner

import cli
from rewriter import config

README = (Path(__file__).resolve().parents[3] / "README.md").read_text()


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for name, cmd in group.commands.items():
        out.append((*prefix, name))
        if isinstance(cmd, click.Group):
            out += _commands(cmd, (*prefix, name))
    return out


def test_every_command_has_help_text() -> None:
    runner = CliRunner()
    commands = _commands(cli.main)
    assert ("engine", "start") in commands and ("bootstrap",) in commands
    for path in commands:
        result = runner.invoke(cli.main, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        cmd: click.Command = cli.main
        for part in path:
            cmd = cmd.commands[part]  # type: ignore[attr-defined]
        assert cmd.help and len(cmd.help) > 15, f"`affinity {' '.join(path)}` has no help"


def test_every_setting_is_listed_in_help_and_readme() -> None:
    result = CliRunner().invoke(cli.main, ["--help"])
    for name in config.SETTINGS:
        assert name in result.output, name
    for name in ("OPENSEARCH_URL", "OPENSEARCH_USER", "OPENSEARCH_PASSWORD"):
        assert name in README, name


def test_every_top_level_command_is_in_the_readme() -> None:
    for name in cli.main.commands:
        assert f"affinity {name}" in README, f"README does not mention `affinity {name}`"
