"""The proxy fuzzer: hostile and generated requests (measure/fuzz_cases.py and
fuzz_generate.py) against a real proxy in front of a real engine, and what must hold
afterwards.

- No response with status >= 500, and no hang: every request gets an answer (or a closed
  connection, for malformed HTTP) within the per-request timeout.
- Every error the proxy answers has the error shape (serve/errors.py), or is the events
  summary that names each rejected event.
- The engine's data is unchanged except for what accepted requests explain: no index created
  or deleted; the catalog and every other index keep their document counts; the events index
  grows by exactly the events POST /events accepted; profiles by at most that many; the
  journal by at most one batch per accepted request; impressions by exactly the impressions
  the proxy wrote, one per successful search.
- The proxy still serves afterwards (health answers 200).

`run` does all of it and returns a `FuzzReport`; `bench/fuzz_proxy.py` is the command line and
tests/integration/test_fuzz_proxy.py the CI-sized test.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from opensearchpy import OpenSearch, TransportError, helpers

from rewriter import config
from rewriter.experiments.impressions import ImpressionWriter
from rewriter.measure.fuzz_cases import RawRequest, World
from rewriter.measure.serve_thread import serve_in_thread
from rewriter.serve.app import create_app

HANG_TIMEOUT_S = 30.0
"""A request without a complete answer after this long is a hang (the proxy's own limits are
AFFINITY_TIMEOUT for the engine, 10 s by default, and 60 s for an events acknowledgement
under load; an idle fuzz world answers far sooner)."""

USERS = ("fuzz-u1", "fuzz-u2", "fuzz-u3", "staff-001")
BRANDS = ("acme", "zenit", "other", "nova")
CATEGORIES = ("shoes", "jackets", "accessories", "refurbished", "hats")
SAMPLE_LIMIT = 20

RequestSource = Callable[[World, dict[str, Any]], Iterable[RawRequest]]
"""What to send, given the fuzz world and the proxy's OpenAPI description."""

Progress = Callable[[int], object]


# --------------------------------------------------------------------------- one exchange
@dataclass(frozen=True)
class Outcome:
    """What came back for one request: a status, or why none (`hang`, `closed`)."""

    label: str
    target: bytes
    status: int | None
    body: bytes = b""
    headers: bytes = b""
    problem: str | None = None
    seconds: float = 0.0
    request: RawRequest | None = field(default=None, repr=False, compare=False)


def _dechunk(body: bytes) -> bytes:
    out, rest = bytearray(), body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += rest[:size]
        rest = rest[size + 2 :]
    return bytes(out)


