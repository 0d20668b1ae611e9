"""The affinity math and profile documents (docs/architecture.md, "Scoring"). Pure: no I/O.

A profile holds forward-decayed masses (Cormode et al., "Forward Decay"): an event of type
`e` at time `t` adds `w(e) · 2^((t − L)/H)` to `g[a][v]` for every value `v` of attribute
`a` that its item had at event time, and to the total `mass`. `L` is the profile's landmark,
`H` the half-life. Adding is plain addition, so folding commutes: the profile is the same
whatever order and batch split the events arrive in.

Exactness contract (tested with hypothesis): below the per-attribute cap `store_k`, a profile
is an order-independent function of the *set* of events (by event id): equal to 1e-9
relative, whatever the batch split, arrival order or landmark history. Two deliberate limits:
- above `store_k` values, the smallest masses are dropped (bounded size; a dropped value that
  comes back restarts from its new mass);
- masses that decayed below `2^-EXPIRE_HALF_LIVES` of the largest event weight, measured at
  the user's newest event, are dropped: they mean nothing for ranking, and dropping them keeps
  every stored number far from float64 underflow, where relative precision is lost.
"""

from __future__ import annotations

import math
import sys
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from rewriter.boost.horizons import ITEM_KEY
from rewriter.boost.profile import (
    DEFAULT_ATTRIBUTES,
    DEFAULT_EVENT_WEIGHTS,
    DEFAULT_HALF_LIFE_DAYS,
    DEFAULT_TOP_K,
    BoostProfile,
)
from rewriter.events.event import Event
from rewriter.profiles.doc import (
    SCHEMA_VERSION,
    Counters,
    HorizonState,
    ProfileDoc,
    ProfileError,
    check_numbers,
)

DAY_S = 86_400.0
# The defaults are the boost profile's (boost/profile.py): a FoldConfig() folds as a boost
# profile that sets nothing would, and `fold_config` maps any boost profile to its settings.
DEFAULT_HALF_LIFE_S = DEFAULT_HALF_LIFE_DAYS * DAY_S


REBASE_HALF_LIVES = 500.0


"""Rebase the landmark when a new event lies more than this many half-lives after it: keeps
every stored mass below ~2^500 · (sum of weights), far from float64's 2^1024."""


EXPIRE_HALF_LIVES = 600.0


"""Masses decayed below 2^-600 of the largest event weight (at the user's newest event) are
dropped. With the landmark at most 500 half-lives behind that event, every kept number is
above ~2^-600, clear of subnormals (2^-1022)."""


RECENT_SESSIONS = 64


"""How many session ids a profile remembers to count distinct sessions (see `fold`)."""


MAX_LIFETIME_VALUE = 1e18


"""A profile's lifetime value stays at most this (1e6 × the largest purchase events carry):
far above any real customer's, far from float64's limit. An unbounded sum reached inf,
stored as null, and broke every later fold and search of that user."""


POPULARITY_LANDMARK = 1_704_067_200.0  # 2024-01-01T00:00:00Z


MAX_POPULARITY_EXPONENT = 900.0


def store_k_for(top_k: int) -> int:
    """How many values per attribute to store for a boost profile using `top_k`."""
    return max(4 * top_k, 100)


class HalfLifeMismatch(ProfileError):
    """The profile's masses decay with another half-life than the fold settings'."""

    def __init__(self, user: str, built_s: float, cfg: FoldConfig, built_by: str = "") -> None:
        self.user = user
        source = f"boost profile {cfg.source!r}" if cfg.source else "the fold settings"
        by = f" (by boost profile {built_by!r})" if built_by else ""
        super().__init__(
            f"profile {user} was built{by} with a half-life of {_days(built_s)}, but {source} "
            f"says {_days(cfg.half_life_s)}. Fold with the boost profile it was built with "
            "(AFFINITY_FOLD_PROFILE, or --boost-profile), or rebuild it from the events log with "
            f"this one (affinity profile rebuild --boost-profile {cfg.source or 'NAME'})"
        )


