"""What a `placements:` section says, and which placement a request gets (pure).

A boost profile names slots (`home_hero`, `search_top`, `grid_3`, any name) and, per slot, its
candidate placements in priority order: content (any JSON object the storefront renders:
title, text, image, link, offer code, ...), conditions (segments of the same file, search
words, device, geo, a schedule), a `priority`, a frequency cap per user per day, and optional
content `variants` of an `experiment` (a user's variant is a stable hash of experiment and
pseudonym, shares equal). profiles/retail.yaml documents every key; the parser is
boost/placements_schema.py.

`decide` picks, for one slot and request, the eligible placement of highest priority (file
order breaks ties) that the user has not yet seen `cap_per_day` times today; None when none
is eligible. Slots whose name starts with `search_` belong to search results: the proxy
returns their decisions inside the search response (`personalization.placements`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rewriter.boost.rules import QueryCondition, Schedule

SEARCH_SLOT_PREFIX = "search_"


@dataclass(frozen=True)
class Placement:
    id: str
    content: Mapping[str, Any]
    segments: tuple[str, ...] = ()
    query: QueryCondition | None = None
    device: tuple[str, ...] = ()
    geo: tuple[str, ...] = ()
    schedule: Schedule = field(default_factory=Schedule)
    priority: int = 0
    cap_per_day: int | None = None
    experiment: str | None = None
    variants: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    enabled: bool = True


@dataclass(frozen=True)
class Slot:
    name: str
    placements: tuple[Placement, ...]

    @property
    def in_search(self) -> bool:
        return self.name.startswith(SEARCH_SLOT_PREFIX)


@dataclass(frozen=True)
class Request:
    """What a placement decision looks at."""

    now: float
    segments: tuple[str, ...] = ()
    text: str = ""
    device: str | None = None
    geo: str | None = None
    user: str | None = None  # the pseudonym (variants, caps)


@dataclass(frozen=True)
class Choice:
    placement: Placement
    content: Mapping[str, Any]
    variant: str | None


def eligible(p: Placement, request: Request) -> bool:
    if not p.enabled or not p.schedule.active(request.now):
        return False
    if p.segments and not set(p.segments).intersection(request.segments):
        return False
    if p.device and request.device not in p.device:
        return False
    if p.geo and request.geo not in p.geo:
        return False
    return p.query is None or p.query.holds(request.text)


def variant_of(p: Placement, user: str | None) -> str | None:
    """The user's variant of the placement's experiment: sha256(experiment, user) over the
    variants in file order, equal shares; None without variants or without a user."""
    if not p.variants or not user:
        return None
    digest = hashlib.sha256(f"{p.experiment or p.id}\x00{user}".encode()).digest()
    names = list(p.variants)
    return names[int.from_bytes(digest[:8], "big") % len(names)]


def decide(
    slot: Slot, request: Request, shown_today: Callable[[str], int] = lambda _: 0
) -> Choice | None:
    """The placement the request gets in `slot`; `shown_today(placement id)` counts the
    user's decisions of that placement today (for caps)."""
    ranked = sorted(enumerate(slot.placements), key=lambda ip: (-ip[1].priority, ip[0]))
    for _, p in ranked:
        if not eligible(p, request):
            continue
        if p.cap_per_day is not None and request.user and shown_today(p.id) >= p.cap_per_day:
            continue
        variant = variant_of(p, request.user)
        content = {**p.content, **(p.variants[variant] if variant else {})}
        return Choice(p, content, variant)
    return None


def slot_named(slots: Sequence[Slot], name: str) -> Slot | None:
    return next((s for s in slots if s.name == name), None)
