"""Per-user operations on stored data: show, rebuild, export, delete (verified), opt-out/in.

Every function takes the *raw* user id and pseudonymizes it here (privacy.py): the raw id is
never written anywhere. The CLI (`affinity profile ...`, `affinity user ...`) only prints.

Rebuild is safe while events keep arriving: for each page of users it reads the profiles'
`_seq_no` first, then refreshes and scans the events log, and writes each rebuilt profile with
`if_seq_no`/`if_primary_term`. A fold that lands in between makes the write conflict and the
user is rebuilt again, so no event is lost or counted twice. The rebuilt profile remembers
the batch ids of its newest events in `recent_batches`, so neither recovery nor a late fold in
flight folds a batch whose events the rebuild already counted. A user's events that
retention took out of the log live on as retired totals (ingest/retention.py): the rebuild
starts from them, and skips the logged events they already hold.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from opensearchpy import OpenSearch, helpers

from rewriter import config, privacy
from rewriter.boost.profile import BoostProfile
from rewriter.engine.client import composite_pages
from rewriter.events.event import Event
from rewriter.events.fields import Rejection, iso
from rewriter.ingest.pipeline import Pipeline, catalog_attributes, event_from_doc
from rewriter.ingest.retention import Coverage, read_retired, retired_of
from rewriter.profiles.changes import ChangeLog
from rewriter.profiles.doc import ProfileDoc, decode, profile_from_source
from rewriter.profiles.fold import decayed, fold_config, rebuild
from rewriter.profiles.view import top_values
from rewriter.profiles.writer import Found, cas_action, journal_states, read_profiles

PAGE_USERS = 500
MAX_REBUILD_ATTEMPTS = 5


def pseudonym(settings: config.Settings, raw_user: str) -> str:
    return privacy.pseudonymize(raw_user, config.user_secret(settings))


# --------------------------------------------------------------------------- show
def read_profile(es: OpenSearch, settings: config.Settings, user: str) -> dict[str, Any] | None:
    """The profile document of the pseudonym `user` (realtime, decoded), or None."""
    found = es.get(index=settings.indices.profiles, id=user, realtime=True, ignore=[404])
    return decode(found["_source"]) if found.get("found") else None


def describe(
    source: Mapping[str, Any], boost: BoostProfile, now: float, top: int | None = None
) -> dict[str, Any]:
    """A decoded profile: top values per attribute with normalized affinity (value / max),
    decayed event mass at `now`, counters, segments, and times as ISO 8601."""
    doc: ProfileDoc = profile_from_source(source)
    k = top or boost.top_k
    top_by_attr: dict[str, list[dict[str, Any]]] = {}
    for attribute, values in sorted(doc["affinities"].items()):
        best = top_values(values, k)
        peak = best[0][1] if best else 0.0
        top_by_attr[attribute] = [
            {"value": v, "affinity": g / peak if peak else 0.0} for v, g in best
        ]
    stamp = {
        name: None if doc[name] is None else iso(float(doc[name]))  # type: ignore[literal-required]
        for name in ("first_seen", "last_seen", "updated_at", "landmark")
    }
    return {
        "user": doc["user"],
        "opt_out": doc["opt_out"],
        "event_mass": decayed(doc["mass"], doc["landmark"], now, doc["half_life_s"]),
        "half_life_days": doc["half_life_s"] / 86_400.0,
        "top": top_by_attr,
        "values_stored": {a: len(v) for a, v in sorted(doc["affinities"].items())},
        "counters": dict(doc["counters"]),
        "segments": list(doc["segments"]),
        **stamp,
    }


# --------------------------------------------------------------------------- events log
def scan_events(
    es: OpenSearch, settings: config.Settings, users: Sequence[str]
) -> Iterator[dict[str, Any]]:
    """Every stored event document of the pseudonyms `users` (refreshed first)."""
    es.indices.refresh(index=settings.indices.events)
    query = {"query": {"terms": {"user_id": list(users)}}}
    for hit in helpers.scan(es, index=settings.indices.events, query=query, size=2000):
        yield hit["_source"]


def user_pages(
    es: OpenSearch, settings: config.Settings, page: int = PAGE_USERS
) -> Iterator[list[str]]:
    """All pseudonyms with events or retired totals, `page` at a time."""
    indices = f"{settings.indices.events},{settings.indices.retired}"
    return composite_pages(es, indices, "user_id", page, ignore_unavailable=True)


# --------------------------------------------------------------------------- rebuild
@dataclass
class RebuildResult:
    users: int = 0
    events: int = 0
    opted_out: int = 0
    retried: int = 0
    errors: list[str] = field(default_factory=list)
    unweighted: Counter[str] = field(default_factory=Counter)
    """Logged events whose type the boost profile does not weight, by type."""
    not_rebuilt: int = 0
    """Profiles left as they were because of such events."""
    late_enriched: int = 0
    """Events whose item was not in the catalog when they were ingested, and now is: folded
    with the item's current attribute values."""
    retired: int = 0
    """Events retention took out of the log, counted from the users' retired totals."""
    refused_by: Counter[str] = field(default_factory=Counter)
    """Boost profiles that would have folded the not-rebuilt profiles."""
    by_profile: Counter[str] = field(default_factory=Counter)
    """Profiles rebuilt, by the boost profile that folded them."""


