"""engine/ itself: start, status, stop, data surviving a restart, and the clear errors."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

import cli
from rewriter import config
from rewriter.engine import local_node
from rewriter.engine.client import connect, wait_for_health
from rewriter.measure.serve_thread import free_port

pytestmark = pytest.mark.engine

if os.environ.get("OPENSEARCH_URL"):
    pytest.skip(
        "OPENSEARCH_URL is set: the local engine's lifecycle is not under test on this run",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def node_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("lifecycle")
    yield path
    local_node.stop(path)


@pytest.fixture(scope="module")
def home_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The CLI's AFFINITY_HOME (default data dir, record of started nodes): not ~/.affinity."""
    return {"AFFINITY_HOME": str(tmp_path_factory.mktemp("home"))}


def test_start_status_stop_and_data_survives(node_dir: Path, home_env: dict[str, str]) -> None:
    port = free_port()
    runner = CliRunner(env=home_env)
    started = runner.invoke(
        cli.main, ["engine", "start", "--port", str(port), "--data-dir", str(node_dir)]
    )
    assert started.exit_code == 0, started.output
    assert f"is up at http://127.0.0.1:{port}" in started.output
    assert "OpenSearch 2.19." in started.output

    status = runner.invoke(cli.main, ["engine", "status", "--data-dir", str(node_dir)])
    assert status.exit_code == 0, status.output
    assert "running: pid" in status.output and "health" in status.output

    es = connect(config.Settings(url=f"http://127.0.0.1:{port}"))
    es.index(index="survivor", id="1", body={"x": 1}, refresh=True)

    stopped = runner.invoke(cli.main, ["engine", "stop", "--data-dir", str(node_dir)])
    assert "stopped" in stopped.output
    after = runner.invoke(cli.main, ["engine", "status", "--data-dir", str(node_dir)])
    assert after.exit_code == 3 and "not running" in after.output

    again = runner.invoke(
        cli.main, ["engine", "start", "--port", str(port), "--data-dir", str(node_dir)]
    )
    assert again.exit_code == 0, again.output
    wait_for_health(es, "yellow", 60)
    assert es.get(index="survivor", id="1")["_source"] == {"x": 1}


def test_second_start_is_idempotent(node_dir: Path) -> None:
    st = local_node.status(node_dir)
    assert st.running
    again = local_node.start(node_dir, port=free_port(), log=lambda m: None)
    assert again.pid == st.pid


def test_port_taken_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(local_node.EngineError, match=f"Port {port} .* is taken"):
            local_node.start(tmp_path / "other", port=port)


def test_locked_data_dir_is_a_clear_error(node_dir: Path) -> None:
    """Another node holds the data dir (here: ours, with its pid file hidden; the failed start
    removes its READY marker, which we put back too)."""
    pid_file, ready = node_dir / "engine.pid", node_dir / "READY"
    saved, address = pid_file.read_text(), ready.read_text()
    pid_file.unlink()
    try:
        with pytest.raises(local_node.EngineError, match="locked by another OpenSearch node"):
            local_node.start(node_dir, port=free_port(), timeout=120)
    finally:
        pid_file.write_text(saved)
        ready.write_text(address)
    assert local_node.status(node_dir).running


def test_stop_without_data_dir_stops_the_node_started_with_one(
    node_dir: Path, home_env: dict[str, str]
) -> None:
    """`engine start --data-dir D`, then `engine status` and `engine stop` with no --data-dir:
    both find D's node, instead of reporting the default data dir as not running."""
    runner = CliRunner(env=home_env)
    st = local_node.status(node_dir)
    assert st.running and st.pid
    status = runner.invoke(cli.main, ["engine", "status"])
    assert status.exit_code == 0, status.output
    assert f"pid {st.pid}" in status.output and str(node_dir) in status.output

    stopped = runner.invoke(cli.main, ["engine", "stop"])
    assert stopped.exit_code == 0, stopped.output
    assert "stopped" in stopped.output and str(node_dir) in stopped.output
    assert not local_node.status(node_dir).running

    again = runner.invoke(cli.main, ["engine", "stop"])
    assert again.exit_code == 0 and "not running" in again.output


def test_java_too_old_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "bin" / "java"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'openjdk version \"11.0.2\" 2019-01-15' >&2\n")
    fake.chmod(0o755)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))
    with pytest.raises(local_node.EngineError, match=r"Java 11; OpenSearch 2\.19 needs Java 17"):
        local_node.find_java()


def test_maven_offline_is_a_clear_error(tmp_path: Path) -> None:
    """An empty local repository in offline mode: what a machine without Central sees."""
    import shutil

    engine = tmp_path / "engine"
    shutil.copytree(local_node.ENGINE_DIR / "src", engine / "src")
    shutil.copy(local_node.ENGINE_DIR / "pom.xml", engine / "pom.xml")
    repo = f"-Dmaven.repo.local={tmp_path / 'empty-repo'}"
    with pytest.raises(local_node.EngineError, match="Maven could not download"):
        local_node.build_launcher(lambda m: None, engine, ("-o", repo))
