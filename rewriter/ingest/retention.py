"""Retention: the events log and the impressions stop growing forever (`affinity retention`).

A job, not time-partitioned indices (docs/decisions.md, 21). Two horizons:

- **Events.** A rebuild folds every logged event of a user, and the fold drops any mass that
  lies more than EXPIRE_HALF_LIVES half-lives before the user's newest event
  (profiles/fold.py). So the *safe* horizon is that many half-lives of the longest half-life
  a loaded boost profile or a stored profile folds with, counted back from each user's newest
  event. What such events still give a profile (counters, sessions, first and last seen) is
  written per user to the retired index first (`fold.retire`), and a rebuild starts from it:
  profiles equal a rebuild after retention. A horizon shorter than the safe one
  (AFFINITY_RETENTION_EVENTS_DAYS) is applied only when forced (AFFINITY_RETENTION_FORCE,
  `--force`), and each run says what rebuilds then lose.
- **Impressions.** Older than AFFINITY_RETENTION_IMPRESSIONS_DAYS, except a running
  experiment's since its start (its report needs them), unless forced.

Safe under concurrent ingest:
- A user's retired totals hold exactly the user's events with timestamp < `before` that were
  ingested before `at` (`Coverage`). `at` trails the run by RETIRE_MARGIN_S, so an event
  whose write is still in flight is neither counted nor deleted. The totals are written
  first (optimistic concurrency), then the covered events are deleted (delete_by_query,
  conflicts=proceed). A crash in between leaves covered events in the log: rebuilds skip
  them, the next run deletes them. A user's coverage only grows.
- Events of batches still pending in the journal are never deleted: recovery reads them.
- Impressions go by delete_by_query, conflicts=proceed.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from opensearchpy import OpenSearch, helpers

from rewriter import config
from rewriter.boost.profile import BoostProfile
from rewriter.engine.client import buckets_by_key, composite_pages
from rewriter.events.event import Event
from rewriter.events.fields import Rejection, iso
from rewriter.ingest.pipeline import event_from_doc
from rewriter.profiles.doc import ProfileDoc
from rewriter.profiles.fold import DAY_S, EXPIRE_HALF_LIVES, fold_config, retire
from rewriter.profiles.writer import Found, cas_action, read_profiles

SAFE = "safe"
OFF = "off"
RETIRE_MARGIN_S = 3_600.0
"""Events ingested less than this before a run are left to a later run: a `_bulk` still in
flight may have stamped `ingested_at` before the run looked and become visible after."""
PAGE_USERS = 100
"""Users per page of the events job (one query clause set per user)."""
DELETE_CHUNK = 50_000
"""Documents per delete_by_query request (a long deletion is several bounded requests)."""
COVERAGE_KEYS = ("user_id", "before", "at")
"""What a retired-index document holds beside the profile-shaped totals."""
YEAR_S = 365.25 * DAY_S
EVENTS_SETTING = "AFFINITY_RETENTION_EVENTS_DAYS"
IMPRESSIONS_SETTING = "AFFINITY_RETENTION_IMPRESSIONS_DAYS"
FORCE_HINT = "--force (or AFFINITY_RETENTION_FORCE=1)"


class RetentionError(ValueError):
    """A retention setting that cannot be used; the message says which and what to write."""


class ExperimentWindow(Protocol):
    """What retention needs of an experiment (experiments/assignment.py's Experiment)."""

    @property
    def name(self) -> str: ...

    @property
    def start(self) -> float: ...

    def active(self, now: float) -> bool: ...


# --------------------------------------------------------------------------- policy
def parse_days(raw: str, setting: str, *, safe_ok: bool = False) -> float | str | None:
    """A horizon setting: `off` → None, `safe` → SAFE (events only), else days > 0."""
    text = raw.strip().lower()
    if text == OFF:
        return None
    if safe_ok and text == SAFE:
        return SAFE
    try:
        days = float(text)
    except ValueError:
        days = math.nan
    if not (math.isfinite(days) and days > 0):
        choices = "`safe`, `off` or" if safe_ok else "`off` or"
        raise RetentionError(f"{setting}={raw!r}: write {choices} a number of days above 0")
    return days


@dataclass(frozen=True)
class Policy:
    """The horizons of one run: days (or SAFE for events), None to keep everything."""

    events: float | str | None = SAFE
    impressions: float | None = 90.0
    force: bool = False

    @classmethod
    def parse(cls, events: str, impressions: str, force: bool) -> Policy:
        kept = parse_days(impressions, IMPRESSIONS_SETTING)
        return cls(parse_days(events, EVENTS_SETTING, safe_ok=True), kept, force)  # type: ignore[arg-type]

    @classmethod
    def from_settings(cls, settings: config.Settings) -> Policy:
        return cls.parse(
            settings.retention_events, settings.retention_impressions, settings.retention_force
        )


@dataclass(frozen=True)
class SafeHorizon:
    """EXPIRE_HALF_LIVES half-lives of the longest half-life anything folds with."""

    half_life_s: float
    source: str

    @property
    def seconds(self) -> float:
        return EXPIRE_HALF_LIVES * self.half_life_s

    def describe(self) -> str:
        return (
            f"{span(self.seconds)} ({EXPIRE_HALF_LIVES:g} half-lives of "
            f"{span(self.half_life_s)}, {self.source})"
        )


def safe_horizon(
    boosts: Mapping[str, BoostProfile], stored_half_life_s: float | None
) -> SafeHorizon:
    """The safe events horizon: from the longest half-life of the loaded boost profiles and
    of the stored profiles (a profile folded by a boost profile no longer loaded counts)."""
    found = [(fold_config(b).half_life_s, f"boost profile {b.name!r}") for b in boosts.values()]
    if stored_half_life_s:
        found.append((stored_half_life_s, "the longest of a stored profile"))
    if not found:
        raise RetentionError(
            "no boost profile is loaded, so no half-life says which events profiles still "
            "need: add profiles/*.yaml (or set AFFINITY_PROFILES_DIR)"
        )
    half_life_s, source = max(found, key=lambda hs: hs[0])  # a tie names the boost profile
    return SafeHorizon(half_life_s, source)


def span(seconds: float) -> str:
    days = seconds / DAY_S
    if days >= 730:
        return f"{seconds / YEAR_S:,.0f} years"
    return "1 day" if days == 1 else f"{days:g} days"


def when(t: float) -> str:
    """A cut-off time for people: ISO 8601 to the second, or years before 1970 (before year 1,
    where a safe horizon of thousands of years lands)."""
    return iso(math.floor(t)) if t > -62_000_000_000 else f"{-t / YEAR_S:,.0f} years before 1970"


# --------------------------------------------------------------------------- coverage
@dataclass(frozen=True)
class Coverage:
    """The events a user's retired totals hold: timestamp < `before`, ingested before `at`
    (an event without `ingested_at` counts as ingested long ago)."""

    before: float
    at: float

    def holds(self, source: Mapping[str, Any]) -> bool:
        ingested = float(source.get("ingested_at") or 0.0)
        return float(source["timestamp"]) < self.before and ingested < self.at

    def query(self) -> dict[str, Any]:
        return {
            "bool": {
                "filter": [{"range": {"timestamp": {"lt": self.before}}}],
                "must_not": [{"range": {"ingested_at": {"gte": self.at}}}],
            }
        }

    def widened(self, other: Coverage | None) -> Coverage:
        if other is None:
            return self
        return Coverage(max(self.before, other.before), max(self.at, other.at))


def retired_totals(found: Found | None) -> tuple[ProfileDoc, Coverage] | None:
    """A retired-index document read with `read_profiles`: the totals (profile-shaped, no
    masses) and the events they hold."""
    if found is None:
        return None
    doc = dict(found[0])
    coverage = Coverage(float(doc["before"]), float(doc["at"]))
    for key in COVERAGE_KEYS:
        doc.pop(key, None)
    return doc, coverage  # type: ignore[return-value]


def read_retired(
    es: OpenSearch, settings: config.Settings, users: Iterable[str]
) -> dict[str, Found | None]:
    """The users' retired-index documents (realtime; none where the index is missing: a
    cluster bootstrapped before retention existed has retired nothing)."""
    if not es.indices.exists(index=settings.indices.retired):
        return {}
    return read_profiles(es, settings.indices.retired, users)


def retired_of(
    es: OpenSearch, settings: config.Settings, users: Iterable[str]
) -> dict[str, tuple[ProfileDoc, Coverage]]:
    """The retired totals of those of `users` that have some, and the events they hold.

    A rebuild reads them *after* scanning the user's events: totals written in between hold
    the events the scan missed (retention writes totals before it deletes)."""
    found = read_retired(es, settings, users).items()
    return {u: t for u, t in ((u, retired_totals(f)) for u, f in found) if t is not None}


def _user(user: str, *clauses: dict[str, Any], without: dict[str, Any] | None = None) -> dict:
    query: dict[str, Any] = {"filter": [{"term": {"user_id": user}}, *clauses]}
    if without is not None:
        query["must_not"] = [without]
    return {"bool": query}


def _any(clauses: Sequence[dict[str, Any]], without: Sequence[dict[str, Any]] = ()) -> dict:
    return {"bool": {"should": list(clauses), "minimum_should_match": 1, "must_not": list(without)}}


# --------------------------------------------------------------------------- report
@dataclass
class Part:
    """What a run did (or would do) to one index."""

    name: str
    index: str
    cutoff: float | None = None
    """Documents older than this go (events: at the latest; each user's may be earlier)."""
    why: str = ""
    deleted: int = 0
    users: int = 0
    pending: int = 0
    """Events kept because their batch is still pending in the journal."""
    kept: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def lines(self, dry_run: bool) -> list[str]:
        verb = "would delete" if dry_run else "deleted"
        whose = f" of {self.users:,} users" if self.users else ""
        head = f"{self.name} ({self.index}): "
        if self.cutoff is None:
            head += "nothing would be deleted" if dry_run else "nothing deleted"
        else:
            head += f"{verb} {self.deleted:,} {self.name}{whose} older than {when(self.cutoff)}"
        out = [f"{head}: {self.why}" if self.why else head]
        out += [f"  kept: {k}" for k in self.kept]
        out += [f"  warning: {w}" for w in self.warnings]
        out += [f"  error: {e}" for e in self.errors]
        return out


@dataclass
class RetentionReport:
    dry_run: bool
    now: float
    parts: list[Part] = field(default_factory=list)

    @property
    def errors(self) -> list[str]:
        return [e for p in self.parts for e in p.errors]

    @property
    def warnings(self) -> list[str]:
        return [w for p in self.parts for w in p.warnings]

    def lines(self) -> list[str]:
        return [line for p in self.parts for line in p.lines(self.dry_run)]

    def log_to(self, log: logging.Logger) -> None:
        """For a server: what was deleted (info), warnings and errors; silent otherwise."""
        for part in self.parts:
            if part.deleted:
                log.info("retention: %s", part.lines(self.dry_run)[0])
            for warning in part.warnings:
                log.warning("retention, %s: %s", part.name, warning)
            for error in part.errors:
                log.error("retention, %s: %s", part.name, error)

    def to_json(self) -> dict[str, Any]:
        parts = []
        for p in self.parts:
            cutoff = None if p.cutoff is None else when(p.cutoff)
            parts.append({**asdict(p), "cutoff": p.cutoff, "cutoff_time": cutoff})
        return {"dry_run": self.dry_run, "now": iso(self.now), "indices": parts}


# --------------------------------------------------------------------------- the job
@dataclass
class _Plan:
    """One user's step. `found`: their retired document as read (for the conditional write);
    `old`, `new`: the coverage before and after the run; `totals`: the new totals once the
    increment is folded in (None: nothing new, or their write failed)."""

    user: str
    found: Found | None
    old: Coverage | None
    new: Coverage
    totals: ProfileDoc | None = None

    def increment(self) -> dict[str, Any]:
        """The events the new coverage adds."""
        without = None if self.old is None else self.old.query()
        return _user(self.user, self.new.query(), without=without)

    def deletable(self) -> dict[str, Any] | None:
        """The events to delete: all the written coverage holds (leftovers of an earlier
        run included); None when nothing is covered."""
        covered = self.new if self.totals is not None else self.old
        return None if covered is None else _user(self.user, covered.query())


class Retention:
    """One retention run over the configured indices (`run`)."""

    def __init__(
        self,
        es: OpenSearch,
        settings: config.Settings,
        boosts: Mapping[str, BoostProfile],
        fold_boost: BoostProfile,
        *,
        experiments: Iterable[ExperimentWindow] = (),
        boost_errors: Sequence[str] = (),
        experiment_errors: Sequence[str] = (),
    ) -> None:
        self.es = es
        self.settings = settings
        self.boosts = dict(boosts)
        self.cfg = fold_config(fold_boost)
        self.experiments = list(experiments)
        self.boost_errors = list(boost_errors)
        self.experiment_errors = list(experiment_errors)

    def run(self, policy: Policy, *, dry_run: bool, now: float | None = None) -> RetentionReport:
        """Delete (or with `dry_run`, count) what the policy's horizons let go."""
        now = time.time() if now is None else now
        report = RetentionReport(dry_run, now)
        report.parts.append(self._events(policy, dry_run, now))
        report.parts.append(self._impressions(policy, dry_run, now))
        return report

    # ------------------------------------------------------------------ events
    def _events(self, policy: Policy, dry_run: bool, now: float) -> Part:
        part = Part("events", self.settings.indices.events)
        if policy.events is None:
            part.why = f"{EVENTS_SETTING}=off: every event is kept"
            return part
        safe = safe_horizon(self.boosts, self._stored_half_life())
        forced = self._events_horizon(policy, safe, now, part)
        if part.errors or part.cutoff is None:
            return part
        if not self.es.indices.exists(index=self.settings.indices.retired):
            part.errors.append(
                f"the events are kept: the index of retired totals "
                f"({self.settings.indices.retired}) does not exist yet; run `affinity bootstrap`"
            )
            part.cutoff = None
            return part
        pending = self._pending_batches()
        at = now - RETIRE_MARGIN_S
        for users in self._candidates(part.cutoff):
            plans = self._plans(users, part.cutoff, safe, forced, at)
            self._retire(plans, pending, dry_run, part)
        if part.pending:
            part.kept.append(
                f"{part.pending:,} events of batches still pending in the journal (recovery "
                "folds them from the log first; a later run deletes them)"
            )
        return part

    def _events_horizon(self, policy: Policy, safe: SafeHorizon, now: float, part: Part) -> bool:
        """Set the part's cut-off and why; whether the horizon is forced below the safe one."""
        days = policy.events
        asked = safe.seconds if days == SAFE else float(days) * DAY_S  # type: ignore[arg-type]
        setting = f"{span(asked)} ({EVENTS_SETTING})"
        per_user = (
            f"per user, more than {safe.describe()} before the user's newest event, where the "
            "fold drops their affinity (their counters, sessions and first and last seen are "
            "kept as retired totals, which rebuilds start from)"
        )
        if asked >= safe.seconds:
            part.cutoff = now - asked
            part.why = f"the safe horizon: {per_user}"
            if days != SAFE:
                part.why = f"{setting}, and {per_user}"
            if self.boost_errors:
                part.errors.append(
                    "the events are kept: a boost profile file is invalid, so its half-life is "
                    f"unknown and so is the safe horizon ({self.boost_errors[0]}); fix it "
                    "(`affinity boost check`)"
                )
                part.cutoff = None
            return False
        if not policy.force:
            part.cutoff = now - safe.seconds
            part.why = f"the safe horizon: {per_user}"
            part.kept.append(
                f"events younger than the safe horizon: {EVENTS_SETTING}={days:g} is shorter, "
                f"and profile rebuilds would lose their affinity; to delete them anyway pass "
                f"{FORCE_HINT}"
            )
            return False
        part.cutoff = now - asked
        part.why = f"{setting}, forced below the safe horizon of {safe.describe()}"
        part.warnings.append(self._rebuild_loss(asked, safe))
        part.warnings += self._reports_lose(part.cutoff, now, "clicks, carts and purchases")
        return True

    @staticmethod
    def _rebuild_loss(asked: float, safe: SafeHorizon) -> str:
        halvings = asked / safe.half_life_s
        return (
            "profiles rebuilt from the events log after this run lose the affinity of the "
            f"deleted events: with the longest half-life ({span(safe.half_life_s)}, "
            f"{safe.source}) an event {span(asked)} old still weighs 2^-{halvings:.3g} = "
            f"{2.0**-halvings:.3g} of a fresh one. Their counters, sessions and first and last "
            "seen are kept; the profiles as stored keep everything until they are rebuilt"
        )

    def _reports_lose(self, cutoff: float, now: float, what: str) -> list[str]:
        return [
            f"experiment {e.name} (running since {when(e.start)}): its report loses its {what} "
            f"before {when(cutoff)}"
            for e in self._running(cutoff, now)
        ]

    def _running(self, cutoff: float, now: float) -> list[ExperimentWindow]:
        """The running experiments whose window reaches back before `cutoff`."""
        return [e for e in self.experiments if e.active(now) and e.start < cutoff]

    def _stored_half_life(self) -> float | None:
        body = {"size": 0, "aggs": {"longest": {"max": {"field": "half_life_s"}}}}
        found = self.es.search(index=self.settings.indices.profiles, body=body)
        return found["aggregations"]["longest"].get("value")

    def _pending_batches(self) -> set[str]:
        journal = self.settings.indices.journal
        self.es.indices.refresh(index=journal)
        query = {"query": {"term": {"state": "pending"}}, "_source": False}
        return {h["_id"] for h in helpers.scan(self.es, index=journal, query=query)}

    def _candidates(self, cutoff: float) -> Iterator[list[str]]:
        """Users with events before `cutoff`, PAGE_USERS at a time."""
        events = self.settings.indices.events
        self.es.indices.refresh(index=events)
        older = {"range": {"timestamp": {"lt": cutoff}}}
        return composite_pages(self.es, events, "user_id", PAGE_USERS, older)

    def _newest(self, users: Sequence[str]) -> dict[str, float]:
        newest = {"newest": {"max": {"field": "timestamp"}}}
        found = buckets_by_key(self.es, self.settings.indices.events, "user_id", users, newest)
        return {user: bucket["newest"]["value"] for user, bucket in found.items()}

    def _plans(
        self, users: Sequence[str], cutoff: float, safe: SafeHorizon, forced: bool, at: float
    ) -> list[_Plan]:
        """Each user's coverage after this run: events before the cut-off (unforced: and more
        than the safe horizon before the user's newest event), ingested before `at`."""
        found = read_retired(self.es, self.settings, users)
        newest = {} if forced else self._newest(users)
        plans = []
        for user in users:
            if not forced and user not in newest:  # erased meanwhile
                continue
            before = cutoff if forced else min(cutoff, newest[user] - safe.seconds)
            old = retired_totals(found.get(user))
            old_cover = None if old is None else old[1]
            plans.append(
                _Plan(user, found.get(user), old_cover, Coverage(before, at).widened(old_cover))
            )
        return plans

    def _retire(self, plans: list[_Plan], pending: set[str], dry_run: bool, part: Part) -> None:
        """Totals first (not in a dry run), then the covered events go."""
        by_user, unreadable = self._scan(plans)
        for user, reason in unreadable.items():
            part.errors.append(
                f"user {user}: a logged event is unreadable ({reason}); their events are kept "
                "(`affinity user export` shows them)"
            )
        plans = [p for p in plans if p.user not in unreadable]
        for plan in plans:
            if plan.user in by_user:
                previous = retired_totals(plan.found)
                start = None if previous is None else previous[0]
                plan.totals = retire(start, by_user[plan.user], self.cfg)
        if not dry_run:
            self._write_totals([p for p in plans if p.totals is not None], part)
        clauses = [q for q in (p.deletable() for p in plans) if q is not None]
        if not clauses:
            return
        unfolded = [{"terms": {"batch_id": sorted(pending)}}] if pending else []
        if unfolded:
            held = {"bool": {"filter": [_any(clauses), *unfolded]}}
            part.pending += self._count(self.settings.indices.events, held)
        query = _any(clauses, unfolded)
        counts = self._count_by_user(query, len(clauses))
        part.users += len(counts)
        if dry_run:
            part.deleted += sum(counts.values())
        else:
            part.deleted += self._delete(self.settings.indices.events, query)

    def _scan(self, plans: Sequence[_Plan]) -> tuple[dict[str, list[Event]], dict[str, str]]:
        """The events each plan adds to its user's totals, by user; and the users with an
        unreadable event among them (why)."""
        if not plans:
            return {}, {}
        query = {"query": _any([p.increment() for p in plans])}
        by_user: dict[str, list[Event]] = {}
        unreadable: dict[str, str] = {}
        for hit in helpers.scan(self.es, index=self.settings.indices.events, query=query):
            source = hit["_source"]
            event = event_from_doc(source)
            if isinstance(event, Rejection):
                unreadable.setdefault(source["user_id"], event.reason)
            else:
                by_user.setdefault(event.user_id, []).append(event)
        return by_user, unreadable

    def _write_totals(self, plans: list[_Plan], part: Part) -> None:
        """Write each user's new totals if no other run changed them since they were read;
        a user whose write failed keeps their events this run."""
        index = self.settings.indices.retired
        actions = []
        for plan in plans:
            doc = dict(plan.totals or {})
            doc.update(user_id=plan.user, before=plan.new.before, at=plan.new.at)
            actions.append(cas_action(index, plan.user, doc, plan.found))
        failed: list[str] = []
        for ok, item in helpers.streaming_bulk(
            self.es, actions, raise_on_error=False, raise_on_exception=False, refresh=False
        ):
            if not ok:
                failed.append(next(iter(item.values()))["_id"])
        for plan in plans:
            if plan.user in failed:
                plan.totals = None
        if failed:
            part.kept.append(
                f"the events of {len(failed)} users whose retired totals changed during the run "
                "(another retention run?) or could not be written; the next run retires them"
            )

    def _count(self, index: str, query: dict[str, Any]) -> int:
        return int(self.es.count(index=index, body={"query": query})["count"])

    def _count_by_user(self, query: dict[str, Any], users: int) -> dict[str, int]:
        body = {
            "size": 0,
            "query": query,
            "aggs": {"users": {"terms": {"field": "user_id", "size": max(1, users)}}},
        }
        found = self.es.search(index=self.settings.indices.events, body=body)
        return {b["key"]: b["doc_count"] for b in found["aggregations"]["users"]["buckets"]}

    def _delete(self, index: str, query: dict[str, Any]) -> int:
        """delete_by_query in DELETE_CHUNK steps (conflicts=proceed); how many went."""
        total = 0
        while True:
            found = self.es.delete_by_query(
                index=index,
                body={"query": query},
                conflicts="proceed",
                refresh=True,
                max_docs=DELETE_CHUNK,
                request_timeout=600,
            )
            deleted = int(found.get("deleted", 0))
            total += deleted
            if deleted < DELETE_CHUNK:
                return total

    # ------------------------------------------------------------------ impressions
    def _impressions(self, policy: Policy, dry_run: bool, now: float) -> Part:
        index = self.settings.indices.impressions
        part = Part("impressions", index)
        if policy.impressions is None:
            part.why = f"{IMPRESSIONS_SETTING}=off: every impression is kept"
            return part
        if not self.es.indices.exists(index=index):
            part.why = "no impressions index (nothing logged yet)"
            return part
        cutoff = now - policy.impressions * DAY_S
        part.cutoff = cutoff
        part.why = f"{span(policy.impressions * DAY_S)} ({IMPRESSIONS_SETTING})"
        if self.experiment_errors and not policy.force:
            part.errors.append(
                "the impressions are kept: the experiments could not be read, so the running "
                f"ones' impressions cannot be told apart ({self.experiment_errors[0]}); fix the "
                f"file (`affinity experiment check`) or pass {FORCE_HINT}"
            )
            part.cutoff = None
            return part
        self.es.indices.refresh(index=index)
        protected = [] if policy.force else self._protect(cutoff, now, part)
        if policy.force:
            part.warnings += self._reports_lose(cutoff, now, "impressions")
        query = {"bool": {"filter": [{"range": {"timestamp": {"lt": cutoff}}}]}}
        if protected:
            query["bool"]["must_not"] = protected
        if dry_run:
            part.deleted = self._count(index, query)
        else:
            part.deleted = self._delete(index, query)
        return part

    def _protect(self, cutoff: float, now: float, part: Part) -> list[dict[str, Any]]:
        """The running experiments' impressions since their start (kept; counted in `kept`)."""
        index = self.settings.indices.impressions
        clauses = []
        for exp in self._running(cutoff, now):
            window = [
                {"term": {"experiment": exp.name}},
                {"range": {"timestamp": {"gte": exp.start}}},
            ]
            clauses.append({"bool": {"filter": window}})
            older = {"bool": {"filter": [*window, {"range": {"timestamp": {"lt": cutoff}}}]}}
            count = self._count(index, older)
            part.kept.append(
                f"{count:,} older impressions of experiment {exp.name}, running since "
                f"{when(exp.start)}: its report needs them (they go once it ends, or with "
                f"{FORCE_HINT})"
            )
        return clauses
