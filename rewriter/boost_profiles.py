"""Boost profiles: profiles/*.yaml loaded and validated into frozen dataclasses.

A boost profile is what a merchandiser tunes: how strongly to personalize (alpha, k), which
keyword attributes count and how much (attributes), how events weigh and decay
(event_weights, half_life_days, top_k), which engine shape to use (rescore over the top
`window`, or function_score over the whole match set) and what to do for users without a
profile (cold_start). profiles/default.yaml documents every key.

Validation works on YAML's node tree (`yaml.compose`) rather than on plain dicts, so every
error names file, line and column, and an unknown key comes with the closest valid one.
Each mapping is checked against a table of key -> parser (`_TOP`, `_COLD_START`): adding
segments and rules later means adding a dataclass, a parser and a table entry, nothing else.
"""

from __future__ import annotations

import difflib
import hashlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, NoReturn

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode

Shape = Literal["rescore", "function_score"]
SHAPES: tuple[Shape, ...] = ("rescore", "function_score")
COLD_START_STRATEGIES = ("popularity", "none")
# field_value_factor modifiers the reference scorer mirrors (log1p is log10(1 + x) there).
POPULARITY_MODIFIERS = ("none", "log1p", "sqrt")
# OpenSearch refuses a rescore window above index.max_rescore_window (default 10000).
MAX_WINDOW = 10_000
MAX_TOP_K = 10_000

DEFAULT_ATTRIBUTES: Mapping[str, float] = {"brand": 1.0, "category": 1.0}
DEFAULT_EVENT_WEIGHTS: Mapping[str, float] = {
    "view": 1.0,
    "click": 2.0,
    "add_to_cart": 5.0,
    "purchase": 10.0,
}


class BoostProfileError(ValueError):
    """A boost profile that cannot be used; the message starts with `file:line:column:`."""

    def __init__(self, source: str, line: int, column: int, message: str) -> None:
        super().__init__(f"{source}:{line}:{column}: {message}")
        self.source = source
        self.line = line
        self.column = column


@dataclass(frozen=True)
class ColdStart:
    """What users without a usable profile get.

    strategy "popularity" adds popularity_weight · modifier(popularity) (the catalog's numeric
    `popularity` field, 0 where missing) to relevance; "none" leaves the query generic.
    """

    strategy: Literal["popularity", "none"] = "popularity"
    popularity_weight: float = 1.0
    modifier: Literal["none", "log1p", "sqrt"] = "log1p"


@dataclass(frozen=True)
class BoostProfile:
    """One validated boost profile. Mappings are plain dicts: treat them as read-only."""

    name: str
    version: str = "unversioned"
    alpha: float = 1.0
    shape: Shape = "rescore"
    window: int = 100
    attributes: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_ATTRIBUTES))
    event_weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_EVENT_WEIGHTS))
    half_life_days: float = 30.0
    top_k: int = 50
    k: float = 5.0
    cold_start: ColdStart = field(default_factory=ColdStart)
    source: str = "<string>"


def content_version(data: bytes) -> str:
    """The profile's version: first 12 hex digits of sha256 over the file's bytes."""
    return hashlib.sha256(data).hexdigest()[:12]


def load_boost_profile(path: str | Path) -> BoostProfile:
    """Read and validate one profiles/*.yaml file."""
    p = Path(path)
    return parse_boost_profile(p.read_bytes(), source=str(p))


def load_boost_profiles(directory: str | Path) -> dict[str, BoostProfile]:
    """Every *.yaml in `directory`, by profile name; two files with one name is an error."""
    profiles: dict[str, BoostProfile] = {}
    for path in sorted(Path(directory).glob("*.yaml")):
        profile = load_boost_profile(path)
        if profile.name in profiles:
            first = profiles[profile.name].source
            raise BoostProfileError(
                str(path), 1, 1, f"profile name {profile.name!r} is already used by {first}"
            )
        profiles[profile.name] = profile
    return profiles


def parse_boost_profile(data: str | bytes, source: str = "<string>") -> BoostProfile:
    """Validate YAML text into a BoostProfile; `source` names the file in error messages."""
    raw = data.encode() if isinstance(data, str) else data
    root = _compose(raw, source)
    ctx = _Ctx(source)
    if root is None:
        raise BoostProfileError(source, 1, 1, "empty boost profile; it needs at least `name:`")
    values = _section(root, ctx, _TOP, "boost profile")
    if "name" not in values:
        _fail(ctx, root, "missing required key 'name' (add `name: <profile name>`)")
    version = content_version(raw)
    return BoostProfile(**values, version=version, source=source)  # type: ignore[arg-type]


# --- parsing machinery ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Ctx:
    source: str
    path: str = ""  # dotted key path of the value being parsed, e.g. "cold_start.strategy"
    constructor: SafeConstructor = field(default_factory=SafeConstructor)


_Parser = Callable[[Node, _Ctx], object]


