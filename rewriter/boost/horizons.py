"""What a boost profile says about the short and the item-level horizons of a user's profile.

Today's affinities (`attributes`, `half_life_days`) are the long-term horizon. Two more, each
with its own weights and half-life (docs/architecture.md, "Scoring"):

- `session`: the current session's intent: the brands, categories (any of `attributes`) and
  items the user engaged with in the last hours. Its values decay in hours, and the whole
  horizon fades with the time since the user's last event, so yesterday's session counts
  little today.
- `items`: item-level memory: the items themselves, so a shopper finds again what they
  looked at, with its own weight so it can be tuned apart from attribute affinity.

The defaults (profiles/default.yaml, with the numbers that chose them): a session term on
the brand (weight 1, half-life 30 minutes), item memory off. A default session weight for an
attribute the profile does not have (MovieLens has no brand) is ignored; a file that names
one is refused (`session_problem`). The item id is read from the catalog's `id`
keyword field (ITEM_FIELD); in a profile it is stored under the attribute name ITEM_KEY.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from yaml.nodes import Node

from rewriter.boost import yaml_fields as y

ITEM_FIELD = "id"
"""The catalog keyword field holding an item's id (index_templates/catalog.json)."""
ITEM_KEY = "item"
"""The attribute name under which a profile horizon keeps item ids, and the key of the
session's item weight in a boost profile."""
DEFAULT_SESSION_HALF_LIFE_HOURS = 0.5
DEFAULT_ITEM_HALF_LIFE_DAYS = 30.0
DEFAULT_SESSION_WEIGHTS: Mapping[str, float] = {"brand": 1.0}


@dataclass(frozen=True)
class SessionIntent:
    """The session horizon: weights per attribute (a subset of the profile's `attributes`)
    and `item` (the session's items themselves), and its half-life in hours."""

    half_life_hours: float = DEFAULT_SESSION_HALF_LIFE_HOURS
    weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_SESSION_WEIGHTS))

    @property
    def enabled(self) -> bool:
        return any(w > 0 for w in self.weights.values())

    @property
    def attributes(self) -> tuple[str, ...]:
        """The catalog attributes folded into the session horizon (not the item id)."""
        return tuple(a for a in self.weights if a != ITEM_KEY)

    def used(self, attributes: Mapping[str, float]) -> dict[str, float]:
        """The weights > 0 that apply to a profile with these `attributes` (and `item`)."""
        return {
            a: w for a, w in self.weights.items() if w > 0 and (a == ITEM_KEY or a in attributes)
        }


@dataclass(frozen=True)
class ItemMemory:
    """Item-level memory: weight of an item's own affinity, its half-life in days, and how
    many of the user's items it lifts at most (`top_k`; None: the profile's `top_k`). Each
    remembered item takes a place above the items the user never saw, so a small `top_k`
    lifts the few items the user engaged with most and leaves the rest of the page to them."""

    weight: float = 0.0
    half_life_days: float = DEFAULT_ITEM_HALF_LIFE_DAYS
    top_k: int | None = None

    @property
    def enabled(self) -> bool:
        return self.weight > 0


def _session_weights(node: Node, ctx: y.Ctx) -> dict[str, float]:
    pairs = y.pairs(node, ctx, "session weights")
    return {key: y.non_negative(value, y.at(ctx, key)) for key, _, value in pairs}


_SESSION: dict[str, y.Parser] = {
    "half_life_hours": y.positive,
    "weights": _session_weights,
}
_ITEMS: dict[str, y.Parser] = {
    "weight": y.non_negative,
    "half_life_days": y.positive,
    "top_k": y.int_between(1, 10_000),
}
SESSION_KEYS: tuple[str, ...] = tuple(_SESSION)
ITEM_MEMORY_KEYS: tuple[str, ...] = tuple(_ITEMS)


def parse_session(node: Node, ctx: y.Ctx) -> SessionIntent:
    before = len(ctx.errors)
    values = y.section(node, ctx, _SESSION, "session")
    y.check(ctx, before)
    return SessionIntent(**values)  # type: ignore[arg-type]


def parse_item_memory(node: Node, ctx: y.Ctx) -> ItemMemory:
    before = len(ctx.errors)
    values = y.section(node, ctx, _ITEMS, "item_memory")
    y.check(ctx, before)
    return ItemMemory(**values)  # type: ignore[arg-type]


def session_problem(session: SessionIntent, attributes: Mapping[str, float]) -> str | None:
    """Why the session's weights do not fit the profile's attributes (None when they do):
    the session folds only attributes the long-term horizon folds, plus the item."""
    unknown = [a for a in session.weights if a != ITEM_KEY and a not in attributes]
    if not unknown:
        return None
    known = ", ".join([*attributes, ITEM_KEY])
    return (
        f"session.weights: {unknown[0]!r} is not one of the profile's attributes ({known}); "
        "add it under `attributes:` (weight 0 folds it without ranking by it)"
    )
