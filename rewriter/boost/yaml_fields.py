"""The parsing machinery behind profiles/*.yaml: YAML nodes -> typed values, errors at
file:line:column.

Validation works on YAML's node tree (`yaml.compose`) rather than on plain dicts, so every
error names file, line and column, and an unknown key comes with the closest valid one. Each
mapping is checked against a table of key -> parser (`section`). A parser raises
`BoostProfileError` through `fail`; `section` and `collect` record the error and go on, so one
run reports every problem of a file, not just the first (`affinity boost check`).

Parsers also record references that can only be checked against a live catalog (fields of
the mapping, pinned item ids) and names defined elsewhere in the file (segments) in the
shared lists of `Ctx`; boost/profile.py and boost/checker.py check them afterwards.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, NoReturn, Protocol, TypeVar

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

T = TypeVar("T")


class BoostProfileError(ValueError):
    """A boost profile that cannot be used; the message starts with `file:line:column:`.

    `errors` holds every problem found in the file (one or more), ordered by position; the
    message lists them one per line, and source/line/column are those of the first."""

    def __init__(
        self,
        source: str,
        line: int,
        column: int,
        message: str,
        errors: Sequence[BoostProfileError] = (),
    ) -> None:
        text = "\n".join(str(e) for e in errors) if errors else f"{source}:{line}:{column}: "
        super().__init__(text if errors else text + message)
        self.source = source
        self.line = line
        self.column = column
        self.message = message
        self.errors: tuple[BoostProfileError, ...] = tuple(errors) or (self,)

    @classmethod
    def many(cls, errors: Sequence[BoostProfileError]) -> BoostProfileError:
        """One error standing for all of `errors` (flattened, ordered by line and column)."""
        flat = sorted({e2 for e in errors for e2 in e.errors}, key=_position)
        if len(flat) == 1:
            return flat[0]
        first = flat[0]
        return cls(first.source, first.line, first.column, first.message, flat)


def _position(error: BoostProfileError) -> tuple[int, int, str]:
    return (error.line, error.column, error.message)


RefKind = Literal["field", "item"]
# What a field reference needs from the catalog mapping: a keyword field (doc values read
# by the Painless script), a date field (created_within) or any searchable field (filters).
FieldNeed = Literal["keyword", "date", "any"]


@dataclass(frozen=True)
class Ref:
    """A name the file uses that only the catalog can confirm: a field, or a pinned item."""

    kind: RefKind
    name: str
    line: int
    column: int
    path: str
    need: FieldNeed = "any"


@dataclass(frozen=True)
class NameRef:
    """A use of a name defined elsewhere in the file (a segment), checked after parsing."""

    name: str
    line: int
    column: int
    path: str


@dataclass(frozen=True)
class Ctx:
    """Where a parser is: the file, the dotted key path, and the shared result lists."""

    source: str
    path: str = ""  # dotted key path of the value being parsed, e.g. "cold_start.strategy"
    constructor: SafeConstructor = field(default_factory=SafeConstructor)
    errors: list[BoostProfileError] = field(default_factory=list)
    refs: list[Ref] = field(default_factory=list)
    segment_refs: list[NameRef] = field(default_factory=list)


Parser = Callable[[Node, Ctx], object]


class Invalid(Exception):
    """A value whose problems are already recorded in ctx.errors: skip it, report nothing."""


def check(ctx: Ctx, before: int) -> None:
    """Raise Invalid if errors were recorded since `before` (= len(ctx.errors) earlier)."""
    if len(ctx.errors) > before:
        raise Invalid


class _Missing:
    """The value of a key whose parse failed (the error is recorded)."""


MISSING = _Missing()


def compose(raw: bytes, source: str) -> Node | None:
    """The YAML node tree, or a BoostProfileError at the syntax error."""
    try:
        return yaml.compose(raw, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise BoostProfileError(source, line, column, f"invalid YAML: {exc.problem}") from exc
    except yaml.YAMLError as exc:
        raise BoostProfileError(source, 1, 1, f"invalid YAML: {exc}") from exc


def fail(ctx: Ctx, node: Node, message: str) -> NoReturn:
    mark = node.start_mark
    where = f"{ctx.path}: " if ctx.path else ""
    raise BoostProfileError(ctx.source, mark.line + 1, mark.column + 1, where + message)


def at(ctx: Ctx, key: str | int) -> Ctx:
    """The context one level down: key of a mapping, or index of a list."""
    if isinstance(key, int):
        return replace(ctx, path=f"{ctx.path}[{key}]")
    return replace(ctx, path=f"{ctx.path}.{key}" if ctx.path else key)


def collect(ctx: Ctx, parse: Callable[[], T]) -> T | _Missing:
    """Run one parse; on error record it in ctx.errors and return MISSING."""
    try:
        return parse()
    except BoostProfileError as exc:
        ctx.errors.append(exc)
        return MISSING
    except Invalid:
        return MISSING


def ref(ctx: Ctx, node: Node, kind: RefKind, name: str, need: FieldNeed = "any") -> None:
    mark = node.start_mark
    ctx.refs.append(Ref(kind, name, mark.line + 1, mark.column + 1, ctx.path, need))


def section(node: Node, ctx: Ctx, table: Mapping[str, Parser], what: str) -> dict[str, object]:
    """Check a mapping against a key -> parser table and parse each value. Unknown keys and
    bad values are recorded in ctx.errors and left out of the result."""
    values: dict[str, object] = {}
    for key, key_node, value_node in pairs(node, ctx, what):
        if key not in table:
            ctx.errors.append(
                error_at(ctx, key_node, unknown_key(key, table, "" if ctx.path else f" in {what}"))
            )
            continue
        value = collect(ctx, lambda k=key, v=value_node: table[k](v, at(ctx, k)))
        if value is not MISSING:
            values[key] = value
    return values


def error_at(ctx: Ctx, node: Node, message: str) -> BoostProfileError:
    try:
        fail(ctx, node, message)
    except BoostProfileError as exc:
        return exc


def pairs(node: Node, ctx: Ctx, what: str) -> list[tuple[str, Node, Node]]:
    """The (key, key node, value node) triples of a mapping with unique string keys."""
    if not isinstance(node, MappingNode):
        fail(ctx, node, f"{what} must be a mapping (key: value lines)")
    seen: set[str] = set()
    out: list[tuple[str, Node, Node]] = []
    for key_node, value_node in node.value:
        key = scalar(key_node, ctx)
        if isinstance(key, int | float) and not isinstance(key, bool):
            key = str(key_node.value)  # ids and the like: `0356: 1` means the text "0356"
        if not isinstance(key, str):
            fail(ctx, key_node, f"keys in {what} must be strings, got {key!r}")
        if key in seen:
            fail(ctx, key_node, f"duplicate key {key!r} in {what}")
        seen.add(key)
        out.append((key, key_node, value_node))
    return out


def items(node: Node, ctx: Ctx, what: str) -> list[Node]:
    """The nodes of a YAML list."""
    if not isinstance(node, SequenceNode):
        fail(ctx, node, f"{what} must be a list (lines starting with `- `)")
    return list(node.value)


class _HasId(Protocol):
    @property
    def id(self) -> str: ...


Identified = TypeVar("Identified", bound=_HasId)


def unique_items(
    node: Node,
    ctx: Ctx,
    what: str,
    label: str,
    parse: Callable[[Node, Ctx], Identified],
    seen: dict[str, int] | None = None,
) -> list[Identified]:
    """The items of the YAML list `what`, each parsed by `parse` (its errors collected), each
    with an `id` unique among them, and among `seen` when several lists share one: a repeated
    id is an error ("duplicate `label` id ...") naming the line of its first use."""
    seen = {} if seen is None else seen
    out: list[Identified] = []
    for i, item in enumerate(items(node, ctx, what)):
        where = at(ctx, i)
        parsed = collect(where, lambda n=item, c=where: parse(n, c))
        if isinstance(parsed, _Missing):
            continue
        if parsed.id in seen:
            message = f"duplicate {label} id {parsed.id!r} (first used on line {seen[parsed.id]})"
            ctx.errors.append(error_at(where, item, message))
            continue
        seen[parsed.id] = item.start_mark.line + 1
        out.append(parsed)
    return out


def unknown_key(key: str, table: Mapping[str, object], where: str) -> str:
    close = difflib.get_close_matches(key, list(table), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown key {key!r}{where}{hint} (valid keys: {', '.join(sorted(table))})"


def suggest(name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def scalar(node: Node, ctx: Ctx) -> object:
    if not isinstance(node, ScalarNode):
        fail(ctx, node, "expected a single value here, not a list or mapping")
    return ctx.constructor.construct_object(node)


def plain(node: Node, ctx: Ctx) -> object:
    """Any YAML value as plain Python data (for query DSL given verbatim)."""
    return ctx.constructor.construct_document(node)


def number(node: Node, ctx: Ctx) -> float:
    value = scalar(node, ctx)
    if isinstance(value, bool) or not isinstance(value, int | float):
        fail(ctx, node, f"expected a number, got {value!r}")
    if not math.isfinite(value):
        fail(ctx, node, f"expected a finite number, got {value!r}")
    return float(value)


def non_negative(node: Node, ctx: Ctx) -> float:
    value = number(node, ctx)
    if value < 0:
        fail(ctx, node, f"must be >= 0, got {value:g}")
    return value


def positive(node: Node, ctx: Ctx) -> float:
    value = number(node, ctx)
    if value <= 0:
        fail(ctx, node, f"must be > 0, got {value:g}")
    return value


def number_between(low: float, high: float, *, open_low: bool = False) -> Parser:
    """A number in [low, high] ((low, high] with open_low)."""

    def parse(node: Node, ctx: Ctx) -> float:
        value = number(node, ctx)
        if value > high or value < low or (open_low and value == low):
            bracket = "(" if open_low else "["
            fail(ctx, node, f"must be in {bracket}{low:g}, {high:g}], got {value:g}")
        return value

    return parse


def int_between(low: int, high: int) -> Parser:
    def parse(node: Node, ctx: Ctx) -> int:
        value = scalar(node, ctx)
        if isinstance(value, bool) or not isinstance(value, int):
            fail(ctx, node, f"expected a whole number, got {value!r}")
        if not low <= value <= high:
            fail(ctx, node, f"must be between {low} and {high}, got {value}")
        return value

    return parse


def choice(options: tuple[str, ...]) -> Parser:
    def parse(node: Node, ctx: Ctx) -> str:
        value = scalar(node, ctx)
        if value not in options:
            hint = suggest(str(value), options)
            fail(ctx, node, f"expected one of {', '.join(options)}, got {value!r}{hint}")
        return str(value)

    return parse


def text(node: Node, ctx: Ctx) -> str:
    """A non-empty string (numbers are taken as their text: ids like 356 or 0042 quoted)."""
    value = scalar(node, ctx)
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = node.value if isinstance(node, ScalarNode) else str(value)
    if not isinstance(value, str) or not value.strip():
        fail(ctx, node, f"expected a non-empty text, got {value!r}")
    return value


def boolean(node: Node, ctx: Ctx) -> bool:
    value = scalar(node, ctx)
    if not isinstance(value, bool):
        fail(ctx, node, f"expected true or false, got {value!r}")
    return value


def texts(node: Node, ctx: Ctx) -> tuple[str, ...]:
    """One text or a non-empty list of texts."""
    if isinstance(node, ScalarNode):
        return (text(node, ctx),)
    nodes = items(node, ctx, "this value")
    if not nodes:
        fail(ctx, node, "the list must not be empty")
    return tuple(text(n, at(ctx, i)) for i, n in enumerate(nodes))