def _days(seconds: float) -> str:
    return f"{seconds / 86_400:g} days"


@dataclass(frozen=True)
class HorizonConfig:
    """A horizon folded beside the long-term affinities (boost/horizons.py): its name
    (`session`, `items`), half-life, the attributes it folds, whether it folds the item ids
    themselves (under ITEM_KEY), and how many values per attribute it keeps."""

    name: str
    half_life_s: float
    attributes: tuple[str, ...] = ()
    items: bool = False
    store_k: int = store_k_for(DEFAULT_TOP_K)


@dataclass(frozen=True)
class FoldConfig:
    """What `fold` needs from the boost profile.

    event_weights: type → weight ≥ 0 (types not listed weigh 0: they count, add no mass).
    half_life_s: H; a profile is tied to the H it was built with (changing it is a rebuild).
    attributes: which of an event's captured attributes are folded.
    store_k: values kept per attribute (`store_k_for(top_k)`).
    purchase_types: types counted as purchases (and summed into lifetime_value).
    source: the boost profile these settings come from (named in error messages).
    horizons: the session and item-memory horizons to fold too (by default the boost
        profile's: a session horizon on the brand).
    """

    event_weights: Mapping[str, float] = field(
        default_factory=lambda: dict(DEFAULT_EVENT_WEIGHTS), hash=False
    )
    half_life_s: float = DEFAULT_HALF_LIFE_S
    attributes: tuple[str, ...] = tuple(DEFAULT_ATTRIBUTES)
    store_k: int = store_k_for(DEFAULT_TOP_K)
    purchase_types: tuple[str, ...] = ("purchase",)
    source: str = field(default="", compare=False)
    horizons: tuple[HorizonConfig, ...] = field(
        default_factory=lambda: horizon_configs(BoostProfile(name="default"))
    )

    def __post_init__(self) -> None:
        if not (math.isfinite(self.half_life_s) and self.half_life_s > 0):
            raise ValueError(f"half_life_s must be a positive number, got {self.half_life_s}")
        for etype, weight in self.event_weights.items():
            if not (math.isfinite(weight) and weight >= 0):
                raise ValueError(
                    f"event weight for {etype!r} must be a finite number ≥ 0, got {weight}"
                )
        if self.store_k < 1:
            raise ValueError(f"store_k must be at least 1, got {self.store_k}")

    def weight(self, event_type: str) -> float:
        return self.event_weights.get(event_type, 0.0)

    @property
    def max_weight(self) -> float:
        return max(self.event_weights.values(), default=0.0)


def fold_config(boost: BoostProfile) -> FoldConfig:
    """What folding needs from a boost profile."""
    purchase = tuple(t for t in boost.event_weights if t == "purchase")
    return FoldConfig(
        event_weights=dict(boost.event_weights),
        half_life_s=boost.half_life_days * DAY_S,
        attributes=tuple(boost.attributes),
        store_k=store_k_for(boost.top_k),
        purchase_types=purchase or ("purchase",),
        source=boost.name,
        horizons=horizon_configs(boost),
    )


def horizon_configs(boost: BoostProfile) -> tuple[HorizonConfig, ...]:
    """The horizons a boost profile folds: `session` and `items` when their weights are on.
    A horizon keeps top_k values per attribute (it is short-lived or read whole)."""
    out: list[HorizonConfig] = []
    session = boost.session
    used = session.used(boost.attributes)
    if used:
        weighted = tuple(a for a in used if a != ITEM_KEY)
        items = ITEM_KEY in used
        hours = session.half_life_hours * 3600.0
        out.append(HorizonConfig("session", hours, weighted, items, boost.top_k))
    if boost.item_memory.enabled:
        days = boost.item_memory.half_life_days * DAY_S
        out.append(HorizonConfig("items", days, (), True, store_k_for(boost.top_k)))
    return tuple(out)


