"""Parser for the `segments:` section of profiles/*.yaml (see profiles/retail.yaml).

Turns YAML nodes into the condition types of boost/segments.py, reporting problems through
yaml_fields (file:line:column, closest valid key). Segment references are recorded in the
context and resolved once the whole file is parsed (boost/profile.py).
"""

from __future__ import annotations

import re

from yaml.nodes import Node, ScalarNode

from rewriter.boost import yaml_fields as y
from rewriter.boost.segments import (
    COMPARISONS,
    CONTEXT_FACTS,
    NUMERIC_FACTS,
    All,
    AnyOf,
    Compare,
    Condition,
    Not,
    OneOf,
    Segment,
    SegmentIs,
    UserIn,
)

ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
ID_HELP = "use letters, digits and _ . : - (starting with a letter or digit)"
_PSEUDONYM = re.compile(r"^[0-9a-f]{32}$")


def parse_segments(node: Node, ctx: y.Ctx) -> tuple[Segment, ...]:
    segments: list[Segment] = []
    for name, key_node, value in y.pairs(node, ctx, "segments"):
        if not ID.match(name):
            ctx.errors.append(y.error_at(ctx, key_node, f"segment name {name!r}: {ID_HELP}"))
            continue
        parsed = y.collect(ctx, lambda n=name, v=value: _segment(n, v, y.at(ctx, n)))
        if isinstance(parsed, Segment):
            segments.append(parsed)
    return tuple(segments)


def _segment(name: str, node: Node, ctx: y.Ctx) -> Segment:
    before = len(ctx.errors)
    values = y.section(node, ctx, _SEGMENT, "a segment")
    y.check(ctx, before)
    if "when" not in values:
        y.fail(ctx, node, "missing required key 'when' (the segment's condition)")
    return Segment(name, **values)  # type: ignore[arg-type]


def condition(node: Node, ctx: y.Ctx) -> Condition:
    """A mapping of one or more conditions (several keys: all must hold)."""
    pairs = y.pairs(node, ctx, "a condition")
    if not pairs:
        y.fail(ctx, node, f"empty condition; use one of {', '.join(sorted(_CONDITION))}")
    parts: list[Condition] = []
    for key, key_node, value in pairs:
        if key not in _CONDITION:
            y.fail(ctx, key_node, y.unknown_key(key, _CONDITION, " in a condition"))
        parts.append(_CONDITION[key](value, y.at(ctx, key)))  # type: ignore[arg-type]
    return parts[0] if len(parts) == 1 else All(tuple(parts))


def _conditions(node: Node, ctx: y.Ctx) -> tuple[Condition, ...]:
    nodes = y.items(node, ctx, "all/any")
    if not nodes:
        y.fail(ctx, node, "the list of conditions must not be empty")
    return tuple(condition(n, y.at(ctx, i)) for i, n in enumerate(nodes))


def _comparison(fact: str) -> y.Parser:
    def parse(node: Node, ctx: y.Ctx) -> Compare:
        if isinstance(node, ScalarNode):
            y.fail(ctx, node, f"compare with bounds, e.g. `{fact}: {{gte: 3}}` (gt gte lt lte eq)")
        before = len(ctx.errors)
        bounds = y.section(node, ctx, dict.fromkeys(COMPARISONS, y.number), f"{fact} bounds")
        y.check(ctx, before)
        if not bounds:
            y.fail(ctx, node, "give at least one bound: gt, gte, lt, lte or eq")
        result = Compare(fact, **bounds)  # type: ignore[arg-type]
        low = max((v for v in (result.gt, result.gte) if v is not None), default=None)
        high = min((v for v in (result.lt, result.lte) if v is not None), default=None)
        if low is not None and high is not None and low > high:
            y.fail(ctx, node, f"can never hold: the lower bound {low:g} is above {high:g}")
        return result

    return parse


def _one_of(fact: str) -> y.Parser:
    return lambda node, ctx: OneOf(fact, y.texts(node, ctx))


def _users(node: Node, ctx: y.Ctx) -> UserIn:
    return UserIn(raw=y.texts(node, ctx))


def _pseudonyms(node: Node, ctx: y.Ctx) -> UserIn:
    values = y.texts(node, ctx)
    bad = [v for v in values if not _PSEUDONYM.match(v)]
    if bad:
        message = f"{bad[0]!r} is not a pseudonym (32 lowercase hex digits); list raw ids "
        y.fail(ctx, node, message + "under `users:` instead")
    return UserIn(pseudonyms=frozenset(values))


def name_ref(ctx: y.Ctx, node: Node, name: str) -> None:
    mark = node.start_mark
    ctx.segment_refs.append(y.NameRef(name, mark.line + 1, mark.column + 1, ctx.path))


def _segment_ref(node: Node, ctx: y.Ctx) -> SegmentIs:
    name = y.text(node, ctx)
    name_ref(ctx, node, name)
    return SegmentIs(name)


_CONDITION: dict[str, y.Parser] = {
    "all": lambda n, c: All(_conditions(n, c)),
    "any": lambda n, c: AnyOf(_conditions(n, c)),
    "not": lambda n, c: Not(condition(n, c)),
    "segment": _segment_ref,
    **{fact: _comparison(fact) for fact in NUMERIC_FACTS},
    **{fact: _one_of(fact) for fact in CONTEXT_FACTS},
    "users": _users,
    "pseudonyms": _pseudonyms,
}

_SEGMENT: dict[str, y.Parser] = {
    "when": condition,
    "alpha": y.non_negative,
    "description": y.text,
}
