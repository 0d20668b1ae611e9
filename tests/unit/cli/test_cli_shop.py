"""`affinity shop generate` writes files; `affinity evaluate` refuses bad shop options in words,
before it needs an engine."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

import cli

PROFILES = str(Path(__file__).resolve().parents[3] / "profiles")


def test_shop_generate_writes_the_files_and_is_deterministic(tmp_path: Path) -> None:
    args = ["shop", "generate", "--users", "20", "--items", "36", "--seed", "5"]
    first = CliRunner().invoke(cli.main, [*args, "--out", str(tmp_path / "a")])
    CliRunner().invoke(cli.main, [*args, "--out", str(tmp_path / "b")])
    assert first.exit_code == 0 and "36 items" in first.output, first.output
    for name in ("catalog.jsonl", "events.jsonl", "truth.json"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()
    bad = CliRunner().invoke(cli.main, ["shop", "generate", "--out", str(tmp_path), "--users", "0"])
    assert bad.exit_code != 0 and "at least 1 user" in bad.output
    assert "Traceback" not in bad.output


def test_evaluate_names_an_unknown_positive_type(tmp_path: Path) -> None:
    CliRunner().invoke(cli.main, ["shop", "generate", "--out", str(tmp_path), "--users", "3"])
    result = CliRunner().invoke(
        cli.main,
        [
            "evaluate", "--events", str(tmp_path / "events.jsonl"),
            "--catalog", str(tmp_path / "catalog.jsonl"), "--cutoff", "last",
            "--positives", "view,rating_high",
        ],
        env={"AFFINITY_PROFILES_DIR": PROFILES, "OPENSEARCH_URL": "http://127.0.0.1:9"},
    )  # fmt: skip
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert "rating_high is not an event type" in result.output
    assert "Traceback" not in result.output