def empty_profile(user: str, cfg: FoldConfig) -> ProfileDoc:
    """A profile with no events yet."""
    return {
        "schema": SCHEMA_VERSION,
        "user": user,
        "landmark": None,
        "half_life_s": cfg.half_life_s,
        "mass": 0.0,
        "affinities": {},
        "counters": {"events": 0, "sessions": 0, "purchases": 0, "lifetime_value": 0.0},
        "recent_sessions": {},
        "first_seen": None,
        "last_seen": None,
        "segments": [],
        "opt_out": False,
        "updated_at": None,
    }


def decayed(g: float, landmark: float | None, at: float, half_life_s: float) -> float:
    """The forward mass `g` (at `landmark`) decayed to time `at`: g · 2^(-(at - L)/H)."""
    if g == 0.0 or landmark is None:
        return 0.0
    try:
        return g * 2.0 ** ((landmark - at) / half_life_s)
    except OverflowError:  # `at` far before the landmark: a clock problem; saturate.
        return sys.float_info.max


# --- exactly-once ---------------------------------------------------------------------------


def dedupe(events: Iterable[Event], seen: Collection[str] = ()) -> list[Event]:
    """Events with an id not in `seen`, first delivery of each id kept, input order preserved.

    Exactly-once across batches is the events log's job (create-only writes keyed by event
    id: only newly created events are folded); `fold` dedupes within a batch with this.
    """
    kept: dict[str, Event] = {}
    for event in events:
        if event.event_id not in seen and event.event_id not in kept:
            kept[event.event_id] = event
    return list(kept.values())


def _canonical(events: Iterable[Event]) -> list[Event]:
    """Deduplicated, sorted by (timestamp, event_id): the order every fold works in."""
    return sorted(dedupe(events), key=lambda e: (e.timestamp, e.event_id))


# --- fold -----------------------------------------------------------------------------------


def fold(
    profile: ProfileDoc | None,
    events: Sequence[Event],
    cfg: FoldConfig,
    *,
    now: float | None = None,
) -> ProfileDoc:
    """A new profile: `profile` (or an empty one) plus `events`. Never mutates its input.

    Events must belong to the profile's user (already pseudonymized). `updated_at` is `now`
    when given (the caller's clock; this module reads none), else the newest event time.
    An event with `opt_out` set turns the profile into a tombstone (see `opted_out`).
    """
    batch = _canonical(events)
    doc = _start(profile, batch, cfg)
    if doc["opt_out"] or any(e.opt_out for e in batch):
        return opted_out(doc, now)
    if not batch:
        return _copy(doc)
    landmark, scale = _landmark(doc, batch, cfg)
    if scale == 1.0:  # the usual case: copy without touching each value
        affinities = {a: dict(vs) for a, vs in doc["affinities"].items()}
    else:
        affinities = {
            a: {v: g * scale for v, g in vs.items()} for a, vs in doc["affinities"].items()
        }
    mass = doc["mass"] * scale + _add_masses(affinities, batch, cfg, landmark)
    first = min(e.timestamp for e in batch)
    last = max(e.timestamp for e in batch)
    first_seen = first if doc["first_seen"] is None else min(doc["first_seen"], first)
    last_seen = last if doc["last_seen"] is None else max(doc["last_seen"], last)
    horizon = _expiry_log2(cfg, landmark, last_seen)
    sessions, recent = _sessions(doc, batch)
    out: ProfileDoc = {
        **doc,
        "landmark": landmark,
        "mass": mass if _kept(mass, horizon) else 0.0,
        "affinities": _trim(affinities, horizon, cfg.store_k),
        "counters": _counters(doc["counters"], batch, cfg, sessions),
        "recent_sessions": recent,
        "first_seen": first_seen,
        "last_seen": last_seen,
        "segments": list(doc["segments"]),
        "updated_at": last_seen if now is None else now,
        **_folded_by(cfg),
    }
    out.pop("horizons", None)
    if cfg.horizons:
        out["horizons"] = _fold_horizons(doc.get("horizons") or {}, batch, cfg, last_seen)
    return out


