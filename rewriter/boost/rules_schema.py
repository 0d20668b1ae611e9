"""Parser for the `rules:` section of profiles/*.yaml (see profiles/retail.yaml for every
key, documented inline); the `segments:` section is boost/segments_schema.py.

Each parser turns YAML nodes into the frozen types of boost/rules.py and reports problems through
yaml_fields (file:line:column, closest valid key). Names defined elsewhere in the file
(segments) and names only the catalog knows (fields, item ids) are recorded in the context
and checked afterwards.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from itertools import combinations

from yaml.nodes import MappingNode, Node, ScalarNode

from rewriter.boost import dsl_eval
from rewriter.boost import yaml_fields as y
from rewriter.boost.rules import (
    ACTIONS,
    CREATED_FIELD,
    Action,
    Boost,
    Bury,
    Hide,
    Pin,
    PinItem,
    QueryCondition,
    Rule,
    Scalar,
    Schedule,
    Where,
)
from rewriter.boost.segments_schema import ID, ID_HELP, name_ref

MAX_PIN_POSITION = 1000
MAX_BOOST_WEIGHT = 1000.0
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


# --- rules -----------------------------------------------------------------------------------


def parse_rules(node: Node, ctx: y.Ctx) -> tuple[Rule, ...]:
    rules = y.unique_items(node, ctx, "rules", "rule", _rule)
    ctx.errors.extend(_overlapping_pins(rules, ctx))
    return tuple(rules)


def _rule(node: Node, ctx: y.Ctx) -> Rule:
    before = len(ctx.errors)
    values = y.section(node, ctx, _RULE, "a rule")
    actions = [key for key in ACTIONS if key in values]
    if len(actions) > 1:
        y.fail(ctx, node, f"one action per rule, got {' and '.join(actions)}; split the rule")
    if "segment" in values and "segments" in values:
        y.fail(ctx, node, "give either `segment` or `segments`, not both")
    y.check(ctx, before)
    if "id" not in values:
        y.fail(ctx, node, "missing required key 'id' (a short unique name, e.g. promote-new)")
    if not actions:
        y.fail(ctx, node, "a rule needs one action: boost, bury, hide or pin")
    segments = values.pop("segment", None) or values.pop("segments", ())
    action: Action = values.pop(actions[0])  # type: ignore[assignment]
    return Rule(action=action, segments=segments, **values)  # type: ignore[arg-type]


def _rule_id(node: Node, ctx: y.Ctx) -> str:
    value = y.text(node, ctx)
    if not ID.match(value):
        y.fail(ctx, node, f"rule id {value!r}: {ID_HELP}")
    return value


def _segment_names(node: Node, ctx: y.Ctx) -> tuple[str, ...]:
    names = y.texts(node, ctx)
    nodes = [node] if isinstance(node, ScalarNode) else list(node.value)
    for name, name_node in zip(names, nodes, strict=True):
        name_ref(ctx, name_node, name)
    return names


def _query(node: Node, ctx: y.Ctx) -> QueryCondition:
    if not isinstance(node, MappingNode):
        return QueryCondition(y.texts(node, ctx))
    before = len(ctx.errors)
    values = y.section(node, ctx, _QUERY, "query")
    y.check(ctx, before)
    if "terms" not in values:
        y.fail(ctx, node, "missing required key 'terms' (the words to look for)")
    return QueryCondition(**values)  # type: ignore[arg-type]


_QUERY: dict[str, y.Parser] = {"terms": y.texts, "match": y.choice(("contains", "exact"))}
_DATE_HELP = "expected a date like 2025-12-01 or 2025-12-01T08:00:00Z (UTC)"


def _instant(node: Node, ctx: y.Ctx) -> float:
    """A date (midnight UTC) or date-time (naive = UTC) as epoch seconds."""
    value = y.scalar(node, ctx)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            y.fail(ctx, node, f"{_DATE_HELP}, got {value!r}")
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp()
    y.fail(ctx, node, f"{_DATE_HELP}, got {value!r}")


def _schedule(node: Node, ctx: y.Ctx) -> Schedule:
    before = len(ctx.errors)
    values = y.section(node, ctx, {"start": _instant, "end": _instant}, "schedule")
    y.check(ctx, before)
    if not values:
        y.fail(ctx, node, "give start, end or both")
    start, end = values.get("start"), values.get("end")
    if start is not None and end is not None and end <= start:  # type: ignore[operator]
        end_node = next(v for k, _, v in y.pairs(node, ctx, "schedule") if k == "end")
        y.fail(y.at(ctx, "end"), end_node, _ends_before(start, end))  # type: ignore[arg-type]
    return Schedule(**values)  # type: ignore[arg-type]


def _ends_before(start: float, end: float) -> str:
    def day(t: float) -> str:
        return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")

    return f"the schedule ends ({day(end)}) before it starts ({day(start)}); swap start and end?"


_RULE: dict[str, y.Parser] = {
    "id": _rule_id,
    "description": y.text,
    "enabled": y.boolean,
    "segment": _segment_names,
    "segments": _segment_names,
    "query": _query,
    "schedule": _schedule,
    "boost": lambda n, c: _filtered(n, c, "boost"),
    "bury": lambda n, c: _filtered(n, c, "bury"),
    "hide": lambda n, c: _filtered(n, c, "hide"),
    "pin": lambda n, c: _pin(n, c),
}

# --- actions ---------------------------------------------------------------------------------


def _field_values(field_name: str) -> y.Parser:
    def parse(node: Node, ctx: y.Ctx) -> tuple[str, tuple[Scalar, ...]]:
        y.ref(ctx, node, "field", field_name)
        return field_name, _scalars(node, ctx)

    return parse


def _scalars(node: Node, ctx: y.Ctx) -> tuple[Scalar, ...]:
    nodes = [node] if isinstance(node, ScalarNode) else y.items(node, ctx, "values")
    if not nodes:
        y.fail(ctx, node, "the list of values must not be empty")
    out: list[Scalar] = []
    for i, n in enumerate(nodes):
        value = y.scalar(n, y.at(ctx, i))
        if isinstance(value, int) and not isinstance(value, bool) and str(value) != n.value:
            value = n.value  # 0042 stays the text "0042" (YAML would read it as octal)
        if not isinstance(value, str | int | float | bool):
            y.fail(ctx, n, f"expected a text, number or true/false, got {value!r}")
        out.append(value)
    return tuple(out)


def _terms(node: Node, ctx: y.Ctx) -> tuple[tuple[str, tuple[Scalar, ...]], ...]:
    pairs = y.pairs(node, ctx, "terms")
    if not pairs:
        y.fail(ctx, node, "give at least one field: value (e.g. `terms: {in_stock: false}`)")
    parsed: list[tuple[str, tuple[Scalar, ...]]] = []
    for name, key_node, value in pairs:
        y.ref(y.at(ctx, name), key_node, "field", name)  # the field name is the key
        parsed.append((name, _scalars(value, y.at(ctx, name))))
    return tuple(parsed)


def duration_seconds(text: object) -> float | None:
    """`30d`, `12h`, `90m`, `2w`, `45s` in seconds; None for anything else."""
    found = _DURATION.match(text.strip()) if isinstance(text, str) else None
    return None if found is None else float(found.group(1)) * _UNIT_S[found.group(2)]


def _duration(node: Node, ctx: y.Ctx) -> float:
    value = y.scalar(node, ctx)
    seconds = duration_seconds(value)
    if seconds is None:
        y.fail(ctx, node, f"expected a duration like 30d (units s m h d w), got {value!r}")
    y.ref(ctx, node, "field", CREATED_FIELD, "date")
    return seconds


def _dsl(node: Node, ctx: y.Ctx) -> dict[str, object]:
    value = y.plain(node, ctx)
    problems = dsl_eval.problems(value, ctx.path)
    if problems:
        y.fail(ctx, node, "; ".join(p.removeprefix(f"{ctx.path}: ") for p in problems))
    for name in dsl_eval.fields(value):
        y.ref(ctx, node, "field", name)
    return value  # type: ignore[return-value]


_WHERE: dict[str, y.Parser] = {
    "brand": _field_values("brand"),
    "category": _field_values("category"),
    "terms": _terms,
    "created_within": _duration,
    "filter": _dsl,
}
_EXTRA: dict[str, dict[str, y.Parser]] = {
    "boost": {"weight": y.number_between(0.0, MAX_BOOST_WEIGHT, open_low=True)},
    "bury": {"factor": y.number_between(0.0, 1.0, open_low=True)},
    "hide": {},
}


def _filtered(node: Node, ctx: y.Ctx, kind: str) -> Action:
    extra = _EXTRA[kind]
    before = len(ctx.errors)
    values = y.section(node, ctx, {**_WHERE, **extra}, kind)
    y.check(ctx, before)
    if not any(k in values for k in _WHERE):
        y.fail(ctx, node, f"{kind} needs a filter: one of {', '.join(_WHERE)}")
    for key in extra:
        if key not in values:
            y.fail(ctx, node, f"missing required key {key!r} for {kind}")
    terms = [values[k] for k in ("brand", "category") if k in values]
    terms += list(values.get("terms", ()))  # type: ignore[call-overload]
    where = Where(
        terms=tuple(terms),  # type: ignore[arg-type]
        created_within_s=values.get("created_within"),  # type: ignore[arg-type]
        dsl=values.get("filter"),  # type: ignore[arg-type]
    )
    if kind == "boost":
        return Boost(where, values["weight"])  # type: ignore[arg-type]
    if kind == "bury":
        return Bury(where, values["factor"])  # type: ignore[arg-type]
    return Hide(where)


def _pin(node: Node, ctx: y.Ctx) -> Pin:
    nodes = y.items(node, ctx, "pin")
    if not nodes:
        y.fail(ctx, node, "pin needs at least one `{item: ID, position: N}`")
    pins: list[PinItem] = []
    before = len(ctx.errors)
    for i, item_node in enumerate(nodes):
        where = y.at(ctx, i)
        pin = y.collect(ctx, lambda n=item_node, c=where: _pin_item(n, c, pins))
        if isinstance(pin, PinItem):
            pins.append(pin)
    y.check(ctx, before)
    return Pin(tuple(pins))


def _pin_item(node: Node, ctx: y.Ctx, earlier: list[PinItem]) -> PinItem:
    before = len(ctx.errors)
    values = y.section(node, ctx, _PIN_ITEM, "a pin")
    y.check(ctx, before)
    if set(values) != {"item", "position"}:
        y.fail(ctx, node, "a pin needs `item` (an id) and `position` (1, 2, ...)")
    mark = node.start_mark
    item, position = str(values["item"]), int(values["position"])  # type: ignore[call-overload]
    pin = PinItem(item, position, mark.line + 1, mark.column + 1)
    for other in earlier:
        if other.position == pin.position or other.item == pin.item:
            same = "position" if other.position == pin.position else "item"
            message = f"overlapping pins: this {same} is already pinned on line {other.line} "
            y.fail(ctx, node, message + f"({other.item} at position {other.position})")
    return pin


def _item_id(node: Node, ctx: y.Ctx) -> str:
    item = y.text(node, ctx)
    y.ref(ctx, node, "item", item)
    return item


_PIN_ITEM: dict[str, y.Parser] = {
    "item": _item_id,
    "position": y.int_between(1, MAX_PIN_POSITION),
}


def _overlapping_pins(rules: list[Rule], ctx: y.Ctx) -> list[y.BoostProfileError]:
    """Pins of two rules that apply under the same conditions must not share a position."""
    errors: list[y.BoostProfileError] = []
    pinning = [r for r in rules if isinstance(r.action, Pin) and r.enabled]
    for first, second in combinations(pinning, 2):
        if not _same_conditions(first, second):
            continue
        taken = {p.position: p for p in first.action.items}  # type: ignore[union-attr]
        for pin in second.action.items:  # type: ignore[union-attr]
            if pin.position in taken:
                other = taken[pin.position]
                message = (
                    f"rules: overlapping pins: position {pin.position} is pinned by rule "
                    f"{second.id!r} and by rule {first.id!r} (line {other.line}) under the "
                    "same segments, query and schedule, so the first rule always wins; change "
                    "a position, or give the rules different conditions"
                )
                errors.append(y.BoostProfileError(ctx.source, pin.line, pin.column, message))
    return errors


def _same_conditions(a: Rule, b: Rule) -> bool:
    if set(a.segments) != set(b.segments) or a.query != b.query:
        return False
    start = max(a.schedule.start or float("-inf"), b.schedule.start or float("-inf"))
    end = min(a.schedule.end or float("inf"), b.schedule.end or float("inf"))
    return start < end
