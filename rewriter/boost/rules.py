"""Merchandising rules of a boost profile: what each rule says.

A rule has an id, optional conditions (segments: the user is in any of them; query: the
search text contains or equals one of the terms; schedule: start <= now < end, UTC) and one
action:

- boost: add `weight` (relevance units, > 0) to the score of items matching a filter;
- bury: multiply the score of matching items by `factor` in (0, 1) (never negative);
- hide: remove matching items from the results;
- pin: put given item ids at given 1-based positions of the result list.

The final score of an item is `(relevance + Σ boosts + alpha_eff · Affinity) · Π buries`
(ranking/rewrite.py renders it, ranking/reference.py computes it). Filters are small: `brand`,
`category`, `terms` (any field -> values), `created_within` (a duration, rendered against `now`
as an absolute epoch-millis bound on `created_at`, so the engine and the reference agree to the
millisecond) and `filter` (query DSL from the subset rewriter/boost/dsl_eval.py can evaluate);
several parts of one filter must all hold.

Which rules apply to one request is ranking/resolve.py's (`resolve`): this module holds
the data only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Scalar = str | int | float | bool


JSONDict = dict[str, object]


CREATED_FIELD = "created_at"


@dataclass(frozen=True)
class Where:
    """A filter on catalog items; every part given must hold."""

    terms: tuple[tuple[str, tuple[Scalar, ...]], ...] = ()  # field -> any of these values
    created_within_s: float | None = None
    dsl: Mapping[str, object] | None = None

    def render(self, now: float) -> JSONDict:
        """The filter as query DSL, for a request at `now` (epoch seconds)."""
        clauses: list[JSONDict] = [{"terms": {f: list(values)}} for f, values in self.terms]
        if self.created_within_s is not None:
            since = int((now - self.created_within_s) * 1000)
            clauses.append({"range": {CREATED_FIELD: {"gte": since, "format": "epoch_millis"}}})
        if self.dsl is not None:
            clauses.append(dict(self.dsl))
        return clauses[0] if len(clauses) == 1 else {"bool": {"filter": clauses}}


@dataclass(frozen=True)
class Boost:
    where: Where
    weight: float


@dataclass(frozen=True)
class Bury:
    where: Where
    factor: float


@dataclass(frozen=True)
class Hide:
    where: Where


@dataclass(frozen=True)
class PinItem:
    item: str
    position: int  # 1-based
    line: int = field(default=0, compare=False)  # where the file says so, for messages
    column: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Pin:
    items: tuple[PinItem, ...]


Action = Boost | Bury | Hide | Pin


ACTIONS: tuple[str, ...] = ("boost", "bury", "hide", "pin")


@dataclass(frozen=True)
class QueryCondition:
    """contains: a term's words appear in order in the search text; exact: the text is
    exactly a term. Words are lowercased runs of letters and digits."""

    terms: tuple[str, ...]
    match: Literal["contains", "exact"] = "contains"

    def holds(self, text: str) -> bool:
        words = tokens(text)
        for term in self.terms:
            want = tokens(term)
            if self.match == "exact" and words == want:
                return True
            if self.match == "contains" and _contains(words, want):
                return True
        return False


def tokens(text: str) -> list[str]:
    return re.findall(r"\w+", text.casefold())


def _contains(words: list[str], want: list[str]) -> bool:
    n = len(want)
    return n > 0 and any(words[i : i + n] == want for i in range(len(words) - n + 1))


@dataclass(frozen=True)
class Schedule:
    """Active from `start` (inclusive) to `end` (exclusive), epoch seconds; None = open."""

    start: float | None = None
    end: float | None = None

    def active(self, now: float) -> bool:
        return (self.start is None or now >= self.start) and (self.end is None or now < self.end)


@dataclass(frozen=True)
class Rule:
    id: str
    action: Action
    segments: tuple[str, ...] = ()
    query: QueryCondition | None = None
    schedule: Schedule = field(default_factory=Schedule)
    enabled: bool = True
    description: str = ""

    @property
    def kind(self) -> str:
        return type(self.action).__name__.lower()