def rebuild(
    events: Sequence[Event],
    cfg: FoldConfig,
    *,
    user: str | None = None,
    now: float | None = None,
    retired: ProfileDoc | None = None,
) -> ProfileDoc:
    """A user's profile from all their events (e.g. read back from the events log).

    Equivalent to one `fold` from nothing: deduplicated by event id, folded in (timestamp,
    event_id) order. `user` is needed only when there are no events. `retired` is what
    retention kept of events no longer in the log (`retire`): the fold starts from it.
    """
    if retired is not None:
        start = {**without_masses(retired), "half_life_s": cfg.half_life_s}
        if not events:
            return {**start, "updated_at": now, **_folded_by(cfg)}
        return fold(start, events, cfg, now=now)
    if not events:
        if user is None:
            raise ProfileError("rebuild needs the user's events or the user id")
        return {**empty_profile(user, cfg), "updated_at": now}
    return fold(empty_profile(user, cfg) if user else None, events, cfg, now=now)


def retire(retired: ProfileDoc | None, events: Sequence[Event], cfg: FoldConfig) -> ProfileDoc:
    """What a profile keeps of `events` once they leave the events log (retention): their
    counters, sessions and first and last seen, added to `retired` (a previous retirement),
    without masses. `rebuild(rest, cfg, retired=retire(None, old))` equals
    `rebuild(old + rest, cfg)` when every old event lies more than EXPIRE_HALF_LIVES
    half-lives before the newest event (the fold drops its mass then), to the exactness
    contract of `fold` (sessions: exact up to RECENT_SESSIONS of them); otherwise the rebuilt
    profile lacks the old events' masses and keeps the rest. `events` may be empty only with
    a `retired` to add them to.
    """
    start = None if retired is None else without_masses(retired)
    return without_masses(fold(start, events, cfg))


def without_masses(profile: ProfileDoc) -> ProfileDoc:
    """The profile's counters, sessions and times, with no affinity masses."""
    doc = {**profile, "landmark": None, "mass": 0.0, "affinities": {}, "updated_at": None}
    doc.pop("fold_profile", None)
    doc.pop("horizons", None)
    return doc  # type: ignore[return-value]


def _folded_by(cfg: FoldConfig) -> dict[str, str]:
    return {"fold_profile": cfg.source} if cfg.source else {}


def opted_out(profile: ProfileDoc, now: float | None = None) -> ProfileDoc:
    """The tombstone of an opted-out user: the flag and nothing derived from behaviour.

    Opt-out is sticky in `fold` (later events add nothing), so the result does not depend on
    event order; opting back in is an explicit privacy operation, not an event.
    """
    tombstone = empty_profile(profile["user"], FoldConfig(half_life_s=profile["half_life_s"]))
    updated_at = profile["updated_at"] if now is None else now
    return {**tombstone, "opt_out": True, "updated_at": updated_at}


def _copy(doc: ProfileDoc) -> ProfileDoc:
    return {
        **doc,
        "affinities": {a: dict(vs) for a, vs in doc["affinities"].items()},
        "counters": {**doc["counters"]},
        "recent_sessions": dict(doc["recent_sessions"]),
        "segments": list(doc["segments"]),
    }


def _start(profile: ProfileDoc | None, batch: list[Event], cfg: FoldConfig) -> ProfileDoc:
    if profile is None:
        if not batch:
            raise ProfileError("fold needs a profile or at least one event to know the user")
        profile = empty_profile(batch[0].user_id, cfg)
    else:
        check_numbers(profile)
    stranger = next((e for e in batch if e.user_id != profile["user"]), None)
    if stranger is not None:
        raise ProfileError(
            f"event {stranger.event_id} belongs to user {stranger.user_id}, "
            f"not to the profile's user {profile['user']}; fold each user's events separately"
        )
    if profile["landmark"] is not None and profile["half_life_s"] != cfg.half_life_s:
        built_by = str(profile.get("fold_profile") or "")
        raise HalfLifeMismatch(profile["user"], profile["half_life_s"], cfg, built_by)
    return profile


