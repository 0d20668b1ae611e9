"""The profile document: its stored shape (schema 2), the codec between stored and in-memory
forms, and the checks that a stored document is one this code reads. Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NotRequired, TypedDict

SCHEMA_VERSION = 2
"""2: `affinities` and `recent_sessions` are stored as parallel arrays (`to_source`), not as
objects keyed by brand, category or session id: OpenSearch's JSON parser interns every field
name it meets, and ever-new names made a profile write cost ~4x more. 1 is still read."""


READABLE_SCHEMAS = (1, 2)


class ProfileError(ValueError):
    """A profile document cannot be used with this configuration; says what to do."""


class UnreadableProfile(ProfileError):
    """A stored profile holding a number this code cannot use (null, not finite, negative,
    not a number): it can be neither folded into nor ranked with until it is rebuilt from
    the events log, which holds everything it was made of."""

    def __init__(self, user: object, problem: str) -> None:
        self.user = str(user)
        self.problem = problem
        super().__init__(
            f"profile {self.user} is unreadable: {problem}. Rebuild it from the events log: "
            f"affinity profile rebuild --pseudonym {self.user}"
        )


class Counters(TypedDict):
    events: int
    sessions: int
    purchases: int
    lifetime_value: float


class HorizonState(TypedDict):
    """A short or item-level horizon of a profile (boost/horizons.py): forward masses at its
    own `landmark` with its own `half_life_s`, per attribute (item ids under "item")."""

    landmark: float | None
    half_life_s: float
    affinities: dict[str, dict[str, float]]


class ProfileDoc(TypedDict):
    """The profiles-index document (doc id = pseudonym). `affinities` and `recent_sessions`
    are stored unindexed. Masses are forward masses at `landmark`: the decayed value at time
    t is `g · 2^(-(t - landmark)/half_life_s)`."""

    schema: int
    user: str
    landmark: float | None
    half_life_s: float
    mass: float
    affinities: dict[str, dict[str, float]]
    counters: Counters
    recent_sessions: dict[str, float]
    first_seen: float | None
    last_seen: float | None
    segments: list[str]
    opt_out: bool
    updated_at: float | None
    fold_profile: NotRequired[str]
    """The boost profile whose event weights and half-life folded it (FoldConfig.source)."""
    horizons: NotRequired[dict[str, HorizonState]]
    """The session and item-memory horizons by name, when the boost profile folds them."""


OPTIONAL_KEYS = frozenset({"fold_profile", "horizons"})
"""ProfileDoc keys older documents may lack (NotRequired, which `from __future__ import
annotations` hides from `__required_keys__`)."""


def profile_from_source(source: Mapping[str, object]) -> ProfileDoc:
    """A stored profile document, checked for a schema this code reads, decoded, and checked
    for numbers it can use (`check_numbers`); UnreadableProfile says what is wrong."""
    schema = source.get("schema")
    if schema not in READABLE_SCHEMAS:
        readable = ", ".join(map(str, READABLE_SCHEMAS))
        raise UnreadableProfile(
            source.get("user"), f"it has schema {schema!r}; this version reads schemas {readable}"
        )
    required = ProfileDoc.__required_keys__ - OPTIONAL_KEYS
    missing = sorted(k for k in required if k not in source)
    if missing:
        raise UnreadableProfile(source.get("user"), f"it lacks {missing[0]!r}")
    try:
        doc = decode(source)
    except (ValueError, TypeError, KeyError) as exc:
        problem = f"its stored arrays do not decode ({exc})"
        raise UnreadableProfile(source.get("user"), problem) from None
    check_numbers(doc)
    return doc  # type: ignore[return-value]


def check_numbers(doc: Mapping[str, Any]) -> None:
    """Raise UnreadableProfile naming the first number of `doc` (decoded) that the fold and
    the ranking cannot use: every mass, time and counter must be a finite number, ≥ 0
    where it is a mass or a counter. Opt-out tombstones carry nothing to check."""
    if doc.get("opt_out") is True:
        return
    problem = _number_problem(doc)
    if problem is not None:
        raise UnreadableProfile(doc.get("user"), problem)


_COUNTS = ("events", "sessions", "purchases")


def _number_problem(doc: Mapping[str, Any]) -> str | None:
    if not (_amount(doc.get("half_life_s")) and doc["half_life_s"] > 0):
        return f"half_life_s is {doc.get('half_life_s')!r}, not a finite number > 0"
    if not _amount(doc.get("mass")):
        return f"mass is {doc.get('mass')!r}, not a finite number ≥ 0"
    for key in ("landmark", "first_seen", "last_seen", "updated_at"):
        value = doc.get(key)
        if value is not None and not _finite(value):
            return f"{key} is {value!r}, not a finite time"
    counters = doc.get("counters")
    if not isinstance(counters, Mapping):
        return f"counters is {counters!r}, not an object"
    for key in _COUNTS:
        value = counters.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return f"counters.{key} is {value!r}, not a whole number ≥ 0"
    spent = counters.get("lifetime_value")
    if not _amount(spent):
        return f"counters.lifetime_value is {spent!r}, not a finite number ≥ 0"
    return _affinities_problem(doc.get("affinities"), "affinities") or _horizons_problem(
        doc.get("horizons") or {}
    )


def _horizons_problem(horizons: object) -> str | None:
    if not isinstance(horizons, Mapping):
        return f"horizons is {horizons!r}, not an object"
    for name, state in horizons.items():
        where = f"horizons.{name}"
        if not isinstance(state, Mapping):
            return f"{where} is {state!r}, not an object"
        if not (_amount(state.get("half_life_s")) and state["half_life_s"] > 0):
            return f"{where}.half_life_s is {state.get('half_life_s')!r}, not a number > 0"
        landmark = state.get("landmark")
        if landmark is not None and not _finite(landmark):
            return f"{where}.landmark is {landmark!r}, not a finite time"
        problem = _affinities_problem(state.get("affinities"), f"{where}.affinities")
        if problem is not None:
            return problem
    return None


def _affinities_problem(affinities: object, where: str) -> str | None:
    if not isinstance(affinities, Mapping):
        return f"{where} is {affinities!r}, not an object"
    for attribute, values in affinities.items():
        if not isinstance(values, Mapping):
            return f"{where}.{attribute} is not an object of value → mass"
        try:  # the common case in one pass (it runs per search): nan, inf and < 0 fail it
            if all(0.0 <= g < math.inf for g in values.values()):
                continue
        except TypeError:  # None, text: found below
            pass
        bad = next((v for v, g in values.items() if not _amount(g)), None)
        if bad is not None:
            return f"{where}.{attribute}[{bad!r}] is {values[bad]!r}, not a finite mass ≥ 0"
    return None


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _amount(value: object) -> bool:
    return _finite(value) and value >= 0  # type: ignore[operator]


def to_source(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The stored form of a profile (schema 2): each attribute's values and masses, and the
    recent sessions' ids and times, as parallel arrays. `decode` inverts it."""
    out = dict(doc)
    out["schema"] = SCHEMA_VERSION
    if "affinities" in doc:
        out["affinities"] = _pairs_of(doc["affinities"])
    horizons = doc.get("horizons")
    if isinstance(horizons, Mapping):
        out["horizons"] = {
            name: {**state, "affinities": _pairs_of(state.get("affinities"))}
            for name, state in horizons.items()
        }
    sessions = doc.get("recent_sessions")
    if isinstance(sessions, Mapping) and not _is_pairs(sessions, "ids"):
        out["recent_sessions"] = {"ids": list(sessions), "last": list(sessions.values())}
    return out


