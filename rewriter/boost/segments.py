"""Segments of a boost profile: named conditions on who is asking, evaluated per request.

Not to be confused with rewriter/ingest/segment_priors.py, which computes cold-start *priors* per
device/geo. A boost-profile segment is a condition over:

- profile facts: the counters `sessions`, `purchases`, `lifetime_value`, `events`; the
  decayed event `mass`; `days_since_first_seen`, `days_since_last_seen` (recency);
- request context (`X-User-Context`): `device`, `geo` (compared case-insensitively);
- explicit user lists: `users` (raw ids, as the application sends them) or `pseudonyms`;
- other segments (`segment: name`) and the combinations `all`, `any`, `not`.

A user without a profile (or no user at all) has every counter and the mass at 0 and no
first/last seen, so `events: {lt: 3}` matches them and a recency comparison does not.

User lists and privacy: raw ids never reach an index or a response. A loaded profile keeps
the raw ids of `users:` only until the process that serves it binds its pseudonymization
secret (`bind_user_lists`, done by the proxy, the in-process API and the CLI right after
loading); from then on the list holds pseudonyms only and membership is a pseudonym lookup,
the same key the profiles index uses. Evaluating an unbound list is a programming error and
raises. Files may list `pseudonyms:` directly to keep raw ids out of the repository.

Pure: no I/O, no clock (`now` is a fact).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

DAY_S = 86_400.0


COUNTER_FACTS: tuple[str, ...] = ("sessions", "purchases", "lifetime_value", "events")


NUMERIC_FACTS: tuple[str, ...] = (
    *COUNTER_FACTS,
    "mass",
    "days_since_first_seen",
    "days_since_last_seen",
)


CONTEXT_FACTS: tuple[str, ...] = ("device", "geo")


COMPARISONS: tuple[str, ...] = ("gt", "gte", "lt", "lte", "eq")


@dataclass(frozen=True)
class Compare:
    """A numeric fact within bounds, e.g. sessions >= 3 (`{gte: 3}`); every bound given
    must hold. A fact the user does not have (recency of a user never seen) never matches."""

    fact: str
    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None
    eq: float | None = None


@dataclass(frozen=True)
class OneOf:
    """A context fact (device, geo) equal to one of the values, ignoring case."""

    fact: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class UserIn:
    """An explicit user list; `raw` is emptied into `pseudonyms` by bind_user_lists."""

    raw: tuple[str, ...] = ()
    pseudonyms: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class SegmentIs:
    """Membership in another segment of the same profile (cycles are refused on load)."""

    name: str


@dataclass(frozen=True)
class All:
    conditions: tuple[Condition, ...]


@dataclass(frozen=True)
class AnyOf:
    conditions: tuple[Condition, ...]


@dataclass(frozen=True)
class Not:
    condition: Condition


Condition = Compare | OneOf | UserIn | SegmentIs | All | AnyOf | Not


@dataclass(frozen=True)
class Segment:
    """A named condition; `alpha`, when set, replaces the profile's alpha for members (the
    first matching segment with an alpha, in file order, wins)."""

    name: str
    when: Condition
    alpha: float | None = None
    description: str = ""


@dataclass(frozen=True)
class Facts:
    """What segments are evaluated on, for one request."""

    now: float
    user: str | None = None  # the pseudonym
    counters: Mapping[str, float] = field(default_factory=dict)
    mass: float = 0.0
    first_seen: float | None = None
    last_seen: float | None = None
    device: str | None = None
    geo: str | None = None

    def number(self, fact: str) -> float | None:
        if fact in COUNTER_FACTS:
            return float(self.counters.get(fact, 0.0))
        if fact == "mass":
            return self.mass
        seen = self.first_seen if fact == "days_since_first_seen" else self.last_seen
        return None if seen is None else (self.now - seen) / DAY_S


def matched_segments(segments: Sequence[Segment], facts: Facts) -> tuple[Segment, ...]:
    """The segments the facts satisfy, in file order."""
    by_name = {s.name: s for s in segments}
    memo: dict[str, bool] = {}

    def member(name: str) -> bool:
        if name not in memo:
            memo[name] = holds(by_name[name].when, facts, member)
        return memo[name]

    return tuple(s for s in segments if member(s.name))


def holds(condition: Condition, facts: Facts, member: Callable[[str], bool]) -> bool:
    """Whether one condition holds; `member(name)` answers segment references."""
    match condition:
        case Compare():
            return _compare(condition, facts.number(condition.fact))
        case OneOf(fact=fact, values=values):
            value = facts.device if fact == "device" else facts.geo
            return value is not None and value.casefold() in {v.casefold() for v in values}
        case UserIn(raw=raw, pseudonyms=pseudonyms):
            if raw:
                raise RuntimeError(
                    "a `users:` list was evaluated before bind_user_lists(); the loader "
                    "must bind the pseudonymization secret first"
                )
            return facts.user is not None and facts.user in pseudonyms
        case SegmentIs(name=name):
            return member(name)
        case All(conditions=conditions):
            return all(holds(c, facts, member) for c in conditions)
        case AnyOf(conditions=conditions):
            return any(holds(c, facts, member) for c in conditions)
        case Not(condition=inner):
            return not holds(inner, facts, member)
    raise TypeError(f"not a segment condition: {condition!r}")


def _compare(c: Compare, value: float | None) -> bool:
    if value is None:
        return False
    checks = (
        (c.gt, lambda b: value > b),
        (c.gte, lambda b: value >= b),
        (c.lt, lambda b: value < b),
        (c.lte, lambda b: value <= b),
        (c.eq, lambda b: value == b),
    )
    return all(test(bound) for bound, test in checks if bound is not None)


def bind_user_lists(
    segments: Sequence[Segment], pseudonymize: Callable[[str], str]
) -> tuple[Segment, ...]:
    """Segments whose `users:` lists hold pseudonyms only (raw ids dropped)."""
    return tuple(replace(s, when=_bind(s.when, pseudonymize)) for s in segments)


def _bind(condition: Condition, pseudonymize: Callable[[str], str]) -> Condition:
    match condition:
        case UserIn(raw=raw, pseudonyms=pseudonyms):
            return UserIn((), pseudonyms | {pseudonymize(r) for r in raw})
        case All(conditions=conditions):
            return All(tuple(_bind(c, pseudonymize) for c in conditions))
        case AnyOf(conditions=conditions):
            return AnyOf(tuple(_bind(c, pseudonymize) for c in conditions))
        case Not(condition=inner):
            return Not(_bind(inner, pseudonymize))
    return condition


def references(condition: Condition) -> set[str]:
    """The segment names a condition refers to (for cycle checks)."""
    match condition:
        case SegmentIs(name=name):
            return {name}
        case All(conditions=cs) | AnyOf(conditions=cs):
            return set().union(*(references(c) for c in cs)) if cs else set()
        case Not(condition=inner):
            return references(inner)
    return set()
