"""The fault suite's instruments: clients that keep sending until acknowledged, and the checks
that say whether a fault lost, duplicated or poisoned anything.

A fault run sends events with client-chosen ids over HTTP (`deliver`), while something breaks:
the proxy is killed, the importer is killed, the engine restarts or refuses. Afterwards:

- every acknowledged event is in the events log (`missing_from_log`);
- no event is folded twice: a profile's event counter never exceeds its logged events
  (`profile_problems`, "duplicates");
- every profile equals a rebuild from the log (decayed mass and every affinity value, to
  1e-9 relative): nothing lost between log and profile, nothing poisoned;
- `wait_for` measures how long the system takes to get there by itself (recovery time).

tests/faults/ runs short versions of each fault; bench/fault_suite.py runs the long ones and
prints the table docs/benchmarks.md reports.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from opensearchpy import OpenSearch

from rewriter import config, privacy
from rewriter.boost.profile import BoostProfile
from rewriter.engine.client import mget_docs
from rewriter.events.event import Event
from rewriter.ingest import user_ops
from rewriter.ingest.pipeline import event_from_doc
from rewriter.profiles.fold import decayed, fold_config, rebuild
from rewriter.profiles.view import normalized

RETRYABLE = (429, 502, 503, 504)


@dataclass
class Delivery:
    """What the clients saw: every status, which events were acknowledged (a 202 that did
    not reject them), how many sends were retried, and the longest stretch without a 202."""

    statuses: Counter[int | str] = field(default_factory=Counter)
    acknowledged: set[str] = field(default_factory=set)
    rejected: dict[str, str] = field(default_factory=dict)
    retries: int = 0
    gave_up: int = 0
    longest_outage_s: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


def combined(parts: Sequence[Delivery]) -> Delivery:
    """One Delivery of several runs (the phases of a fault): statuses and retries add up,
    the acknowledged and rejected events join, the longest outage is the longest of any."""
    out = Delivery()
    for part in parts:
        out.statuses.update(part.statuses)
        out.acknowledged |= part.acknowledged
        out.rejected.update(part.rejected)
        out.retries += part.retries
        out.gave_up += part.gave_up
        out.longest_outage_s = max(out.longest_outage_s, part.longest_outage_s)
    return out


def event_batches(
    users: Sequence[str],
    items: Sequence[str],
    per_user: int,
    batch_size: int,
    *,
    prefix: str,
    now: float | None = None,
) -> list[list[dict[str, Any]]]:
    """Events with fixed ids (`{prefix}-{user}-{n}`), in batches that mix users."""
    now = time.time() if now is None else now
    types = ("view", "view", "click", "add_to_cart", "purchase")
    events = [
        {
            "event_id": f"{prefix}-{user}-{n}",
            "user_id": user,
            "type": types[n % len(types)],
            "item_id": items[(hash(user) + n) % len(items)],
            "timestamp": now - (per_user - n),
        }
        for n in range(per_user)
        for user in users
    ]
    return [events[i : i + batch_size] for i in range(0, len(events), batch_size)]


def deliver(
    url: str,
    batches: Sequence[list[dict[str, Any]]],
    *,
    clients: int = 4,
    deadline_s: float = 180.0,
    on_progress: Callable[[int], None] | None = None,
) -> Delivery:
    """Send every batch to POST /events from `clients` threads, each batch until it gets a
    202 (retrying connection errors, 429 and 5xx with backoff, as a well-behaved client
    does) or the deadline passes. `on_progress(n)` is told after each acknowledged batch."""
    out = Delivery()
    todo = list(enumerate(batches))
    queue_lock = threading.Lock()
    done = [0]
    last_ok = [time.monotonic()]
    stop_at = time.monotonic() + deadline_s

    def take() -> tuple[int, list[dict[str, Any]]] | None:
        with queue_lock:
            return todo.pop(0) if todo else None

    def run() -> None:
        with httpx.Client(timeout=10.0) as client:
            while (job := take()) is not None:
                if _send_until_acknowledged(client, url, job[1], out, stop_at, last_ok):
                    with queue_lock:
                        done[0] += 1
                        n = done[0]
                    if on_progress:
                        on_progress(n)

    threads = [threading.Thread(target=run, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def _send_until_acknowledged(
    client: httpx.Client,
    url: str,
    batch: list[dict[str, Any]],
    out: Delivery,
    stop_at: float,
    last_ok: list[float],
) -> bool:
    pause = 0.05
    while True:
        try:
            response = client.post(f"{url}/events", json=batch)
            status: int | str = response.status_code
        except httpx.HTTPError as exc:
            response, status = None, type(exc).__name__
        now = time.monotonic()
        with out.lock:
            out.statuses[status] += 1
            if status == 202 and response is not None:
                out.longest_outage_s = max(out.longest_outage_s, now - last_ok[0])
                last_ok[0] = now
                _acknowledge(out, batch, response.json())
                return True
        if isinstance(status, int) and status not in RETRYABLE:
            with out.lock:
                out.gave_up += 1
            return False
        if now + pause > stop_at:
            with out.lock:
                out.gave_up += 1
            return False
        with out.lock:
            out.retries += 1
        time.sleep(pause)
        pause = min(pause * 2, 1.0)


def _acknowledge(out: Delivery, batch: list[dict[str, Any]], body: Mapping[str, Any]) -> None:
    refused = {r["index"]: r.get("reason", "") for r in body.get("rejections", [])}
    for i, event in enumerate(batch):
        if i in refused:
            out.rejected[event["event_id"]] = refused[i]
        else:
            out.acknowledged.add(event["event_id"])


def missing_from_log(es: OpenSearch, s: config.Settings, event_ids: Iterable[str]) -> list[str]:
    """Acknowledged event ids that are not in the events log (client-chosen ids are the
    log's doc ids)."""
    es.indices.refresh(index=s.indices.events)
    return sorted(
        d["_id"]
        for d in mget_docs(es, s.indices.events, sorted(event_ids), _source=False)
        if not d.get("found")
    )


@dataclass
class ProfileCheck:
    users: int = 0
    logged_events: int = 0
    duplicates: int = 0
    """Folds counted twice: a profile's event counter above its logged events."""
    differ: list[str] = field(default_factory=list)
    """Users whose profile is not what a rebuild from the log gives (or who have none)."""


def profile_problems(
    es: OpenSearch, s: config.Settings, boost: BoostProfile, raw_users: Sequence[str]
) -> ProfileCheck:
    """Each user's stored profile against a rebuild from the events log."""
    secret = config.user_secret(s)
    cfg = fold_config(boost)
    out = ProfileCheck(users=len(raw_users))
    es.indices.refresh(index=s.indices.events)
    for raw in raw_users:
        pseudo = privacy.pseudonymize(raw, secret)
        logged = [event_from_doc(d) for d in user_ops.scan_events(es, s, [pseudo])]
        events = [e for e in logged if isinstance(e, Event)]
        out.logged_events += len(events)
        stored = user_ops.read_profile(es, s, pseudo)
        if not events:
            continue
        if stored is None:
            out.differ.append(raw)
            continue
        out.duplicates += max(0, int(stored["counters"]["events"]) - len(events))
        if not _same(stored, rebuild(events, cfg), cfg.half_life_s):  # type: ignore[arg-type]
            out.differ.append(raw)
    return out


def _same(stored: Mapping[str, Any], rebuilt: Mapping[str, Any], half_life_s: float) -> bool:
    """Equal as ranking sees them: decayed mass and every normalized affinity, to 1e-9."""
    at = time.time()
    mine = decayed(stored["mass"], stored["landmark"], at, half_life_s)
    theirs = decayed(rebuilt["mass"], rebuilt["landmark"], at, half_life_s)
    if not math.isclose(mine, theirs, rel_tol=1e-9):
        return False
    if stored["counters"]["events"] != rebuilt["counters"]["events"]:
        return False
    return _close(normalized(stored), normalized(rebuilt))  # type: ignore[arg-type]


def _close(a: dict[str, dict[str, float]], b: dict[str, dict[str, float]]) -> bool:
    if a.keys() != b.keys() or any(a[k].keys() != b[k].keys() for k in a):
        return False
    return all(math.isclose(a[k][v], b[k][v], rel_tol=1e-9) for k in a for v in a[k])


def wait_for(check: Callable[[], bool], deadline_s: float, every_s: float = 0.5) -> float | None:
    """Seconds until `check()` holds, or None if it did not within the deadline."""
    start = time.monotonic()
    while time.monotonic() - start < deadline_s:
        if check():
            return time.monotonic() - start
        time.sleep(every_s)
    return None


@dataclass
class FaultRow:
    fault: str
    load: str
    acknowledged: int
    stored: int
    duplicates: int
    profiles_differ: int
    recovery_s: float | None
    statuses: Counter[int | str]

    def markdown(self) -> str:
        recovery = "never" if self.recovery_s is None else f"{self.recovery_s:.1f} s"
        seen = ", ".join(f"{k}: {v}" for k, v in sorted(self.statuses.items(), key=str))
        return (
            f"| {self.fault} | {self.load} | {self.acknowledged} | {self.stored} | "
            f"{self.duplicates} | {self.profiles_differ} | {recovery} | {seen} |"
        )


def report(result: FaultRow) -> None:
    """Add a run's row to the file AFFINITY_FAULT_REPORT names (bench/fault_suite.py reads it)."""
    path = os.environ.get("AFFINITY_FAULT_REPORT")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(result.markdown() + "\n")


TABLE_HEAD = (
    "| fault | load | acknowledged | stored | duplicates | profiles ≠ rebuild | recovery | "
    "statuses seen |\n|---|---|---|---|---|---|---|---|"
)


# --------------------------------------------------------------------------- the faults
def settle(
    es: OpenSearch, s: config.Settings, boost: BoostProfile, users: Sequence[str], deadline_s: float
) -> tuple[float | None, ProfileCheck]:
    """Wait until every profile equals a rebuild; (seconds taken or None, the last check)."""
    last = [ProfileCheck()]

    def settled() -> bool:
        last[0] = profile_problems(es, s, boost, users)
        return not last[0].differ and last[0].duplicates == 0

    return wait_for(settled, deadline_s), last[0]


def row(
    fault: str,
    load: str,
    es: OpenSearch,
    s: config.Settings,
    boost: BoostProfile,
    users: Sequence[str],
    delivery: Delivery,
    recovery_from: float,
    deadline_s: float = 180.0,
) -> FaultRow:
    """The table row of one fault run: counts from the log and the profiles once settled
    (recovery: seconds from `recovery_from`, a monotonic time, until profiles equal a rebuild)."""
    missing = missing_from_log(es, s, delivery.acknowledged)
    waited, check = settle(es, s, boost, users, deadline_s)
    recovery = None if waited is None else time.monotonic() - recovery_from
    return FaultRow(
        fault=fault,
        load=load,
        acknowledged=len(delivery.acknowledged),
        stored=len(delivery.acknowledged) - len(missing),
        duplicates=check.duplicates,
        profiles_differ=len(check.differ),
        recovery_s=recovery,
        statuses=delivery.statuses,
    )