def _pending_batches(sources: Sequence[Mapping[str, Any]], pending: set[str]) -> list[str]:
    """The batches of the user's events still pending in the journal, newest first: the
    rebuilt profile holds their events, so a later fold or recovery must not add them again."""
    ordered = sorted(sources, key=lambda s: float(s.get("ingested_at") or 0.0), reverse=True)
    batches = (s["batch_id"] for s in ordered if s.get("batch_id") in pending)
    return list(dict.fromkeys(batches))


def _not_retired(
    sources: list[dict[str, Any]], retired: tuple[ProfileDoc, Coverage] | None
) -> list[dict[str, Any]]:
    """The logged events the user's retired totals do not hold (a crash can leave held
    events in the log until the next retention run deletes them)."""
    if retired is None:
        return sources
    return [s for s in sources if not retired[1].holds(s)]


def _events(sources: Iterable[Mapping[str, Any]], result: RebuildResult) -> list[Event]:
    out: list[Event] = []
    for source in sources:
        event = event_from_doc(source)
        if isinstance(event, Rejection):
            result.errors.append(f"event {source.get('event_id')}: unreadable: {event.reason}")
        else:
            out.append(event)
    return out


class Rebuilder:
    """Recomputes profiles from the events log with the fold settings of a boost profile:
    `boost`, or, given `by_name` (the loaded boost profiles), the one each profile records
    as having folded it (`fold_profile`), falling back to `boost`."""

    def __init__(
        self,
        es: OpenSearch,
        settings: config.Settings,
        boost: BoostProfile,
        by_name: Mapping[str, BoostProfile] | None = None,
    ) -> None:
        self.es = es
        self.settings = settings
        self.boost = boost
        self.by_name = dict(by_name or {})
        self._cfgs = {b.name: fold_config(b) for b in (*self.by_name.values(), boost)}

    def _boost_for(self, found: Found | None) -> BoostProfile:
        recorded = found[0].get("fold_profile") if found is not None else None
        return self.by_name.get(str(recorded), self.boost) if recorded else self.boost

    def run(
        self, users: Sequence[str] | None = None, progress: Callable[[int], None] = lambda n: None
    ) -> RebuildResult:
        """Rebuild the pseudonyms `users`, or every user with events."""
        result = RebuildResult()
        pages = [list(users)] if users is not None else user_pages(self.es, self.settings)
        for page in pages:
            pending = list(page)
            for _attempt in range(MAX_REBUILD_ATTEMPTS):
                if not pending:
                    break
                pending = self._page(pending, result)
                result.retried += len(pending)
            if pending:
                result.errors.append(
                    f"{len(pending)} profiles kept changing during the rebuild; "
                    "run it again for them (--user)"
                )
            progress(len(page))
        if result.not_rebuilt:
            types = ", ".join(f"{t} ({n})" for t, n in result.unweighted.most_common())
            names = " or ".join(repr(n) for n in sorted(result.refused_by))
            result.errors.append(
                f"{result.not_rebuilt} profiles were not rebuilt and stay as they were: their "
                f"events include types that boost profile {names} does not weight "
                f"({types}), so it would fold them as nothing. Rebuild with the boost profile "
                "these events were ingested with (--boost-profile NAME, or AFFINITY_FOLD_PROFILE), "
                "or list those types under its event_weights (weight 0 drops them on purpose)."
            )
        return result

    def _page(self, users: Sequence[str], result: RebuildResult) -> list[str]:
        """Rebuild one page; the users whose write conflicted (to try again)."""
        current = read_profiles(self.es, self.settings.indices.profiles, users)  # BEFORE the scan
        logged: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for source in scan_events(self.es, self.settings, users):
            logged[source["user_id"]].append(source)
        retired = retired_of(self.es, self.settings, users)  # AFTER the scan (retention.py)
        by_user = {u: _not_retired(logged[u], retired.get(u)) for u in users}
        boosts = {user: self._boost_for(current.get(user)) for user in users}
        late = self._enrich_late(by_user, boosts)
        states = journal_states(
            self.es,
            self.settings.indices.journal,
            (s["batch_id"] for sources in logged.values() for s in sources if s.get("batch_id")),
        )
        pending = {b for b, state in states.items() if state == "pending"}
        now = time.time()
        actions, scanned, chosen = [], [], {}
        for user in users:
            found = current.get(user)
            if found is not None and found[0].get("opt_out"):
                result.opted_out += 1
                continue
            totals = retired[user][0] if user in retired else None
            if found is None and not by_user[user] and totals is None:
                continue
            boost = boosts[user]
            weights = boost.event_weights
            unweighted = Counter(
                t for t in (src.get("type") for src in by_user[user]) if t not in weights
            )
            if unweighted:
                result.unweighted.update(unweighted)
                result.refused_by[boost.name] += 1
                result.not_rebuilt += 1
                continue
            cfg = self._cfgs[boost.name]
            chosen[user] = boost.name
            events = _events(by_user[user], result)
            doc = dict(rebuild(events, cfg, user=user, now=now, retired=totals))
            doc["recent_batches"] = _pending_batches(logged[user], pending)
            actions.append(cas_action(self.settings.indices.profiles, user, doc, found))
            scanned.append(user)
        conflicts = self._write(actions, result)
        done = [u for u in scanned if u not in conflicts]
        result.users += len(done)
        result.events += sum(len(by_user[u]) for u in done)
        result.retired += sum(retired[u][0]["counters"]["events"] for u in done if u in retired)
        result.late_enriched += sum(late[u] for u in done)
        result.by_profile.update(chosen[u] for u in done)
        return conflicts

    def _enrich_late(
        self, by_user: Mapping[str, list[dict[str, Any]]], boosts: Mapping[str, BoostProfile]
    ) -> Counter[str]:
        """Give events whose item was unknown at ingest the item's attribute values, when the
        catalog has it now (in memory: the log keeps what was known at the time); how many
        per user. When it still has not, the attributes a client sent with the event are
        dropped unless the user's boost profile allows them for the event's source
        (`client_attributes`: earlier versions stored and folded them from any client)."""
        enriched: Counter[str] = Counter()
        late = [s for sources in by_user.values() for s in sources if s.get("known_item") is False]
        if not late:
            return enriched
        names = sorted({a for cfg in self._cfgs.values() for a in cfg.attributes})
        found = catalog_attributes(
            self.es, self.settings.indices.catalog, (s["item_id"] for s in late), names
        )
        for source in late:
            attributes = found.get(source["item_id"])
            if attributes is not None:
                source["attributes"] = {a: list(v) for a, v in attributes.items()}
                enriched[source["user_id"]] += 1
            elif source.get("attributes"):
                trusted = boosts[source["user_id"]].client_attributes
                if not trusted.allows(str(source.get("source"))):
                    source["attributes"] = {}
        return enriched

    def _write(self, actions: list[dict[str, Any]], result: RebuildResult) -> list[str]:
        conflicts: list[str] = []
        for ok, item in helpers.streaming_bulk(
            self.es, actions, raise_on_error=False, raise_on_exception=False, max_retries=3
        ):
            info = next(iter(item.values()))
            if ok:
                continue
            if info.get("status") == 409:
                conflicts.append(info["_id"])
            else:
                result.errors.append(f"profile {info['_id']}: not written: {info.get('error')}")
        written = {str(a["_id"]) for a in actions} - set(conflicts)
        ChangeLog(self.es, self.settings.indices.changes).publish(written)  # proxies' caches
        return conflicts


