"""The fault suite, long: tests/faults with more users and events, its rows as one table.

    python bench/fault_suite.py --users 400 --events-per-user 100

Each fault (kill -9 of the proxy mid-ingest, kill -9 of the importer mid-file, a read-only
events index, the engine stopped and started under traffic) is a test in tests/faults that
asserts nothing acknowledged is lost, nothing is folded twice and every profile equals a
rebuild; here they run larger and the table (docs/benchmarks.md) reports what they saw.
`OPENSEARCH_URL` runs them against an existing cluster instead of a local node.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rewriter.measure.faults import TABLE_HEAD  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=400)
    parser.add_argument("--events-per-user", type=int, default=100)
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (e.g. -k proxy)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "faults.md"
        env = {
            **os.environ,
            "AFFINITY_FAULT_USERS": str(args.users),
            "AFFINITY_FAULT_EVENTS_PER_USER": str(args.events_per_user),
            "AFFINITY_FAULT_REPORT": str(report),
        }
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/faults"]
        done = subprocess.run([*cmd, *args.pytest_args], env=env, cwd=ROOT)
        print(TABLE_HEAD)
        print(report.read_text() if report.exists() else "(no fault ran to the end)", end="")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
