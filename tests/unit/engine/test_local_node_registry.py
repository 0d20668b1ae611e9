"""The record of started local nodes that lets `engine stop|status` without --data-dir find
them. A stand-in process (sleep) plays each node: nothing here starts OpenSearch."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

import cli
from rewriter import config
from rewriter.engine import local_node


@pytest.fixture
def sleepers() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs = [subprocess.Popen(["sleep", "60"]) for _ in range(2)]
    yield procs
    for proc in procs:
        proc.kill()
        proc.wait()


def _fake_node(registry: Path, data_dir: Path, pid: int) -> None:
    data_dir.mkdir(parents=True)
    (data_dir / "engine.pid").write_text(str(pid))
    local_node.remember(registry, data_dir)


def test_two_running_nodes_are_named_and_neither_is_stopped(
    tmp_path: Path, sleepers: list[subprocess.Popen[bytes]]
) -> None:
    registry = config.load({"AFFINITY_HOME": str(tmp_path)}).node_registry
    dirs = [tmp_path / f"node{i}" for i in range(len(sleepers))]
    for data_dir, proc in zip(dirs, sleepers, strict=True):
        _fake_node(registry, data_dir, proc.pid)
    result = CliRunner(env={"AFFINITY_HOME": str(tmp_path)}).invoke(cli.main, ["engine", "stop"])
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    for data_dir, proc in zip(dirs, sleepers, strict=True):
        assert f"affinity engine stop --data-dir {data_dir}" in result.output
        assert f"pid {proc.pid}" in result.output
        assert proc.poll() is None


def test_records_of_stopped_nodes_are_dropped(tmp_path: Path) -> None:
    registry = tmp_path / "nodes"
    gone = subprocess.Popen(["true"])
    gone.wait()
    _fake_node(registry, tmp_path / "old", gone.pid)
    assert local_node.running_nodes(registry) == []
    assert list(registry.iterdir()) == []
