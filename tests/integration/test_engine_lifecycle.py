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


def test_start_status_stop_and_data_survives(node_dir: Path) -> None:
    port = free_port()
    runner = CliRunner()
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
    """Another node holds the data dir (here: ours, with its pid file hidden)."""
    pid_file = node_dir / "engine.pid"
    saved = pid_file.read_text()
    pid_file.unlink()
    try:
        with pytest.raises(local_node.EngineError, match="locked by another OpenSearch node"):
            local_node.start(node_dir, port=free_port(), timeout=120)
    finally:
        pid_file.write_text(saved)
    assert local_node.status(node_dir).running


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