def decode(source: Mapping[str, Any]) -> dict[str, Any]:
    """A stored profile (schema 1 or 2; parts may be filtered out) in the in-memory shape:
    affinities as {attribute: {value: mass}}, recent_sessions as {session id: time}."""
    out = dict(source)
    if "affinities" in source:
        out["affinities"] = _maps_of(source["affinities"])
    horizons = source.get("horizons")
    if isinstance(horizons, Mapping):
        out["horizons"] = {
            name: {**state, "affinities": _maps_of(state.get("affinities"))}
            if isinstance(state, Mapping)
            else state
            for name, state in horizons.items()
        }
    sessions = source.get("recent_sessions")
    if isinstance(sessions, Mapping) and _is_pairs(sessions, "ids"):
        out["recent_sessions"] = dict(zip(sessions["ids"], sessions["last"], strict=True))
    return out


def _pairs_of(affinities: object) -> object:
    """{attribute: {value: mass}} as {attribute: {values: [...], masses: [...]}}."""
    if not isinstance(affinities, Mapping):
        return affinities
    return {a: {"values": list(vs), "masses": list(vs.values())} for a, vs in affinities.items()}


def _maps_of(affinities: object) -> object:
    """`_pairs_of` inverted (schema 1 objects pass through)."""
    if not isinstance(affinities, Mapping):
        return affinities
    return {
        a: dict(zip(vs["values"], vs["masses"], strict=True)) if _is_pairs(vs, "values") else vs
        for a, vs in affinities.items()
    }


def _is_pairs(value: object, key: str) -> bool:
    """Schema 2's {key: [...], other: [...]} (a schema 1 object maps names to numbers)."""
    return isinstance(value, Mapping) and len(value) == 2 and isinstance(value.get(key), list)
