"""ASGI servers side by side (not a test): the same proxy app under uvicorn (what `affinity
serve` runs: uvloop + httptools) and under granian, on `affinity bench`'s data.

    .venv/bin/pip install granian
    OPENSEARCH_URL=http://127.0.0.1:9230 .venv/bin/python bench/asgi_servers_bench.py

Run `affinity bench` once first (it generates the data under the prefix `bench-`). Requests
are interleaved (request i goes to every server before request i + 1); CPU µs/request is each
server's process tree's CPU time over the run. Impressions are off, so only serving is
compared.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import httpx
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rewriter import config  # noqa: E402
from rewriter.measure import search_bench  # noqa: E402
from rewriter.measure.serve_thread import free_port, serve_process  # noqa: E402


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process and its children (granian runs its workers as children)."""
    total = search_bench.process_cpu_s(pid)
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        total += sum(tree_cpu_s(int(c)) for c in children)
    return total


def _granian(s: config.Settings, port: int, env: dict[str, str]) -> subprocess.Popen:
    cmd = [
        str(Path(sys.executable).with_name("granian")),
        "--interface",
        "asgi",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--loop",
        "uvloop",
        "--log-level",
        "warning",
        "rewriter.serve.server:app",
    ]
    full = {
        **os.environ,
        "OPENSEARCH_URL": s.opensearch_url,
        "AFFINITY_INDEX_PREFIX": s.indices.prefix,
        "AFFINITY_SECRET": s.secret or "",
        "AFFINITY_PROFILES_DIR": str(s.boost_dir),
        **env,
    }
    proc = subprocess.Popen(cmd, env=full, cwd=ROOT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/_affinity/health", timeout=1).status_code < 500:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("granian did not come up")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--users", type=int, default=10_000)
    args = parser.parse_args()
    base = config.load()
    s = replace(
        base,
        indices=config.Indices(prefix="bench-"),
        secret=base.secret or "bench-secret-0123456789abcdef0123",
    )
    bodies = [orjson.dumps(b) for b in search_bench._queries(args.queries)]
    env = {"AFFINITY_IMPRESSIONS": "off"}
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "default.yaml").write_text(
            search_bench.PROFILE.format(name="default", shape="rescore")
        )
        sb = replace(s, boost_dir=Path(tmp))
        ports = {"uvicorn": free_port(), "granian": free_port()}
        procs = {
            "uvicorn": serve_process(sb, ports["uvicorn"], env),
            "granian": _granian(sb, ports["granian"], env),
        }
        try:
            clients = {n: httpx.Client(base_url=f"http://127.0.0.1:{p}") for n, p in ports.items()}
            path = f"/{s.indices.catalog}/_search"
            lat: dict[str, list[float]] = {}
            cpu = {n: tree_cpu_s(p.pid) for n, p in procs.items()}
            for i in range(args.queries):
                for mode, headers in (
                    ("off", {"X-Personalization": "off"}),
                    ("rescore", {"X-User-Id": f"user-{i % args.users}"}),
                ):
                    for name, c in clients.items():
                        h = {"content-type": "application/json", **headers}
                        t0 = time.perf_counter()
                        c.post(path, content=bodies[i], headers=h).raise_for_status()
                        lat.setdefault(f"{name} {mode}", []).append(
                            (time.perf_counter() - t0) * 1000
                        )
            used = {n: tree_cpu_s(p.pid) - cpu[n] for n, p in procs.items()}
        finally:
            for p in procs.values():
                p.terminate()
                p.wait(30)
    print(f"{'case':<18}{'p50 ms':>9}{'p99 ms':>9}")
    for name, values in lat.items():
        q = statistics.quantiles(values, n=100)
        print(f"{name:<18}{statistics.median(values):9.2f}{q[98]:9.2f}")
    for name, seconds in used.items():
        print(f"{name}: {seconds / (2 * args.queries) * 1e6:.0f} CPU µs/request (both modes)")


if __name__ == "__main__":
    main()