# --------------------------------------------------------------------------- privacy
def export(es: OpenSearch, settings: config.Settings, raw_user: str) -> dict[str, Any]:
    """Everything stored about the user: the profile, every event, the totals retention kept
    of events it deleted, and the impressions, as JSON-ready data."""
    user = pseudonym(settings, raw_user)
    events = sorted(
        scan_events(es, settings, [user]), key=lambda s: (float(s["timestamp"]), s["event_id"])
    )
    return {
        "user_id": raw_user,
        "pseudonym": user,
        "exported_at": iso(time.time()),
        "profile": read_profile(es, settings, user),
        "events": events,
        "retired": (read_retired(es, settings, [user]).get(user) or [None])[0],
        "impressions": scan_impressions(es, settings, user),
    }


def scan_impressions(es: OpenSearch, settings: config.Settings, user: str) -> list[dict[str, Any]]:
    """The user's search impressions (what the proxy showed them), oldest first."""
    index = settings.indices.impressions
    if not es.indices.exists(index=index):
        return []
    es.indices.refresh(index=index)
    query = {"query": {"term": {"user_id": user}}}
    found = [h["_source"] for h in helpers.scan(es, index=index, query=query, size=2000)]
    return sorted(found, key=lambda s: float(s.get("timestamp", 0.0)))


