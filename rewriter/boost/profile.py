"""Boost profiles: profiles/*.yaml loaded and validated into frozen dataclasses.

A boost profile is what a merchandiser tunes: how strongly to personalize (alpha, k), which
keyword attributes count and how much (attributes), how events weigh and decay
(event_weights, half_life_days, top_k), which engine shape to use (rescore over the top
`window`, or function_score over the whole match set), what to do for users without a
profile (cold_start), who is who (segments, with an optional alpha each) and the
merchandising rules (boost, bury, hide, pin). profiles/default.yaml documents every
top-level key; profiles/retail.yaml documents segments and rules.

Parsing (boost/yaml_fields.py, boost/rules_schema.py) works on YAML's node tree, so every
error names file, line and column, and one run reports every problem of a file. The version of a
profile is a content hash of its bytes: responses name it, so a ranking can be traced to the
exact rules that produced it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from yaml.nodes import Node

from rewriter.boost import yaml_fields as y
from rewriter.boost.diversity import Diversity, parse_diversity
from rewriter.boost.facets import FacetSettings
from rewriter.boost.facets_schema import parse_facets
from rewriter.boost.horizons import (
    ItemMemory,
    SessionIntent,
    parse_item_memory,
    parse_session,
    session_problem,
)
from rewriter.boost.placements import Slot
from rewriter.boost.placements_schema import parse_placements
from rewriter.boost.rules import Rule
from rewriter.boost.rules_schema import parse_rules
from rewriter.boost.segments import Segment, bind_user_lists, references
from rewriter.boost.segments_schema import parse_segments
from rewriter.boost.yaml_fields import BoostProfileError, Ref

__all__ = [
    "CLIENT_ATTRIBUTES_KEYS",
    "COLD_START_KEYS",
    "DEFAULT_BOOST_PROFILE",
    "EVENT_SOURCES",
    "PROFILE_KEYS",
    "SHAPES",
    "BoostProfile",
    "BoostProfileError",
    "ClientAttributes",
    "ColdStart",
    "Shape",
    "bind_secret",
    "content_version",
    "default_boost_name",
    "load_boost_profile",
    "load_boost_profiles",
    "load_directory",
    "parse_boost_profile",
]

Shape = Literal["rescore", "function_score"]
SHAPES: tuple[Shape, ...] = ("rescore", "function_score")
COLD_START_STRATEGIES = ("popularity", "none")
# field_value_factor modifiers the reference scorer mirrors (log1p is log10(1 + x) there).
POPULARITY_MODIFIERS = ("none", "log1p", "sqrt")
# OpenSearch refuses a rescore window above index.max_rescore_window (default 10000).
MAX_WINDOW = 10_000
MAX_TOP_K = 10_000
MAX_ALPHA = 1000.0

DEFAULT_BOOST_PROFILE = "default"
"""The boost profile used where none is named (see `default_boost_name`)."""

DEFAULT_ATTRIBUTES: Mapping[str, float] = {"brand": 1.0, "category": 1.0}
DEFAULT_HALF_LIFE_DAYS = 30.0
DEFAULT_TOP_K = 50
DEFAULT_EVENT_WEIGHTS: Mapping[str, float] = {
    "view": 1.0,
    "click": 2.0,
    "add_to_cart": 5.0,
    "purchase": 10.0,
    "facet_select": 3.0,
}


@dataclass(frozen=True)
class ColdStart:
    """What users without a usable profile get.

    strategy "popularity" adds popularity_weight · modifier(popularity) (the catalog's numeric
    `popularity` field, 0 where missing) to relevance; "none" leaves the query generic.
    """

    strategy: Literal["popularity", "none"] = "popularity"
    popularity_weight: float = 1.0
    modifier: Literal["none", "log1p", "sqrt"] = "log1p"


EVENT_SOURCES: tuple[str, ...] = ("api", "jsonl", "csv", "segment", "ubi", "movielens")
"""How events arrive: `api` is `POST /events`, the others `affinity ingest events --format`."""


@dataclass(frozen=True)
class ClientAttributes:
    """Which event sources may send the attribute values (brand, category, ...) that are
    folded for an item not in the catalog. None by default: attributes come from the catalog
    only, or any client could write any brand into a profile. For an item in the catalog its
    values are used whatever the event says."""

    sources: tuple[str, ...] = ()

    def allows(self, source: str) -> bool:
        return source in self.sources


@dataclass(frozen=True)
class BoostProfile:
    """One validated boost profile. Mappings are plain dicts: treat them as read-only.

    `refs` lists the catalog fields and item ids the file uses, with their positions, for
    `affinity boost check` to confirm against the catalog mapping (not part of equality)."""

    name: str
    version: str = "unversioned"
    alpha: float = 1.0
    shape: Shape = "rescore"
    window: int = 100
    attributes: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_ATTRIBUTES))
    event_weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_EVENT_WEIGHTS))
    half_life_days: float = DEFAULT_HALF_LIFE_DAYS
    top_k: int = DEFAULT_TOP_K
    k: float = 5.0
    cold_start: ColdStart = field(default_factory=ColdStart)
    client_attributes: ClientAttributes = field(default_factory=ClientAttributes)
    session: SessionIntent = field(default_factory=SessionIntent)
    item_memory: ItemMemory = field(default_factory=ItemMemory)
    segments: tuple[Segment, ...] = ()
    rules: tuple[Rule, ...] = ()
    facets: FacetSettings = field(default_factory=FacetSettings)
    placements: tuple[Slot, ...] = ()  # boost/placements.py
    diversity: Diversity = field(default_factory=Diversity)  # boost/diversity.py
    source: str = "<string>"
    refs: tuple[Ref, ...] = field(default=(), compare=False, repr=False)

    def rule(self, rule_id: str) -> Rule | None:
        return next((r for r in self.rules if r.id == rule_id), None)


def default_boost_name(loaded: Collection[str]) -> str:
    """The boost profile a request, an import or the in-process API uses when none is named:
    `default` when it is loaded (or nothing is), else the first loaded one by name. The one
    place this is decided: the proxy, `rewriter.api` and `affinity ingest events` all ask it."""
    if DEFAULT_BOOST_PROFILE in loaded or not loaded:
        return DEFAULT_BOOST_PROFILE
    return sorted(loaded)[0]


def content_version(data: bytes) -> str:
    """The profile's version: first 12 hex digits of sha256 over the file's bytes."""
    return hashlib.sha256(data).hexdigest()[:12]


def load_boost_profile(path: str | Path) -> BoostProfile:
    """Read and validate one profiles/*.yaml file."""
    p = Path(path)
    return parse_boost_profile(p.read_bytes(), source=str(p))


def load_directory(
    directory: str | Path,
) -> tuple[dict[str, BoostProfile], dict[str, BoostProfileError]]:
    """Every valid *.yaml in `directory` by profile name, and the error of each file that is
    not (by path). A file reusing an earlier file's name is an error of that file."""
    profiles: dict[str, BoostProfile] = {}
    errors: dict[str, BoostProfileError] = {}
    for path in sorted(Path(directory).glob("*.yaml")):
        try:
            profile = load_boost_profile(path)
        except BoostProfileError as exc:
            errors[str(path)] = exc
            continue
        except OSError as exc:
            errors[str(path)] = BoostProfileError(str(path), 1, 1, f"cannot read: {exc}")
            continue
        if profile.name in profiles:
            first = profiles[profile.name].source
            message = f"profile name {profile.name!r} is already used by {first}"
            errors[str(path)] = BoostProfileError(str(path), 1, 1, message)
            continue
        profiles[profile.name] = profile
    return profiles, errors


def load_boost_profiles(directory: str | Path) -> dict[str, BoostProfile]:
    """Every *.yaml in `directory`, by profile name; any invalid file raises its error."""
    profiles, errors = load_directory(directory)
    if errors:
        raise next(iter(errors.values()))
    return profiles


def parse_boost_profile(data: str | bytes, source: str = "<string>") -> BoostProfile:
    """Validate YAML text into a BoostProfile; `source` names the file in error messages.
    Raises BoostProfileError listing every problem found."""
    raw = data.encode() if isinstance(data, str) else data
    root = y.compose(raw, source)
    if root is None:
        raise BoostProfileError(source, 1, 1, "empty boost profile; it needs at least `name:`")
    ctx = y.Ctx(source)
    values = y.collect(ctx, lambda: y.section(root, ctx, _TOP, "boost profile"))
    if isinstance(values, dict):
        _check_whole(root, ctx, values)
    if ctx.errors:
        raise BoostProfileError.many(ctx.errors)
    assert isinstance(values, dict)
    version = content_version(raw)
    refs = tuple(ctx.refs)
    return BoostProfile(**values, version=version, source=source, refs=refs)  # type: ignore[arg-type]


def _check_whole(root: Node, ctx: y.Ctx, values: dict[str, object]) -> None:
    """Checks that need the whole file: the name, segment references and their cycles."""
    if "name" not in values and not any(e.message.startswith("name:") for e in ctx.errors):
        ctx.errors.append(y.error_at(ctx, root, "missing required key 'name' (add `name: ...`)"))
    segments: tuple[Segment, ...] = values.get("segments", ())  # type: ignore[assignment]
    names = [s.name for s in segments]
    for ref in ctx.segment_refs:
        if ref.name not in names:
            known = f"defined: {', '.join(names)}" if names else "none are defined"
            message = f"{ref.path}: unknown segment {ref.name!r}{y.suggest(ref.name, names)} "
            ctx.errors.append(
                BoostProfileError(
                    ctx.source,
                    ref.line,
                    ref.column,
                    message + f"({known}; add it under `segments:`)",
                )
            )
    session = values.get("session")
    attributes = values.get("attributes", DEFAULT_ATTRIBUTES)
    if isinstance(session, SessionIntent) and isinstance(attributes, Mapping):
        problem = session_problem(session, attributes)
        if problem is not None:
            ctx.errors.append(y.error_at(ctx, root, problem))
    cycle = _segment_cycle(segments)
    if cycle:
        message = f"segments: {' -> '.join(cycle)} refer to each other in a cycle; break it"
        ctx.errors.append(y.error_at(ctx, root, message))


def _segment_cycle(segments: tuple[Segment, ...]) -> list[str]:
    """A cycle of segment references (names, first repeated at the end), or []."""
    graph = {s.name: references(s.when) for s in segments}
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done

    def visit(name: str, stack: list[str]) -> list[str]:
        if state.get(name) == 1:
            return [*stack[stack.index(name) :], name]
        if state.get(name) == 2 or name not in graph:
            return []
        state[name] = 1
        for nxt in sorted(graph[name]):
            found = visit(nxt, [*stack, name])
            if found:
                return found
        state[name] = 2
        return []

    for name in graph:
        found = visit(name, [])
        if found:
            return found
    return []


def bind_secret(profile: BoostProfile, pseudonymize: Callable[[str], str]) -> BoostProfile:
    """The profile with its `users:` lists turned into pseudonyms (boost/segments.py)."""
    if not profile.segments:
        return profile
    return replace(profile, segments=bind_user_lists(profile.segments, pseudonymize))


# --- top-level keys --------------------------------------------------------------------------


def _weights(what: str) -> y.Parser:
    """A non-empty mapping of name -> weight >= 0 (attributes, event types)."""

    def parse(node: Node, ctx: y.Ctx) -> dict[str, float]:
        pairs = y.pairs(node, ctx, f"{what} weights")
        if not pairs:
            y.fail(ctx, node, f"{what} weights must not be empty")
        return {key: y.non_negative(value, y.at(ctx, key)) for key, _, value in pairs}

    return parse


def _attributes(node: Node, ctx: y.Ctx) -> dict[str, float]:
    weights = _weights("attribute")(node, ctx)
    for key, key_node, _ in y.pairs(node, ctx, "attribute weights"):
        y.ref(y.at(ctx, key), key_node, "field", key, "keyword")
    return weights  # type: ignore[return-value]


def _cold_start(node: Node, ctx: y.Ctx) -> ColdStart:
    before = len(ctx.errors)
    values = y.section(node, ctx, _COLD_START, "cold_start")
    y.check(ctx, before)
    return ColdStart(**values)  # type: ignore[arg-type]


_COLD_START: dict[str, y.Parser] = {
    "strategy": y.choice(COLD_START_STRATEGIES),
    "popularity_weight": y.non_negative,
    "modifier": y.choice(POPULARITY_MODIFIERS),
}


def _client_attributes(node: Node, ctx: y.Ctx) -> ClientAttributes:
    before = len(ctx.errors)
    values = y.section(node, ctx, _CLIENT_ATTRIBUTES, "client_attributes")
    y.check(ctx, before)
    return ClientAttributes(**values)  # type: ignore[arg-type]


def _sources(node: Node, ctx: y.Ctx) -> tuple[str, ...]:
    """A list (possibly empty) of EVENT_SOURCES names, each once."""
    pick = y.choice(EVENT_SOURCES)
    nodes = y.items(node, ctx, "sources")
    return tuple(dict.fromkeys(pick(n, y.at(ctx, i)) for i, n in enumerate(nodes)))


_CLIENT_ATTRIBUTES: dict[str, y.Parser] = {"sources": _sources}


def _alpha(node: Node, ctx: y.Ctx) -> float:
    value = y.non_negative(node, ctx)
    if value > MAX_ALPHA:
        y.fail(ctx, node, f"must be between 0 and {MAX_ALPHA:g} (relevance units), got {value:g}")
    return value


_TOP: dict[str, y.Parser] = {
    "name": y.text,
    "alpha": _alpha,
    "shape": y.choice(SHAPES),
    "window": y.int_between(1, MAX_WINDOW),
    "attributes": _attributes,
    "event_weights": _weights("event type"),
    "half_life_days": y.positive,
    "top_k": y.int_between(1, MAX_TOP_K),
    "k": y.non_negative,
    "cold_start": _cold_start,
    "client_attributes": _client_attributes,
    "session": parse_session,
    "item_memory": parse_item_memory,
    "segments": parse_segments,
    "rules": parse_rules,
    "facets": parse_facets,
    "placements": parse_placements,
    "diversity": parse_diversity,
}

# The keys a profile may set, for docs and tests (profiles/default.yaml documents each one).
PROFILE_KEYS: tuple[str, ...] = tuple(_TOP)
COLD_START_KEYS: tuple[str, ...] = tuple(_COLD_START)
CLIENT_ATTRIBUTES_KEYS: tuple[str, ...] = tuple(_CLIENT_ATTRIBUTES)