def parse_response(raw: bytes) -> tuple[int | None, bytes, bytes]:
    """(status, header block, body) of the final response in `raw` (interim 1xx responses,
    such as 100 Continue, are skipped); status None if there is no complete status line."""
    head, _, body = raw.partition(b"\r\n\r\n")
    while head.startswith(b"HTTP/1.1 1") and body.startswith(b"HTTP/"):
        head, _, body = body.partition(b"\r\n\r\n")
    parts = head.split(b"\r\n", 1)[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        return None, head, body
    if b"transfer-encoding: chunked" in head.lower():
        with contextlib.suppress(ValueError):
            body = _dechunk(body)
    return int(parts[1]), head, body


async def exchange(request: RawRequest, host: str, port: int, timeout: float) -> Outcome:
    """Send one raw request on a fresh connection and read the answer until the server
    closes it (the request says Connection: close)."""
    start = time.monotonic()

    async def talk() -> bytes:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            try:
                writer.write(request.wire(f"{host}:{port}".encode()))
                await writer.drain()
                if request.half_close:
                    writer.write_eof()
            except OSError:
                pass  # the server answered (e.g. 413) and closed before the body was sent
            return await _read_all(reader)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    try:
        raw = await asyncio.wait_for(talk(), timeout)
    except TimeoutError:
        return Outcome(
            request.label, request.target, None, problem="hang", seconds=timeout, request=request
        )
    except OSError as exc:
        problem = f"connection error: {exc.__class__.__name__}: {exc}"
        return Outcome(request.label, request.target, None, problem=problem, request=request)
    status, head, body = parse_response(raw)
    problem = None if status is not None else "closed without a response"
    elapsed = time.monotonic() - start
    return Outcome(request.label, request.target, status, body, head, problem, elapsed, request)


async def _read_all(reader: asyncio.StreamReader) -> bytes:
    """Everything until the server closes; what arrived before a reset counts."""
    chunks = []
    with contextlib.suppress(OSError):
        while chunk := await reader.read(65536):
            chunks.append(chunk)
    return b"".join(chunks)


# --------------------------------------------------------------------------- the tally
def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def error_shaped(body: Any) -> bool:
    """OpenSearch's error body, which the proxy also answers: {"error": {type, reason}}."""
    if not isinstance(body, dict) or not isinstance(body.get("error"), dict):
        return False
    error = body["error"]
    return isinstance(error.get("type"), str) and isinstance(error.get("reason"), str)


def _query_id(item: Any) -> bool:
    plog = item.get("personalization") if isinstance(item, dict) else None
    return isinstance(plog, dict) and bool(plog.get("query_id"))


def _searches_logged(body: Any) -> int:
    """Impressions the proxy logged for a 200 response: a search with a query_id; each
    msearch response with one and with hits (serve/search.py); a carousel
    (`recommendation_id`, serve/recommend.py); each placement decision, on its own or inside
    a search's `personalization.placements` (`decision_id`, serve/placements.py)."""
    if not isinstance(body, dict):
        return 0
    logged = sum(1 for key in ("recommendation_id", "decision_id") if body.get(key))
    if _query_id(body):
        return logged + 1 + _decisions(body["personalization"].get("placements"))
    items = body.get("responses")
    if isinstance(items, list):
        logged += sum(1 for item in items if _query_id(item) and "hits" in item)
    return logged


def _decisions(value: Any) -> int:
    """Placement decisions (objects with a `decision_id`) anywhere in `value`."""
    if isinstance(value, dict):
        own = 1 if value.get("decision_id") else 0
        return own + sum(_decisions(v) for v in value.values())
    if isinstance(value, list):
        return sum(_decisions(v) for v in value)
    return 0


def _hit_indices(body: Any) -> Iterator[str]:
    """The `_index` of every hit in a 200 response (a search, scroll page or msearch)."""
    items = body.get("responses") if isinstance(body, dict) else None
    for item in [body, *(items if isinstance(items, list) else [])]:
        hits = item.get("hits") if isinstance(item, dict) else None
        for hit in hits.get("hits") or [] if isinstance(hits, dict) else []:
            if isinstance(hit, dict) and isinstance(hit.get("_index"), str):
                yield hit["_index"]


PARSER_REFUSAL = b"Invalid HTTP request received."
"""uvicorn's answer to bytes that are not HTTP (a NUL in a header, an invalid path): the app
never sees them, so they cannot carry the app's error shape."""


@dataclass
class Tally:
    """Everything the run counts, and samples of what went wrong."""

    statuses: Counter[str] = field(default_factory=Counter)
    server_errors: list[Outcome] = field(default_factory=list)
    hangs: list[Outcome] = field(default_factory=list)
    closed: list[Outcome] = field(default_factory=list)
    unshaped: list[Outcome] = field(default_factory=list)
    unshaped_count: int = 0
    server_error_count: int = 0
    private_hits: list[Outcome] = field(default_factory=list)
    parser_refusals: int = 0
    events_accepted: int = 0
    event_requests_accepted: int = 0
    event_requests_written: int = 0
    impressions_expected: int = 0
    slowest: float = 0.0
    private: tuple[str, ...] = ()

    def add(self, o: Outcome) -> None:
        self.slowest = max(self.slowest, o.seconds)
        key = str(o.status) if o.status is not None else str(o.problem).split(":")[0]
        self.statuses[key] += 1
        if o.problem == "hang":
            self.hangs.append(o)
        elif o.status is None:
            _sample(self.closed, o)
        elif o.status >= 500:
            self.server_error_count += 1
            _sample(self.server_errors, o)
        if o.status is None:
            return
        body = _json(o.body) if o.body else None
        if o.status == 202 and isinstance(body, dict) and "accepted" in body:
            self.events_accepted += int(body["accepted"])
            self.event_requests_accepted += 1 if body["accepted"] else 0
            self.event_requests_written += 1
        elif o.status == 503 and b"affinity_events_not_written" in o.body:
            self.event_requests_written += 1  # its batch may be in the journal, pending
        elif o.status == 200:
            self.impressions_expected += _searches_logged(body)
            if self.private and any(i.startswith(self.private) for i in _hit_indices(body)):
                self.private_hits.append(o)
        elif o.body == PARSER_REFUSAL:
            self.parser_refusals += 1
        elif o.status >= 400 and o.body and not _explained_error(body):
            self.unshaped_count += 1
            _sample(self.unshaped, o)


def _explained_error(body: Any) -> bool:
    """The error shape, or POST /events' summary (which names every rejected event)."""
    return error_shaped(body) or (isinstance(body, dict) and "rejections" in body)


def _sample(into: list[Outcome], o: Outcome) -> None:
    if len(into) < SAMPLE_LIMIT:
        into.append(o)


# --------------------------------------------------------------------------- engine data
def snapshot(es: OpenSearch, patience_s: float = 120.0) -> dict[str, int]:
    """Document count of every index in the cluster (hidden and system ones included),
    after a refresh so that every acknowledged write is counted. Retried while the engine
    answers 429 (its memory circuit breaker, after the fuzzer's largest requests)."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            es.indices.refresh(index="_all", expand_wildcards="all", ignore_unavailable=True)
            rows = es.cat.indices(format="json", expand_wildcards="all", h="index,docs.count")
            return {row["index"]: int(row.get("docs.count") or 0) for row in rows}
        except TransportError as exc:
            if exc.status_code != 429 or time.monotonic() > deadline:
                raise
            time.sleep(2.0)


def _behind(es: OpenSearch, alias: str) -> set[str]:
    try:
        return set(es.indices.get_alias(name=alias))
    except Exception:  # no such alias: nothing behind it
        return set()


@dataclass(frozen=True)
class DataCheck:
    before: dict[str, int]
    after: dict[str, int]
    problems: list[str]


def writable(es: OpenSearch, ix: config.Indices) -> dict[str, set[str]]:
    """The indices behind each alias that accepted requests may write to."""
    return {
        "events": _behind(es, ix.events),
        "profiles": _behind(es, ix.profiles),
        "journal": _behind(es, ix.journal),
        "impressions": _behind(es, ix.impressions),
        "changes": _behind(es, ix.changes),
    }


def check_data(
    kinds: dict[str, set[str]], before: dict[str, int], after: dict[str, int], t: Tally
) -> DataCheck:
    """What changed in the engine (document counts per index, before and after), against
    what the accepted requests explain; `kinds` names the writable indices (`writable`)."""
    problems: list[str] = []
    if created := sorted(set(after) - set(before)):
        problems.append(f"indices created: {created}")
    if deleted := sorted(set(before) - set(after)):
        problems.append(f"indices deleted: {deleted}")
    grew = {
        kind: sum(after.get(i, 0) - before.get(i, 0) for i in idx) for kind, idx in kinds.items()
    }
    mutable = set().union(*kinds.values())
    for index in sorted(set(before) & set(after) - mutable):
        if before[index] != after[index]:
            problems.append(f"{index}: {before[index]} documents before, {after[index]} after")
    if grew["events"] != t.events_accepted:
        problems.append(f"events grew by {grew['events']}, accepted {t.events_accepted}")
    if not 0 <= grew["profiles"] <= t.events_accepted:
        problems.append(f"profiles grew by {grew['profiles']}, for {t.events_accepted} events")
    if not 0 <= grew["journal"] <= t.event_requests_written:
        problems.append(
            f"journal grew by {grew['journal']}, for {t.event_requests_written} requests"
        )
    if grew.get("changes", 0) > 2 * t.event_requests_written:  # a fold (or its recovery)
        problems.append(  # publishes one change-feed document (profiles/changes.py)
            f"the change feed grew by {grew['changes']}, for {t.event_requests_written} requests"
        )
    if grew["impressions"] > t.impressions_expected or grew["impressions"] < 0:
        problems.append(
            f"impressions grew by {grew['impressions']}, for {t.impressions_expected} searches"
        )
    return DataCheck(before, after, problems)


# --------------------------------------------------------------------------- the world
def _items() -> list[dict[str, Any]]:
    now = time.time()
    items = []
    for n in range(40):
        items.append(
            {
                "id": f"sku-{1000 + n}",
                "title": f"{CATEGORIES[n % 5]} {BRANDS[n % 4]} running model {n}",
                "brand": BRANDS[n % 4],
                "category": [CATEGORIES[n % 5], CATEGORIES[(n + 1) % 5]],
                "price": 10.0 + 7 * n,
                "in_stock": n % 7 != 0,
                "popularity": float(n % 9),
                "created_at": int((now - 86400 * n) * 1000),
            }
        )
    return items


def prepare_world(
    es: OpenSearch, settings: config.Settings, base_url: str, boost_profiles: tuple[str, ...]
) -> World:
    """A catalog of 40 items and users with profiles (their events posted to the proxy, and
    folded before it answers)."""
    items = _items()
    actions = ({"_index": settings.indices.catalog, "_id": i["id"], "_source": i} for i in items)
    helpers.bulk(es, actions, refresh="wait_for")
    events = [
        {
            "event_id": f"fuzz-setup-{user}-{n}",
            "user_id": user,
            "type": ("view", "click", "purchase")[n % 3],
            "item_id": items[(u * 5 + n) % len(items)]["id"],
            "timestamp": time.time() - 3600 * n,
            "value": 25.0,
        }
        for u, user in enumerate(USERS)
        for n in range(12)
    ]
    r = httpx.post(
        f"{base_url}/events", params={"wait_for_profiles": "true"}, json=events, timeout=60
    )
    r.raise_for_status()
    ix = settings.indices
    private = (ix.profiles, ix.events, ix.impressions, ix.journal, ix.changes)
    return World(
        catalog=ix.catalog,
        users=(*USERS, "fuzz-nobody"),
        boost_profiles=boost_profiles,
        private=private,
        item_ids=tuple(i["id"] for i in items),
    )


# --------------------------------------------------------------------------- a run
@dataclass
class FuzzReport:
    requests: int
    seconds: float
    tally: Tally
    data: DataCheck
    impressions: dict[str, int]
    healthy_after: bool

    @property
    def ok(self) -> bool:
        t = self.tally
        return (
            t.server_error_count == 0
            and not t.hangs
            and not t.private_hits
            and not self.data.problems
            and self.healthy_after
        )

    def summary(self) -> str:
        return "\n".join(_summary_lines(self))


def _outcome_line(o: Outcome) -> str:
    body = o.body[:300].decode("utf-8", "replace")
    line = f"  {o.status or o.problem} {o.target[:120]!r} ({o.label}): {body}"
    if o.request is not None:
        line += f"\n      sent: {o.request.wire(b'proxy')[:400]!r}"
    return line


def _summary_lines(r: FuzzReport) -> Iterator[str]:
    t = r.tally
    rate = r.requests / r.seconds if r.seconds else 0.0
    yield f"{r.requests} requests in {r.seconds:.1f} s ({rate:.0f}/s); slowest {t.slowest:.2f} s"
    yield "status histogram: " + ", ".join(
        f"{k}: {v}" for k, v in sorted(t.statuses.items(), key=lambda kv: kv[0])
    )
    yield f"5xx: {t.server_error_count}   hangs: {len(t.hangs)}   closed without answer: " + str(
        t.statuses.get("closed without a response", 0)
    )
    yield (
        f"errors without the error shape: {t.unshaped_count}; refused by the HTTP parser "
        f"before the app: {t.parser_refusals}"
    )
    yield f"responses with documents of affinity's private indices: {len(t.private_hits)}"
    yield (
        f"accepted: {t.events_accepted} events in {t.event_requests_accepted} requests; "
        f"{t.impressions_expected} searches logged; impression writer: {r.impressions}"
    )
    yield "index                                              docs before   docs after"
    for index in sorted(set(r.data.before) | set(r.data.after)):
        before, after = r.data.before.get(index, "-"), r.data.after.get(index, "-")
        yield f"  {index:<50} {before!s:>11} {after!s:>12}"
    yield "data: " + ("unchanged except for accepted events" if not r.data.problems else "")
    yield from (f"  PROBLEM {p}" for p in r.data.problems)
    yield f"healthy after: {r.healthy_after}"
    for title, outcomes in (
        ("5xx", t.server_errors),
        ("hangs", t.hangs),
        ("closed without answer", t.closed),
        ("private documents", t.private_hits[:SAMPLE_LIMIT]),
        ("errors without the error shape", t.unshaped),
    ):
        if outcomes:
            yield f"{title} (first {len(outcomes)}):"
            yield from (_outcome_line(o) for o in outcomes)
    yield "RESULT: " + ("OK" if r.ok else "FAILED")


async def _send_all(
    requests: Iterable[RawRequest],
    base_url: str,
    concurrency: int,
    timeout: float,
    tally: Tally,
    progress: Progress | None = None,
) -> int:
    url = httpx.URL(base_url)
    host, port = url.host, url.port or 80
    queue: asyncio.Queue[RawRequest | None] = asyncio.Queue(concurrency * 4)
    sent = 0

    async def worker() -> None:
        while (request := await queue.get()) is not None:
            tally.add(await exchange(request, host, port, timeout))
            if progress is not None:
                progress(1)

    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    for request in requests:
        await queue.put(request)
        sent += 1
    for _ in workers:
        await queue.put(None)
    await asyncio.gather(*workers)
    return sent


def _impression_counts(writer: ImpressionWriter | None) -> dict[str, int]:
    if writer is None:
        return {}
    return {"written": writer.written, "dropped": writer.dropped, "failed": writer.failed}


def run(
    settings: config.Settings,
    es: OpenSearch,
    make_requests: RequestSource,
    *,
    concurrency: int = 8,
    timeout: float = HANG_TIMEOUT_S,
    boost_dir: Path | None = None,
    progress: Progress | None = None,
) -> FuzzReport:
    """Serve the proxy for `settings` in a thread, build the fuzz world, then send every
    request of `make_requests(world, spec)` and check what must hold (module docstring)."""
    app = create_app(settings, boost_dir=str(boost_dir) if boost_dir else None)
    state = app.state.proxy
    ix = settings.indices
    tally = Tally(private=(ix.profiles, ix.events, ix.impressions, ix.journal, ix.changes))
    with serve_in_thread(app) as url:
        world = prepare_world(es, settings, url, tuple(state.boost_profiles))
        spec = httpx.get(f"{url}/_affinity/openapi.json", timeout=10).json()
        requests = make_requests(world, spec)
        before = snapshot(es)
        start = time.monotonic()
        sent = asyncio.run(_send_all(requests, url, concurrency, timeout, tally, progress))
        seconds = time.monotonic() - start
        healthy = httpx.get(f"{url}/_affinity/health", timeout=10).status_code == 200
    after = snapshot(es)  # the server is down: its writers drained on shutdown
    kinds = writable(es, settings.indices)
    data = check_data(kinds, before, after, tally)
    counts = _impression_counts(state.impressions)
    if counts:
        check_impressions(data, kinds["impressions"], counts, tally)
    return FuzzReport(sent, seconds, tally, data, counts, healthy)


def check_impressions(data: DataCheck, indices: set[str], counts: dict[str, int], t: Tally) -> None:
    """Every logged search is written, dropped or failed; the index grew by the written."""
    accounted = counts["written"] + counts["dropped"] + counts["failed"]
    if accounted != t.impressions_expected:
        data.problems.append(
            f"{t.impressions_expected} searches logged, the impression writer accounts for "
            f"{accounted} ({counts})"
        )
    grew = sum(data.after.get(i, 0) - data.before.get(i, 0) for i in indices)
    if grew != counts["written"]:
        data.problems.append(f"impressions grew by {grew}, the writer wrote {counts['written']}")