def _compose(raw: bytes, source: str) -> Node | None:
    try:
        return yaml.compose(raw, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise BoostProfileError(source, line, column, f"invalid YAML: {exc.problem}") from exc
    except yaml.YAMLError as exc:
        raise BoostProfileError(source, 1, 1, f"invalid YAML: {exc}") from exc


def _fail(ctx: _Ctx, node: Node, message: str) -> NoReturn:
    mark = node.start_mark
    where = f"{ctx.path}: " if ctx.path else ""
    raise BoostProfileError(ctx.source, mark.line + 1, mark.column + 1, where + message)


def _at(ctx: _Ctx, key: str) -> _Ctx:
    return replace(ctx, path=f"{ctx.path}.{key}" if ctx.path else key)


def _section(node: Node, ctx: _Ctx, table: Mapping[str, _Parser], what: str) -> dict[str, object]:
    """Check a mapping against a key -> parser table and parse each value."""
    pairs = _pairs(node, ctx, what)
    values: dict[str, object] = {}
    for key, key_node, value_node in pairs:
        if key not in table:
            _fail(ctx, key_node, _unknown_key(key, table, "" if ctx.path else f" in {what}"))
        values[key] = table[key](value_node, _at(ctx, key))
    return values


def _pairs(node: Node, ctx: _Ctx, what: str) -> list[tuple[str, Node, Node]]:
    """The (key, key node, value node) triples of a mapping with unique string keys."""
    if not isinstance(node, MappingNode):
        _fail(ctx, node, f"{what} must be a mapping (key: value lines)")
    seen: set[str] = set()
    pairs: list[tuple[str, Node, Node]] = []
    for key_node, value_node in node.value:
        key = _scalar(key_node, ctx)
        if not isinstance(key, str):
            _fail(ctx, key_node, f"keys in {what} must be strings, got {key!r}")
        if key in seen:
            _fail(ctx, key_node, f"duplicate key {key!r} in {what}")
        seen.add(key)
        pairs.append((key, key_node, value_node))
    return pairs


def _unknown_key(key: str, table: Mapping[str, _Parser], where: str) -> str:
    close = difflib.get_close_matches(key, list(table), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown key {key!r}{where}{hint} (valid keys: {', '.join(sorted(table))})"


def _scalar(node: Node, ctx: _Ctx) -> object:
    if not isinstance(node, ScalarNode):
        _fail(ctx, node, "expected a single value here, not a list or mapping")
    return ctx.constructor.construct_object(node)


def _number(node: Node, ctx: _Ctx) -> float:
    value = _scalar(node, ctx)
    if isinstance(value, bool) or not isinstance(value, int | float):
        _fail(ctx, node, f"expected a number, got {value!r}")
    if not math.isfinite(value):
        _fail(ctx, node, f"expected a finite number, got {value!r}")
    return float(value)


def _non_negative(node: Node, ctx: _Ctx) -> float:
    value = _number(node, ctx)
    if value < 0:
        _fail(ctx, node, f"must be >= 0, got {value:g}")
    return value


def _positive(node: Node, ctx: _Ctx) -> float:
    value = _number(node, ctx)
    if value <= 0:
        _fail(ctx, node, f"must be > 0, got {value:g}")
    return value


def _int_between(low: int, high: int) -> _Parser:
    def parse(node: Node, ctx: _Ctx) -> int:
        value = _scalar(node, ctx)
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(ctx, node, f"expected a whole number, got {value!r}")
        if not low <= value <= high:
            _fail(ctx, node, f"must be between {low} and {high}, got {value}")
        return value

    return parse


def _choice(options: tuple[str, ...]) -> _Parser:
    def parse(node: Node, ctx: _Ctx) -> str:
        value = _scalar(node, ctx)
        if value not in options:
            close = difflib.get_close_matches(str(value), options, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            _fail(ctx, node, f"expected one of {', '.join(options)}, got {value!r}{hint}")
        return str(value)

    return parse


def _name(node: Node, ctx: _Ctx) -> str:
    value = _scalar(node, ctx)
    if not isinstance(value, str) or not value.strip():
        _fail(ctx, node, f"name must be a non-empty string, got {value!r}")
    return value


def _weights(what: str) -> _Parser:
    """A non-empty mapping of name -> weight >= 0 (attributes, event types)."""

    def parse(node: Node, ctx: _Ctx) -> dict[str, float]:
        pairs = _pairs(node, ctx, f"{what} weights")
        if not pairs:
            _fail(ctx, node, f"{what} weights must not be empty")
        return {key: _non_negative(value, _at(ctx, key)) for key, _, value in pairs}

    return parse


def _cold_start(node: Node, ctx: _Ctx) -> ColdStart:
    return ColdStart(**_section(node, ctx, _COLD_START, "cold_start"))  # type: ignore[arg-type]


_COLD_START: dict[str, _Parser] = {
    "strategy": _choice(COLD_START_STRATEGIES),
    "popularity_weight": _non_negative,
    "modifier": _choice(POPULARITY_MODIFIERS),
}

_TOP: dict[str, _Parser] = {
    "name": _name,
    "alpha": _non_negative,
    "shape": _choice(SHAPES),
    "window": _int_between(1, MAX_WINDOW),
    "attributes": _weights("attribute"),
    "event_weights": _weights("event type"),
    "half_life_days": _positive,
    "top_k": _int_between(1, MAX_TOP_K),
    "k": _non_negative,
    "cold_start": _cold_start,
}

# The keys a profile may set, for docs and tests (profiles/default.yaml documents each one).
PROFILE_KEYS: tuple[str, ...] = tuple(_TOP)
COLD_START_KEYS: tuple[str, ...] = tuple(_COLD_START)
