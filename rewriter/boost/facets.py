"""What a boost profile says about facets: the `facets:` section (issue 11).

Pure model, no I/O. `FacetSettings` is the profile-wide part (personalize or not, how many
favored values a facet shows first, the least affinity that counts as favored); each
`FacetRule` hides or pins a facet group, or some of its values, for a segment (or everyone),
or overrides `max_favored` / `personalize` for that segment. The YAML is parsed by
boost/facets_schema.py; which rules apply to a request is `FacetSettings.for_segments`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

FacetAction = Literal["hide", "pin"]
FACET_ACTIONS: tuple[FacetAction, ...] = ("hide", "pin")

DEFAULT_MAX_FAVORED = 3
DEFAULT_MIN_AFFINITY = 0.25
MAX_FAVORED_LIMIT = 100


@dataclass(frozen=True)
class FacetRule:
    """One facet rule. `group` is the facet's field (as the app's `terms` aggregation names
    it, `.keyword` suffix or not); `values` empty means the whole group. `segment` None: for
    everyone. `max_favored` / `personalize`, when set, override the profile's for the
    segment."""

    id: str
    group: str | None = None
    action: FacetAction | None = None
    values: tuple[str, ...] = ()
    segment: str | None = None
    max_favored: int | None = None
    personalize: bool | None = None


@dataclass(frozen=True)
class FacetSettings:
    """The `facets:` section of a boost profile, with the built-in defaults."""

    personalize: bool = True
    max_favored: int = DEFAULT_MAX_FAVORED
    min_affinity: float = DEFAULT_MIN_AFFINITY
    rules: tuple[FacetRule, ...] = ()
    fired: tuple[str, ...] = field(default=(), compare=False)

    def for_segments(self, segments: Sequence[str]) -> FacetSettings:
        """The settings for a user in `segments` (a request's segments, in file order): the
        rules for everyone and for those segments stay, in file order; a segment's
        `max_favored` / `personalize` override the profile's (the last one in file order
        wins). `fired` lists the ids of the rules kept."""
        kept = tuple(r for r in self.rules if r.segment is None or r.segment in segments)
        out = replace(self, rules=kept, fired=tuple(r.id for r in kept))
        for rule in kept:
            if rule.max_favored is not None:
                out = replace(out, max_favored=rule.max_favored)
            if rule.personalize is not None:
                out = replace(out, personalize=rule.personalize)
        return out

    def hidden(self, group: str) -> tuple[FacetRule, ...]:
        return tuple(r for r in self.rules if r.action == "hide" and _same_group(r.group, group))

    def pinned(self, group: str) -> tuple[FacetRule, ...]:
        return tuple(r for r in self.rules if r.action == "pin" and _same_group(r.group, group))


def _same_group(rule_group: str | None, field_name: str) -> bool:
    return rule_group is not None and base_field(rule_group) == base_field(field_name)


def base_field(field_name: str) -> str:
    """`brand.keyword` and `brand` name one facet (the attribute a profile folds)."""
    for suffix in (".keyword", ".raw"):
        if field_name.endswith(suffix):
            return field_name[: -len(suffix)]
    return field_name