def _landmark(
    doc: ProfileDoc | HorizonState, batch: list[Event], cfg: FoldConfig
) -> tuple[float, float]:
    """(landmark to use, factor to rescale the stored masses by).

    A new profile starts at its newest event. An existing one keeps its landmark until an
    event lies more than REBASE_HALF_LIVES after it; then the landmark moves to the batch's
    newest event and every mass is multiplied by 2^(-(L' - L)/H) (one rounding per value).
    """
    newest = batch[-1].timestamp
    old = doc["landmark"]
    if old is None:
        return newest, 1.0
    if (newest - old) / cfg.half_life_s <= REBASE_HALF_LIVES:
        return old, 1.0
    return newest, 2.0 ** ((old - newest) / cfg.half_life_s)


def _add_masses(
    affinities: dict[str, dict[str, float]],
    batch: list[Event],
    cfg: FoldConfig,
    landmark: float,
    items: bool = False,
) -> float:
    """Add each event's forward mass to its attribute values (in place), and with `items` to
    its item id (under ITEM_KEY); return the total."""
    total = 0.0
    for event in batch:
        weight = cfg.weight(event.type)
        if weight == 0.0:
            continue
        mass = weight * 2.0 ** ((event.timestamp - landmark) / cfg.half_life_s)
        total += mass
        for attribute in cfg.attributes:
            for value in event.attributes.get(attribute, ()):
                target = affinities.setdefault(attribute, {})
                target[value] = target.get(value, 0.0) + mass
        if items:
            target = affinities.setdefault(ITEM_KEY, {})
            target[event.item_id] = target.get(event.item_id, 0.0) + mass
    return total


def _fold_horizons(
    stored: Mapping[str, HorizonState], batch: list[Event], cfg: FoldConfig, last_seen: float
) -> dict[str, HorizonState]:
    """Each horizon of `cfg` plus `batch`, with the long-term fold's math under the horizon's
    own half-life and landmark. A stored horizon folded with another half-life starts again
    (its events are in the log: a rebuild restores it); one `cfg` no longer has is dropped."""
    out: dict[str, HorizonState] = {}
    for h in cfg.horizons:
        state = stored.get(h.name)
        if state is None or state["half_life_s"] != h.half_life_s:
            state = {"landmark": None, "half_life_s": h.half_life_s, "affinities": {}}
        sub = replace(
            cfg, half_life_s=h.half_life_s, attributes=h.attributes, store_k=h.store_k, horizons=()
        )
        landmark, scale = _landmark(state, batch, sub)
        affinities = {
            a: {v: g * scale for v, g in vs.items()} for a, vs in state["affinities"].items()
        }
        _add_masses(affinities, batch, sub, landmark, items=h.items)
        horizon = _expiry_log2(sub, landmark, last_seen)
        trimmed = _trim(affinities, horizon, h.store_k)
        out[h.name] = {"landmark": landmark, "half_life_s": h.half_life_s, "affinities": trimmed}
    return out


def _expiry_log2(cfg: FoldConfig, landmark: float, last_seen: float) -> float:
    """log2 of the smallest forward mass (at `landmark`) that is kept."""
    if cfg.max_weight == 0.0:
        return -math.inf
    behind = (last_seen - landmark) / cfg.half_life_s
    return math.log2(cfg.max_weight) - EXPIRE_HALF_LIVES + behind


def _kept(g: float, horizon_log2: float) -> bool:
    return g > 0.0 and math.log2(g) >= horizon_log2