def affinity_indices(es: OpenSearch, settings: config.Settings) -> list[str]:
    """Every concrete index affinity owns under the configured prefix."""
    prefix = settings.indices.prefix
    patterns = f"{prefix}affinity-*,{prefix}catalog*"
    found = es.indices.get(
        index=patterns, expand_wildcards="all", ignore_unavailable=True, allow_no_indices=True
    )
    return sorted(found)


def pseudonym_counts(es: OpenSearch, settings: config.Settings, user: str) -> dict[str, int]:
    """Per affinity index: documents whose id or any field holds the pseudonym `user`."""
    indices = affinity_indices(es, settings)
    if indices:
        es.indices.refresh(index=",".join(indices))
    query = {
        "bool": {
            "should": [
                {"ids": {"values": [user]}},
                {"term": {"user_id": user}},
                {"term": {"user": user}},
                {"multi_match": {"query": user, "fields": ["*"], "lenient": True}},
            ]
        }
    }
    return {i: es.count(index=i, body={"query": query})["count"] for i in indices}


@dataclass
class DeleteReport:
    pseudonym: str
    deleted: dict[str, int]
    remaining: dict[str, int]

    @property
    def clean(self) -> bool:
        return not any(self.remaining.values())


def delete(
    es: OpenSearch, settings: config.Settings, boost: BoostProfile, raw_user: str
) -> DeleteReport:
    """Erase the user's profile and events, then count what is left in every affinity index."""
    user = pseudonym(settings, raw_user)
    deleted = Pipeline(es, settings, boost).erase(user)
    return DeleteReport(user, deleted, pseudonym_counts(es, settings, user))


def opt_out(es: OpenSearch, settings: config.Settings, boost: BoostProfile, raw_user: str) -> str:
    """Erase the user and leave a tombstone: nothing is stored or personalized any more."""
    user = pseudonym(settings, raw_user)
    Pipeline(es, settings, boost).opt_out(user)
    return user


def opt_in(es: OpenSearch, settings: config.Settings, raw_user: str) -> bool:
    """Remove the opt-out tombstone so the user starts fresh; False if they had not opted out."""
    user = pseudonym(settings, raw_user)
    source = read_profile(es, settings, user)
    if source is None or not source.get("opt_out"):
        return False
    es.delete(index=settings.indices.profiles, id=user, refresh="wait_for")
    ChangeLog(es, settings.indices.changes).publish([user])  # proxies drop the tombstone
    return True
