"""Item pairs from sessions, scored by significance: the tables behind `related` (co-views)
and `bought_together` (co-purchases).

Pure (no I/O). The build (recommend/build.py) feeds it the events log's sessions; anything
else that wants "which items go together" (issue 14: an affinity for never-seen items from
their neighbours) can call the same functions on its own sessions.

The API, in the order a build uses it:

- `sessions(rows, gap)`: events (user, session id or None, timestamp, item), sorted by user
  then time, cut into sessions: a row's own `session_id` when it has one, else a new session
  after `gap` seconds without an event (30 minutes by default).
- `PairCounts.add_session(items, window)`: counts each session once per item (`item_sessions`)
  and once per pair of distinct items at most `window` positions apart (`co`), plus the
  number of sessions. A window bounds the work (a session of n items gives at most
  n · window pairs instead of n²); `window=None` pairs every two items of a session.
- `PairCounts.merge(other)`: counts add up, so a build is incremental: the last build's
  counts plus the new sessions' counts equal a build over all sessions (up to sessions cut
  at the build's watermark).
- `llr(k11, k12, k21, k22)`: Dunning's log-likelihood ratio (G²) of the 2×2 table of
  sessions with / without a and with / without b, as in Mahout's item similarity. It grows
  with how much more often a and b meet than chance would have them meet, and with the
  evidence for it; raw co-counts would put best-sellers next to everything.
- `neighbors(counts, item, top, min_count)`: the items that go with `item`, best first, as
  `Neighbor(id, score, co_sessions)`: only positively associated pairs (together more often
  than chance) seen in at least `min_count` sessions.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

SESSION_GAP_SECONDS = 30 * 60
PAIR_WINDOW = 10
MIN_CO_SESSIONS = 2
TOP_NEIGHBORS = 50


@dataclass(frozen=True)
class SessionRow:
    """One event as the pair counting needs it."""

    user: str
    session: str | None
    timestamp: float
    item: str


def sessions(rows: Iterable[SessionRow], gap: float = SESSION_GAP_SECONDS) -> Iterator[list[str]]:
    """The item sequences of the sessions in `rows` (sorted by user, then time)."""
    current: list[str] = []
    last: SessionRow | None = None
    for row in rows:
        if last is not None and _new_session(last, row, gap):
            yield current
            current = []
        current.append(row.item)
        last = row
    if current:
        yield current


def _new_session(last: SessionRow, row: SessionRow, gap: float) -> bool:
    if row.user != last.user:
        return True
    if row.session is not None or last.session is not None:
        return row.session != last.session
    return row.timestamp - last.timestamp > gap


@dataclass
class PairCounts:
    """Sessions counted: `sessions` in all, `item_sessions[i]` with item i, `co[a][b]` (=
    `co[b][a]`) with both a and b within the pair window."""

    sessions: int = 0
    item_sessions: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    co: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))

    def add_session(self, items: Sequence[str], window: int | None = PAIR_WINDOW) -> None:
        """Count one session (its items in order; repeats count once)."""
        ordered = list(dict.fromkeys(items))
        if not ordered:
            return
        self.sessions += 1
        for item in ordered:
            self.item_sessions[item] += 1
        span = len(ordered) if window is None else window
        for i, a in enumerate(ordered):
            for b in ordered[i + 1 : i + 1 + span]:
                self._add_pair(a, b, 1)

    def _add_pair(self, a: str, b: str, n: int) -> None:
        self.co[a][b] = self.co[a].get(b, 0) + n
        self.co[b][a] = self.co[b].get(a, 0) + n

    def merge(self, other: PairCounts) -> None:
        """Add `other`'s counts to these."""
        self.sessions += other.sessions
        for item, n in other.item_sessions.items():
            self.item_sessions[item] += n
        for a, row in other.co.items():
            for b, n in row.items():
                self.co[a][b] = self.co[a].get(b, 0) + n

    def items(self) -> list[str]:
        return sorted(self.item_sessions)


def count(item_sessions: Iterable[Sequence[str]], window: int | None = PAIR_WINDOW) -> PairCounts:
    """PairCounts of the given sessions."""
    counts = PairCounts()
    for items in item_sessions:
        counts.add_session(items, window)
    return counts


def _x_log_x(x: float) -> float:
    return 0.0 if x <= 0 else x * math.log(x)


def _entropy(*counts: float) -> float:
    """Mahout's unnormalized entropy: xlogx(Σ) − Σ xlogx."""
    return _x_log_x(sum(counts)) - sum(_x_log_x(k) for k in counts)


def llr(k11: float, k12: float, k21: float, k22: float) -> float:
    """Dunning's G² of the table [[k11, k12], [k21, k22]] (k11: sessions with a and b; k12:
    a without b; k21: b without a; k22: neither). 0 for independence; never negative."""
    row = _entropy(k11 + k12, k21 + k22)
    column = _entropy(k11 + k21, k12 + k22)
    matrix = _entropy(k11, k12, k21, k22)
    return max(0.0, 2.0 * (row + column - matrix))


@dataclass(frozen=True)
class Neighbor:
    """An item that goes with another: its id, the pair's LLR, the sessions they share."""

    id: str
    score: float
    co_sessions: int


def pair_score(counts: PairCounts, a: str, b: str) -> float:
    """The LLR of a and b if they meet more often than chance, else 0."""
    k11 = counts.co.get(a, {}).get(b, 0)
    n_a, n_b, n = counts.item_sessions.get(a, 0), counts.item_sessions.get(b, 0), counts.sessions
    k12, k21 = max(n_a - k11, 0), max(n_b - k11, 0)
    k22 = max(n - k11 - k12 - k21, 0)
    if k11 == 0 or k11 * (k21 + k22) <= k21 * (k11 + k12):  # P(b|a) <= P(b|not a)
        return 0.0
    return llr(k11, k12, k21, k22)


def neighbors(
    counts: PairCounts, item: str, top: int = TOP_NEIGHBORS, min_count: int = MIN_CO_SESSIONS
) -> list[Neighbor]:
    """The `top` items most significantly paired with `item`, best first (ties by id)."""
    found = [
        Neighbor(other, pair_score(counts, item, other), n)
        for other, n in counts.co.get(item, {}).items()
        if n >= min_count
    ]
    found = [nb for nb in found if nb.score > 0]
    found.sort(key=lambda nb: (-nb.score, nb.id))
    return found[:top]


def prune(counts: PairCounts, keep: int) -> None:
    """Keep each item's `keep` largest co-counts (ties by id): bounds the stored table. The
    kept counts stay exact; a dropped pair restarts from 0 if it comes back."""
    for item, row in counts.co.items():
        if len(row) > keep:
            best = sorted(row.items(), key=lambda kv: (-kv[1], kv[0]))[:keep]
            counts.co[item] = dict(best)