def _trim(
    affinities: dict[str, dict[str, float]], horizon_log2: float, store_k: int
) -> dict[str, dict[str, float]]:
    """Drop expired values, keep the `store_k` largest per attribute (ties: by value).

    `affinities` is the fold's own copy: an attribute with nothing to drop is kept as is."""
    out: dict[str, dict[str, float]] = {}
    log2 = math.log2
    for attribute, values in affinities.items():
        alive = [(v, g) for v, g in values.items() if g > 0.0 and log2(g) >= horizon_log2]
        if len(alive) > store_k:
            alive = sorted(alive, key=lambda vg: (-vg[1], vg[0]))[:store_k]
        elif alive and len(alive) == len(values):  # `_kept` inlined: this runs per value
            out[attribute] = values
            continue
        if alive:
            out[attribute] = dict(alive)
    return out


def _sessions(doc: ProfileDoc, batch: list[Event]) -> tuple[int, dict[str, float]]:
    """(sessions counter, recent session ids → last activity).

    A session is counted the first time its id is seen. The profile remembers the
    RECENT_SESSIONS most recently active ids; counting is exact (and order-independent) while
    a user has at most that many sessions, and beyond it only an event of an evicted, older
    session arriving late can count that session twice.
    """
    count = doc["counters"]["sessions"]
    recent = dict(doc["recent_sessions"])
    for event in batch:
        sid = event.session_id
        if sid is None:
            continue
        if sid not in recent:
            count += 1
        recent[sid] = max(recent.get(sid, event.timestamp), event.timestamp)
    if len(recent) > RECENT_SESSIONS:
        newest = sorted(recent.items(), key=lambda kv: (-kv[1], kv[0]))[:RECENT_SESSIONS]
        recent = dict(newest)
    return count, recent


def _counters(old: Counters, batch: list[Event], cfg: FoldConfig, sessions: int) -> Counters:
    purchases = [e for e in batch if e.type in cfg.purchase_types]
    spent = sum(_spent(e) for e in purchases)
    return {
        "events": old["events"] + len(batch),
        "sessions": sessions,
        "purchases": old["purchases"] + len(purchases),
        "lifetime_value": min(old["lifetime_value"] + spent, MAX_LIFETIME_VALUE),
    }


def _spent(event: Event) -> float:
    """value × quantity of a purchase, within [0, MAX_LIFETIME_VALUE] (0 if not a number)."""
    spent = (event.value or 0.0) * (event.quantity or 1)
    if not math.isfinite(spent) or spent <= 0.0:  # inf: bounded; nan or < 0: not a value
        return MAX_LIFETIME_VALUE if spent == math.inf else 0.0
    return min(spent, MAX_LIFETIME_VALUE)


# --- catalog-side and cold-start aggregates -------------------------------------------------


def popularity_updates(
    events: Iterable[Event], cfg: FoldConfig, *, landmark: float = POPULARITY_LANDMARK
) -> dict[str, float]:
    """item id → forward-decayed mass to add to the catalog's `popularity` field.

    The field is a forward mass at the fixed `landmark` (same H as profiles), so updates are
    plain additions; compare items by ratio (the decay cancels). Opted-out users' events are
    left out. Raises when an event lies so far after the landmark that the masses would near
    float64 limits: multiply every stored popularity by 2^(-(L' - L)/H) and move the landmark.
    """
    masses: dict[str, float] = defaultdict(float)
    for event in dedupe(events):  # summed in input order: popularity is approximate
        weight = cfg.weight(event.type)
        if event.opt_out or weight == 0.0:
            continue
        exponent = (event.timestamp - landmark) / cfg.half_life_s
        if exponent > MAX_POPULARITY_EXPONENT:
            raise ProfileError(
                f"event {event.event_id} is {exponent:.0f} half-lives after the popularity "
                f"landmark {landmark}; rebase the catalog's popularity to a later landmark"
            )
        masses[event.item_id] += weight * 2.0**exponent
    return dict(masses)
