"""Which merchandising rules of a boost profile apply to one request.

`resolve` is pure: the request's facts and text in, a RulePlan out (the rendered filters,
the pins with conflicts settled: the first rule in file order gets a position, and an item
is pinned once), which ranking/rewrite.py turns into query clauses and the log's `rules_fired`.
What a rule says lives in rewriter/boost/rules.py; this module never changes it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from rewriter.boost.profile import BoostProfile
from rewriter.boost.rules import Boost, Bury, JSONDict, Pin, Rule
from rewriter.boost.segments import Facts, matched_segments

TEXT_QUERY_KEYS = ("multi_match", "query_string", "simple_query_string", "combined_fields")


FIELD_TEXT_KEYS = ("match", "match_phrase", "match_phrase_prefix", "match_bool_prefix")


@dataclass(frozen=True)
class ActiveFilter:
    """A boost, bury or hide of this request: the rule id, the rendered filter and the
    weight (boost), factor (bury) or 0 (hide)."""

    rule: str
    filter: JSONDict
    value: float = 0.0


@dataclass(frozen=True)
class ActivePin:
    rule: str
    item: str
    position: int


@dataclass(frozen=True)
class RulePlan:
    """What the rules do to one request. `alpha` is the segment alpha (None: the profile's);
    `fired` lists the rule ids that apply, in file order."""

    segments: tuple[str, ...] = ()
    alpha: float | None = None
    alpha_segment: str | None = None
    boosts: tuple[ActiveFilter, ...] = ()
    buries: tuple[ActiveFilter, ...] = ()
    hides: tuple[ActiveFilter, ...] = ()
    pins: tuple[ActivePin, ...] = ()  # by position
    fired: tuple[str, ...] = ()

    def only_hides(self) -> RulePlan:
        """For requests whose order is not by score (a field sort) or that want no hits."""
        keep = {h.rule for h in self.hides}
        fired = tuple(r for r in self.fired if r in keep)
        return replace(self, boosts=(), buries=(), pins=(), fired=fired)

    def without_pins(self) -> RulePlan:
        pinned = {p.rule for p in self.pins}
        others = {f.rule for f in (*self.boosts, *self.buries, *self.hides)}
        fired = tuple(r for r in self.fired if r not in pinned or r in others)
        return replace(self, pins=(), fired=fired)

    @property
    def changes_query(self) -> bool:
        return bool(self.boosts or self.buries or self.hides or self.pins)


EMPTY_PLAN = RulePlan()


def resolve(boost: BoostProfile, facts: Facts, text: str, *, segments: bool = True) -> RulePlan:
    """The rules of `boost` that apply to a request with these facts and search text.
    `segments=False` (an opted-out user) evaluates no segment: rules that need one do not
    apply, the others do."""
    matched = matched_segments(boost.segments, facts) if segments else ()
    names = {s.name for s in matched}
    alpha_from = next((s for s in matched if s.alpha is not None), None)
    boosts: list[ActiveFilter] = []
    buries: list[ActiveFilter] = []
    hides: list[ActiveFilter] = []
    pins: dict[int, ActivePin] = {}
    fired: list[str] = []
    for rule in boost.rules:
        if not _applies(rule, names, text, facts.now):
            continue
        action = rule.action
        if isinstance(action, Pin):
            if not _add_pins(rule.id, action, pins):
                continue
        elif isinstance(action, Boost):
            boosts.append(ActiveFilter(rule.id, action.where.render(facts.now), action.weight))
        elif isinstance(action, Bury):
            buries.append(ActiveFilter(rule.id, action.where.render(facts.now), action.factor))
        else:
            hides.append(ActiveFilter(rule.id, action.where.render(facts.now)))
        fired.append(rule.id)
    return RulePlan(
        segments=tuple(s.name for s in matched),
        alpha=alpha_from.alpha if alpha_from else None,
        alpha_segment=alpha_from.name if alpha_from else None,
        boosts=tuple(boosts),
        buries=tuple(buries),
        hides=tuple(hides),
        pins=tuple(sorted(pins.values(), key=lambda p: p.position)),
        fired=tuple(fired),
    )


def _applies(rule: Rule, segments: set[str], text: str, now: float) -> bool:
    if not rule.enabled or not rule.schedule.active(now):
        return False
    if rule.segments and not segments.intersection(rule.segments):
        return False
    return rule.query is None or rule.query.holds(text)


def _add_pins(rule: str, action: Pin, pins: dict[int, ActivePin]) -> bool:
    """Add the rule's pins whose position and item are still free; True if any was."""
    taken = {p.item for p in pins.values()}
    added = False
    for pin in action.items:
        if pin.position not in pins and pin.item not in taken:
            pins[pin.position] = ActivePin(rule, pin.item, pin.position)
            taken.add(pin.item)
            added = True
    return added


def query_text(query: object) -> str:
    """The search text of a query DSL tree: the `query` strings of full-text queries
    (match, match_phrase, multi_match, query_string, ...), joined by spaces."""
    found: list[str] = []
    _collect_text(query, found)
    return " ".join(found)


def _collect_text(node: object, found: list[str]) -> None:
    if isinstance(node, list):
        for item in node:
            _collect_text(item, found)
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key in TEXT_QUERY_KEYS and isinstance(value, dict):
            if isinstance(value.get("query"), str):
                found.append(value["query"])
        elif key in FIELD_TEXT_KEYS and isinstance(value, dict):
            for spec in value.values():
                text = spec.get("query") if isinstance(spec, dict) else spec
                if isinstance(text, str):
                    found.append(text)
        else:
            _collect_text(value, found)
