"""Diversity caps: a `diversity:` section in boost profiles, and the greedy re-rank that
applies it (pure).

    diversity:
      max_per: {brand: 2, category: 3}   # at most N items sharing a value of the field ...
      top: 10                            # ... among the first `top` items

`diversify(items, values_of, caps)` walks the items in score order and takes each one whose
values are all under their cap among the items taken so far; an item over a cap waits. Once
`top` items are taken (or nothing else fits), the waiting items follow in their order, then
the rest: nothing is dropped, only moved below the top. Applied to carousels
(serve/recommend.py asks the engine for more candidates so the caps have room); searches keep
the engine's order.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from yaml.nodes import Node

from rewriter.boost import yaml_fields as y

T = TypeVar("T")

MAX_TOP = 100


@dataclass(frozen=True)
class Diversity:
    max_per: Mapping[str, int] = field(default_factory=dict)
    top: int = 10

    @property
    def enabled(self) -> bool:
        return bool(self.max_per)


def diversify(
    items: Sequence[T], values_of: Callable[[T, str], Sequence[str]], caps: Diversity
) -> list[T]:
    """The items re-ordered so the first `caps.top` respect `caps.max_per` where they can."""
    if not caps.enabled:
        return list(items)
    taken: list[T] = []
    waiting: list[T] = []
    counts: dict[str, Counter[str]] = {f: Counter() for f in caps.max_per}
    rest = list(items)
    while rest and len(taken) < caps.top:
        item = rest.pop(0)
        values = {f: set(values_of(item, f)) for f in caps.max_per}
        if all(counts[f][v] < cap for f, cap in caps.max_per.items() for v in values[f]):
            taken.append(item)
            for f, vs in values.items():
                counts[f].update(vs)
        else:
            waiting.append(item)
    return taken + waiting + rest


def parse_diversity(node: Node, ctx: y.Ctx) -> Diversity:
    before = len(ctx.errors)
    values = y.section(node, ctx, _DIVERSITY, "diversity")
    y.check(ctx, before)
    return Diversity(**values)  # type: ignore[arg-type]


def _max_per(node: Node, ctx: y.Ctx) -> dict[str, int]:
    out: dict[str, int] = {}
    for name, key_node, value in y.pairs(node, ctx, "max_per"):
        y.ref(y.at(ctx, name), key_node, "field", name)
        out[name] = int(y.int_between(1, MAX_TOP)(value, y.at(ctx, name)))  # type: ignore[arg-type]
    return out


_DIVERSITY: dict[str, y.Parser] = {"max_per": _max_per, "top": y.int_between(1, MAX_TOP)}
DIVERSITY_KEYS: tuple[str, ...] = tuple(_DIVERSITY)
