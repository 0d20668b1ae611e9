"""The profile document: its stored shape (schema 2), the codec between stored and in-memory
forms, and the checks that a stored document is one this code reads. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NotRequired, TypedDict

SCHEMA_VERSION = 2
"""2: `affinities` and `recent_sessions` are stored as parallel arrays (`to_source`), not as
objects keyed by brand, category or session id: OpenSearch's JSON parser interns every field
name it meets, and ever-new names made a profile write cost ~4x more. 1 is still read."""


READABLE_SCHEMAS = (1, 2)


class ProfileError(ValueError):
    """A profile document cannot be used with this configuration; says what to do."""


class Counters(TypedDict):
    events: int
    sessions: int
    purchases: int
    lifetime_value: float


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


OPTIONAL_KEYS = frozenset({"fold_profile"})
"""ProfileDoc keys older documents may lack (NotRequired, which `from __future__ import
annotations` hides from `__required_keys__`)."""


def profile_from_source(source: Mapping[str, object]) -> ProfileDoc:
    """A stored profile document, checked for a schema this code reads, decoded."""
    schema = source.get("schema")
    if schema not in READABLE_SCHEMAS:
        raise ProfileError(
            f"profile {source.get('user')!r} has schema {schema!r}; this version reads "
            f"schemas {', '.join(map(str, READABLE_SCHEMAS))}: rebuild profiles from the "
            "events log"
        )
    required = ProfileDoc.__required_keys__ - OPTIONAL_KEYS
    missing = sorted(k for k in required if k not in source)
    if missing:
        raise ProfileError(f"profile {source.get('user')!r} lacks {missing[0]!r}; rebuild it")
    return decode(source)  # type: ignore[return-value]


def to_source(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The stored form of a profile (schema 2): each attribute's values and masses, and the
    recent sessions' ids and times, as parallel arrays. `decode` inverts it."""
    out = dict(doc)
    out["schema"] = SCHEMA_VERSION
    affinities = doc.get("affinities")
    if isinstance(affinities, Mapping):
        out["affinities"] = {
            a: {"values": list(vs), "masses": list(vs.values())} for a, vs in affinities.items()
        }
    sessions = doc.get("recent_sessions")
    if isinstance(sessions, Mapping) and not _is_pairs(sessions, "ids"):
        out["recent_sessions"] = {"ids": list(sessions), "last": list(sessions.values())}
    return out


def decode(source: Mapping[str, Any]) -> dict[str, Any]:
    """A stored profile (schema 1 or 2; parts may be filtered out) in the in-memory shape:
    affinities as {attribute: {value: mass}}, recent_sessions as {session id: time}."""
    out = dict(source)
    affinities = source.get("affinities")
    if isinstance(affinities, Mapping):
        out["affinities"] = {
            a: dict(zip(vs["values"], vs["masses"], strict=True)) if _is_pairs(vs, "values") else vs
            for a, vs in affinities.items()
        }
    sessions = source.get("recent_sessions")
    if isinstance(sessions, Mapping) and _is_pairs(sessions, "ids"):
        out["recent_sessions"] = dict(zip(sessions["ids"], sessions["last"], strict=True))
    return out


def _is_pairs(value: object, key: str) -> bool:
    """Schema 2's {key: [...], other: [...]} (a schema 1 object maps names to numbers)."""
    return isinstance(value, Mapping) and len(value) == 2 and isinstance(value.get(key), list)
