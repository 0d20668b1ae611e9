"""A local cluster's layout, status and stop, without OpenSearch: stand-in processes (sleep)
play the nodes, as in test_local_node_registry.py."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

import cli
from rewriter.engine import local_node
from rewriter.measure.serve_thread import free_port


@pytest.fixture
def sleepers() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs = [subprocess.Popen(["sleep", "60"]) for _ in range(3)]
    yield procs
    for proc in procs:
        proc.kill()
        proc.wait()


def _fake_cluster(data_dir: Path, pids: list[int | None]) -> local_node.ClusterLayout:
    layout = local_node.cluster_layout(len(pids), 1, "256m")  # nothing answers on 1-3
    data_dir.mkdir(parents=True)
    local_node._write_layout(data_dir, layout)
    for n, pid in zip(layout.numbers, pids, strict=True):
        home = layout.node_dir(data_dir, n)
        home.mkdir()
        if pid is not None:
            (home / "engine.pid").write_text(str(pid))
            (home / "READY").write_text(f"127.0.0.1:{layout.http_ports[n - 1]}\n")
    return layout


def test_layout_ports_names_and_discovery() -> None:
    layout = local_node.cluster_layout(3, 9200, "256m")
    assert layout.http_ports == (9200, 9201, 9202)
    assert layout.transport_ports == (9300, 9301, 9302)
    assert [layout.node_name(n) for n in layout.numbers] == ["node-1", "node-2", "node-3"]
    assert layout.discovery_args() == [
        "--seed-hosts",
        "127.0.0.1:9300,127.0.0.1:9301,127.0.0.1:9302",
        "--initial-cluster-managers",
        "node-1,node-2,node-3",
    ]


def test_layout_is_recorded_and_read_back(tmp_path: Path) -> None:
    layout = _fake_cluster(tmp_path / "c", [None, None])
    assert local_node.read_layout(tmp_path / "c") == layout
    assert local_node.read_layout(tmp_path) is None
    quick = replace(layout, jvm_options=("-XX:TieredStopAtLevel=1",))
    local_node._write_layout(tmp_path, quick)
    assert local_node.read_layout(tmp_path) == quick


def test_unreadable_layout_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / local_node.CLUSTER_FILE).write_text("{not json")
    with pytest.raises(local_node.EngineError, match=r"cluster\.json is unreadable"):
        local_node.status(tmp_path)


def test_status_lists_every_node(tmp_path: Path, sleepers: list[subprocess.Popen]) -> None:
    _fake_cluster(tmp_path / "c", [sleepers[0].pid, None, sleepers[2].pid])
    st = local_node.status(tmp_path / "c")
    assert st.running and st.pid == sleepers[0].pid and st.url == "http://127.0.0.1:1"
    assert [(n.data_dir.name, n.running) for n in st.nodes] == [
        ("node-1", True),
        ("node-2", False),
        ("node-3", True),
    ]


def test_stop_stops_every_node(tmp_path: Path, sleepers: list[subprocess.Popen]) -> None:
    _fake_cluster(tmp_path / "c", [p.pid for p in sleepers])
    assert local_node.stop(tmp_path / "c", timeout=10)
    assert all(p.wait(10) is not None for p in sleepers)
    assert not local_node.status(tmp_path / "c").running
    assert not local_node.stop(tmp_path / "c")


def test_cli_status_names_the_node_down(tmp_path: Path, sleepers: list[subprocess.Popen]) -> None:
    """No node answers HTTP here (sleep plays them): the status says so, lists each node and
    the command that starts the one that is down, and exits 4."""
    data_dir = tmp_path / "c"
    _fake_cluster(data_dir, [sleepers[0].pid, sleepers[1].pid, None])
    result = CliRunner(env={"AFFINITY_HOME": str(tmp_path)}).invoke(
        cli.main, ["engine", "status", "--data-dir", str(data_dir)]
    )
    assert result.exit_code == 4, result.output
    assert "no node answers" in result.output
    assert f"node-1: running: pid {sleepers[0].pid}" in result.output
    assert "node-3: not running" in result.output
    assert f"affinity engine start --data-dir {data_dir}" in result.output


def test_start_refuses_a_mismatch(tmp_path: Path) -> None:
    _fake_cluster(tmp_path / "c", [None, None, None])
    with pytest.raises(local_node.EngineError, match="holds a 3-node cluster, not 2"):
        local_node.start_cluster(tmp_path / "c", 2, log=lambda m: None)
    with pytest.raises(local_node.EngineError, match="--nodes 3"):
        local_node.start(tmp_path / "c", log=lambda m: None)
    single = tmp_path / "single"
    (single / "data").mkdir(parents=True)
    with pytest.raises(local_node.EngineError, match="holds a single node's data"):
        local_node.start_cluster(single, 3, log=lambda m: None)


def test_a_taken_port_stops_the_start_before_any_node_starts(
    tmp_path: Path, sleepers: list[subprocess.Popen]
) -> None:
    """node-1 runs; node-3's HTTP port is taken: the start names the port, and node-2, free
    to start, was not started either (no half-started cluster)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        layout = local_node.ClusterLayout((free_port(), free_port(), port), (0, 0, 0), "256m")
        data_dir = tmp_path / "c"
        data_dir.mkdir()
        local_node._write_layout(data_dir, layout)
        home = layout.node_dir(data_dir, 1)
        home.mkdir()
        (home / "engine.pid").write_text(str(sleepers[0].pid))
        with pytest.raises(local_node.EngineError, match=f"Port {port} on 127.0.0.1 is taken"):
            local_node.start_cluster(data_dir, None, log=lambda m: None)
    assert not (layout.node_dir(data_dir, 2) / "engine.pid").exists()
