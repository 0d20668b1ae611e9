"""Fuzz the proxy (not a test; the CI-sized run is tests/integration/test_fuzz_proxy.py).

Sends every hand-written hostile request, then --requests in all: schemathesis cases drawn
from the proxy's OpenAPI description (GET /_affinity/openapi.json), --schema-share of them,
and mutants of those for the rest. Prints the status histogram, the 5xx and hangs (with
samples), the document count of every index before and after, and whether the engine's data
changed beyond what the accepted events and searches explain. Exit status 1 if anything
failed.

    .venv/bin/python bench/fuzz_proxy.py --requests 100000
    .venv/bin/python bench/fuzz_proxy.py --url http://127.0.0.1:9200 --requests 5000

Without --url (or OPENSEARCH_URL) it starts a local node from engine/ in a temporary data
directory and stops it at the end. Indices go under a fresh prefix (--prefix), deleted at the
end unless --keep.
"""

from __future__ import annotations

import argparse
import itertools
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from tqdm import tqdm

from rewriter import config
from rewriter.engine import local_node
from rewriter.engine.bootstrap import bootstrap_cluster
from rewriter.engine.client import connect, wait_for_health
from rewriter.measure import fuzz, fuzz_cases, fuzz_generate
from rewriter.measure.serve_thread import free_port


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--requests", type=int, default=5000, help="requests in all (default 5000)")
    p.add_argument(
        "--schema-share",
        type=float,
        default=0.2,
        help="share drawn by schemathesis; the rest are mutants of those (default 0.2)",
    )
    p.add_argument("--seed", type=int, default=int(time.time()), help="random seed")
    p.add_argument("--concurrency", type=int, default=8, help="requests in flight (default 8)")
    p.add_argument("--timeout", type=float, default=fuzz.HANG_TIMEOUT_S, help="hang after (s)")
    p.add_argument("--url", default=os.environ.get("OPENSEARCH_URL"), help="engine URL")
    p.add_argument("--prefix", default=f"fuzz{secrets.token_hex(3)}-", help="index prefix")
    p.add_argument("--keep", action="store_true", help="keep the prefixed indices")
    p.add_argument("--no-hostile", action="store_true", help="skip the hand-written cases")
    return p.parse_args(argv)


@contextmanager
def _engine(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    with tempfile.TemporaryDirectory(prefix="fuzz-engine-") as data_dir:
        status = local_node.start(Path(data_dir), port=free_port(), heap="1g", timeout=180)
        assert status.url
        try:
            yield status.url
        finally:
            local_node.stop(Path(data_dir))


def _requests(args: argparse.Namespace) -> fuzz.RequestSource:
    def make(world: fuzz_cases.World, spec: dict) -> Iterable[fuzz_cases.RawRequest]:
        hostile = [] if args.no_hostile else fuzz_cases.hostile(world)
        rest = max(args.requests - len(hostile), 0)
        n_schema = max(1, min(rest, int(rest * args.schema_share)))
        print(f"drawing {n_schema} schemathesis cases ...", file=sys.stderr)
        start = time.monotonic()
        drafts = fuzz_generate.generated(spec, world, n_schema, args.seed)
        print(f"... in {time.monotonic() - start:.0f} s", file=sys.stderr)
        return itertools.chain(hostile, fuzz_generate.fuzzed(drafts, rest, args.seed, world))

    return make


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    with _engine(args.url) as url:
        base = config.load()
        settings = replace(
            base,
            url=url,
            indices=config.Indices(prefix=args.prefix),
            secret=base.secret or secrets.token_hex(16),
        )
        es = connect(settings, timeout=120)
        wait_for_health(es, "yellow", 120)
        bootstrap_cluster(es, settings)
        bar = tqdm(total=args.requests, unit="req", file=sys.stderr, mininterval=5)
        try:
            report = fuzz.run(
                settings,
                es,
                _requests(args),
                concurrency=args.concurrency,
                timeout=args.timeout,
                progress=bar.update,
            )
        finally:
            bar.close()
            if not args.keep:
                es.indices.delete(index=f"{args.prefix}*", ignore_unavailable=True)
    print(f"seed {args.seed}, prefix {args.prefix}, engine {url}")
    print(report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
