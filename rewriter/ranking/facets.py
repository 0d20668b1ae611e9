"""Facets ordered by the user (issue 11, items 5, 6, 8): pure, no I/O.

Three steps around the one engine request a search makes:

1. `plan_facets(body, user, boost, ...)` reads the app's top-level `terms` aggregations on a
   field (brand, category, `x.keyword`, any attribute) and decides, per facet, the user's
   favored values (their top `max_favored` values of that attribute with affinity ≥
   `min_affinity`), the values the user has selected (`term`/`terms` on the field in the
   query or `post_filter`, outside `must_not`) and what the boost profile's `facets:` rules
   hide or pin.
2. `with_favored_aggs(body, plan)` adds, beside each such facet, a sibling `terms`
   aggregation with an `include` list of those values (and the app's sub-aggregations), so
   a favored value outside the app's bucket `size` is counted in the SAME request.
3. `apply_facets(response, plan, explain)` takes the siblings out of the response again and
   reorders each facet's buckets with `reorder_buckets`, returning the
   `personalization.facets` object.

Ordering (`reorder_buckets`): pinned values first (rule order), then favored values by
affinity (highest first), then the rest; ties keep OpenSearch's order (count order). A
selected value keeps its index and is never hidden or displaced. The list keeps the app's
length (hidden values make room), displacing its last plain buckets, unless pinned, favored
and selected values need more. A facet whose `terms` names its own `order` (other than
count descending) keeps it; values are fetched beyond the app's buckets only for the
boost profile's attributes (keyword fields) and only when the app's `terms` has no
`include`/`exclude` of its own.

Facet groups (`personalization.facets.order`): by W_a (the boost profile's attribute
weight) × the best affinity among the values shown; ties keep the body's order.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rewriter.boost.facets import FacetSettings, base_field
from rewriter.boost.profile import BoostProfile
from rewriter.profiles.view import UserAffinity

FAVORED_AGG_PREFIX = "affinity_favored__"
"""Names of the sibling aggregations the rewrite adds (taken out of the response again)."""

Bucket = dict[str, Any]
DEFAULT_BUCKETS = 10
"""A `terms` aggregation's `size` when the app gives none (OpenSearch's default)."""


@dataclass(frozen=True)
class Facet:
    """One app `terms` aggregation and what personalization does to it."""

    name: str
    field: str
    attribute: str
    weight: float = 0.0
    size: int = DEFAULT_BUCKETS
    reorder: bool = True
    fetch_extras: bool = True
    favored: Mapping[str, float] = field(default_factory=dict)
    selected: frozenset[str] = frozenset()
    hidden: Mapping[str, str] = field(default_factory=dict)  # value -> rule id
    group_hidden_by: str | None = None
    pinned: tuple[tuple[str, str], ...] = ()  # (value, rule id), in rule order

    @property
    def fetch(self) -> tuple[str, ...]:
        """The values the sibling aggregation counts: favored, pinned and selected."""
        if not self.fetch_extras:
            return ()
        wanted = [*self.favored, *(v for v, _ in self.pinned), *sorted(self.selected)]
        return tuple(dict.fromkeys(w for w in wanted if w not in self.hidden))


@dataclass(frozen=True)
class FacetPlan:
    """The facets of one request; `reason` says why values are not ordered by the user
    (None when they are)."""

    facets: tuple[Facet, ...]
    reason: str | None
    rules_fired: tuple[str, ...] = ()
    agg_key: str = "aggs"


# --------------------------------------------------------------------------- 1. plan
def plan_facets(
    body: Mapping[str, Any],
    user: UserAffinity | None,
    boost: BoostProfile,
    personalization_off: bool,
    segments: Sequence[str] = (),
) -> FacetPlan | None:
    """The facet plan for the app's `body`, or None when nothing is done to its
    aggregations (`X-Personalization: off`, or no top-level `terms` facet on a field)."""
    if personalization_off:
        return None
    key, aggs = _app_aggs(body)
    if aggs is None:
        return None
    settings: FacetSettings = boost.facets.for_segments(segments)
    reason = _reason(user, settings)
    selected = _selected(body)
    facets = []
    for name, spec in aggs.items():
        terms = _terms_spec(spec)
        if terms is None:
            continue
        fld = terms["field"]
        attribute = base_field(fld)
        in_count_order = _count_order(terms.get("order"))
        personal = reason is None and user is not None and in_count_order
        favored = _favored(user, attribute, settings) if personal and user else {}
        hides = settings.hidden(fld)
        group_rule = next((r.id for r in hides if not r.values), None)
        hidden = {v: r.id for r in hides for v in r.values}
        chosen = selected.get(attribute, frozenset())
        facets.append(
            Facet(
                name=name,
                field=fld,
                attribute=attribute,
                weight=float(boost.attributes.get(attribute, 0.0)),
                size=_size(terms.get("size")),
                reorder=in_count_order,
                fetch_extras=in_count_order
                and attribute in boost.attributes
                and "include" not in terms
                and "exclude" not in terms,
                favored=favored,
                selected=chosen,
                hidden={v: r for v, r in hidden.items() if v not in chosen},
                group_hidden_by=None if chosen else group_rule,
                pinned=tuple((v, r.id) for r in settings.pinned(fld) for v in r.values),
            )
        )
    if not facets:
        return None
    return FacetPlan(tuple(facets), reason, settings.fired, key)


def _reason(user: UserAffinity | None, settings: FacetSettings) -> str | None:
    if user is not None and user.opt_out:
        return "opt_out"
    if not settings.personalize:
        return "facets_personalization_off"
    if user is None or not user.affinities:
        return "no_profile"
    return None


def _app_aggs(body: Mapping[str, Any]) -> tuple[str, Mapping[str, Any] | None]:
    """The body's top-level aggregations (`aggs` or `aggregations`); None when absent,
    malformed or given twice (OpenSearch answers those itself)."""
    found = [k for k in ("aggs", "aggregations") if k in body]
    if len(found) != 1 or not isinstance(body[found[0]], dict):
        return "aggs", None
    if any(str(name).startswith(FAVORED_AGG_PREFIX) for name in body[found[0]]):
        return "aggs", None  # the app uses our sibling's names: leave its aggregations alone
    return found[0], body[found[0]]


def _terms_spec(spec: Any) -> dict[str, Any] | None:
    """A `terms` aggregation on a field (no script), else None."""
    if not isinstance(spec, dict) or not isinstance(spec.get("terms"), dict):
        return None
    terms = spec["terms"]
    if not isinstance(terms.get("field"), str) or "script" in terms:
        return None
    return terms


def _size(size: Any) -> int:
    return size if isinstance(size, int) and size > 0 else DEFAULT_BUCKETS


def _count_order(order: Any) -> bool:
    """True when the buckets come in count order: no `order`, or `_count` descending."""
    if order is None:
        return True
    items = order if isinstance(order, list) else [order]
    return items in ([{"_count": "desc"}], [])


def _favored(user: UserAffinity, attribute: str, settings: FacetSettings) -> dict[str, float]:
    values = user.affinities.get(attribute, {})
    known = [(v, float(a)) for v, a in values.items() if a >= settings.min_affinity and a > 0]
    known.sort(key=lambda pair: (-pair[1], pair[0]))
    return dict(known[: settings.max_favored])


def _selected(body: Mapping[str, Any]) -> dict[str, frozenset[str]]:
    """attribute -> values the request filters on with `term`/`terms`, in `query` and
    `post_filter` (a `must_not` is an exclusion, not a selection)."""
    out: dict[str, set[str]] = {}
    for part in (body.get("query"), body.get("post_filter")):
        for fld, value in _term_filters(part):
            out.setdefault(base_field(fld), set()).add(value)
    return {k: frozenset(v) for k, v in out.items()}


def _term_filters(node: Any) -> Iterator[tuple[str, str]]:
    if isinstance(node, list):
        for item in node:
            yield from _term_filters(item)
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key == "must_not":
            continue
        if key in ("term", "terms") and isinstance(value, dict):
            yield from _term_values(key, value)
        else:
            yield from _term_filters(value)


def _term_values(kind: str, spec: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for fld, value in spec.items():
        if fld in ("boost", "_name"):
            continue
        if kind == "term" and isinstance(value, dict):
            value = value.get("value")
        values = value if kind == "terms" and isinstance(value, list) else [value]
        yield from ((fld, v) for v in values if isinstance(v, str))


# --------------------------------------------------------------------------- 2. the request
def with_favored_aggs(body: Mapping[str, Any], plan: FacetPlan | None) -> dict[str, Any]:
    """A copy of `body` with a sibling `terms` aggregation per facet that has values to
    fetch: `include` those values, `size` their number, the app's `min_doc_count` and
    sub-aggregations (so a fetched bucket looks like the app's)."""
    out = dict(body)
    if plan is None:
        return out
    aggs = dict(out[plan.agg_key])
    for facet in plan.facets:
        if not facet.fetch or facet.group_hidden_by:
            continue
        spec = aggs[facet.name]
        terms: dict[str, Any] = {
            "field": facet.field,
            "include": list(facet.fetch),
            "size": len(facet.fetch),
        }
        if "min_doc_count" in spec["terms"]:
            terms["min_doc_count"] = spec["terms"]["min_doc_count"]
        sibling: dict[str, Any] = {"terms": terms}
        for sub in ("aggs", "aggregations"):
            if sub in spec:
                sibling[sub] = copy.deepcopy(spec[sub])
        aggs[FAVORED_AGG_PREFIX + facet.name] = sibling
    out[plan.agg_key] = aggs
    return out


# --------------------------------------------------------------------------- 3. the response
@dataclass(frozen=True)
class Move:
    """Why one value is where it is (for `?explain=true`)."""

    value: str
    before: int | None  # index in OpenSearch's buckets; None: fetched from outside them
    after: int | None  # index in the reordered buckets; None: not shown
    why: str

    def as_json(self) -> dict[str, Any]:
        return {"value": self.value, "from": self.before, "to": self.after, "why": self.why}


def reorder_buckets(
    buckets: Sequence[Bucket], fetched: Sequence[Bucket], facet: Facet
) -> tuple[list[Bucket], list[Move]]:
    """The facet's buckets in the user's order, and why each value moved (module doc).

    `buckets` are OpenSearch's (its order), `fetched` the sibling aggregation's. Favored
    buckets are copies marked `"favored": true, "affinity": a`; pinned ones `"pinned":
    true`; the others are OpenSearch's dicts as they were."""
    app = [b for b in buckets if _key(b) is not None]
    if len(app) != len(buckets) or not facet.reorder:
        kept = [b for b in buckets if _key(b) not in facet.hidden]
        return kept, _hidden_moves(buckets, facet)
    present = {_key(b): i for i, b in enumerate(app)}
    extras = sorted(
        (b for b in fetched if _key(b) is not None and _key(b) not in present),
        key=lambda b: (-_count(b), str(_key(b))),
    )
    pins = {v: n for n, (v, _) in enumerate(facet.pinned)}
    candidates = [
        (i, b)
        for i, b in enumerate([*app, *extras])
        if _key(b) not in facet.hidden and (i < len(app) or _must_show(str(_key(b)), facet, pins))
    ]
    fixed = {i: b for i, b in candidates if i < len(app) and _key(b) in facet.selected}
    loose = [(i, b) for i, b in candidates if i not in fixed]
    loose.sort(key=lambda ib: _rank(str(_key(ib[1])), ib[0], facet, pins))
    shows = [_must_show(str(_key(b)), facet, pins) for _, b in loose]
    room_for = len(app) if len(app) >= facet.size else facet.size  # all fit below `size`
    length = min(max(room_for, len(fixed) + sum(shows)), len(candidates))
    room = length - len(fixed) - sum(shows)  # slots for plain buckets
    chosen = []
    for (i, b), show in zip(loose, shows, strict=True):
        if show or room > 0:
            room -= 0 if show else 1
            chosen.append((i, b))
    out = _lay_out(length, fixed, chosen)
    return [_marked(b, facet, pins) for _, b in out], _moves(app, extras, out, facet, pins)


def _must_show(value: str, facet: Facet, pins: Mapping[str, int]) -> bool:
    return value in facet.favored or value in pins or value in facet.selected


def _rank(value: str, index: int, facet: Facet, pins: Mapping[str, int]) -> tuple[Any, ...]:
    if value in pins:
        return (0, pins[value], index)
    if value in facet.favored:
        return (1, -facet.favored[value], index)
    return (2, 0.0, index)


def _lay_out(
    length: int, fixed: Mapping[int, Bucket], chosen: list[tuple[int, Bucket]]
) -> list[tuple[int, Bucket]]:
    """Selected buckets at their own index (or the nearest free one), the rest in order."""
    slots: list[tuple[int, Bucket] | None] = [None] * length
    for i, b in sorted(fixed.items()):
        at = min(i, length - 1)
        while slots[at] is not None:
            at = at + 1 if at + 1 < length else slots.index(None)
        slots[at] = (i, b)
    rest = iter(chosen)
    return [s if s is not None else next(rest) for s in slots]


def _marked(bucket: Bucket, facet: Facet, pins: Mapping[str, int]) -> Bucket:
    value = str(_key(bucket))
    if value in pins:
        return {**bucket, "pinned": True}
    if value in facet.favored:
        return {**bucket, "favored": True, "affinity": facet.favored[value]}
    return bucket


def _moves(
    app: Sequence[Bucket],
    extras: Sequence[Bucket],
    out: Sequence[tuple[int, Bucket]],
    facet: Facet,
    pins: Mapping[str, int],
) -> list[Move]:
    after = {i: n for n, (i, _) in enumerate(out)}
    moves = []
    for i, b in enumerate([*app, *extras]):
        value = str(_key(b))
        before = i if i < len(app) else None
        to = after.get(i)
        moves.append(Move(value, before, to, _why(value, before, to, facet, pins)))
    return [m for m in moves if m.before != m.after]


def _why(
    value: str, before: int | None, to: int | None, facet: Facet, pins: Mapping[str, int]
) -> str:
    if value in facet.hidden:
        return f"hidden by facet rule {facet.hidden[value]}"
    if value in pins:
        return f"pinned by facet rule {facet.pinned[pins[value]][1]}"
    if value in facet.selected:
        return "selected by the user: kept in its place"
    if value in facet.favored:
        where = "" if before is not None else ", fetched from beyond the app's bucket size"
        return f"favored: the user's affinity for {facet.attribute}={value} is " + (
            f"{facet.favored[value]:.3f}{where}"
        )
    if to is None:
        return "displaced by favored, pinned or selected values (the app's bucket size)"
    return "moved down: favored, pinned or selected values placed above it"


def _hidden_moves(buckets: Sequence[Bucket], facet: Facet) -> list[Move]:
    shown = {str(_key(b)): i for i, b in enumerate(buckets)}
    return [
        Move(v, shown.get(v), None, f"hidden by facet rule {rule}")
        for v, rule in facet.hidden.items()
        if not buckets or v in shown
    ]


def _key(bucket: Any) -> str | None:
    """A bucket's key as text; None for anything that is not a keyword bucket."""
    if not isinstance(bucket, dict):
        return None
    key = bucket.get("key")
    return key if isinstance(key, str) else None


def _count(bucket: Bucket) -> float:
    count = bucket.get("doc_count")
    return float(count) if isinstance(count, int | float) else 0.0


def apply_facets(
    response: dict[str, Any], plan: FacetPlan | None, *, explain: bool
) -> dict[str, Any] | None:
    """Reorder the facets of `response` (in place) and return `personalization.facets`;
    the sibling aggregations are removed whatever happens. None without a plan."""
    if plan is None:
        return None
    aggregations = response.get("aggregations")
    if not isinstance(aggregations, dict):
        return _log(plan, {}, [], explain)
    fetched = {
        name: aggregations.pop(real)
        for real in [k for k in aggregations if _agg_name(k).startswith(FAVORED_AGG_PREFIX)]
        for name in [_agg_name(real)[len(FAVORED_AGG_PREFIX) :]]
    }
    groups: dict[str, dict[str, Any]] = {}
    scores: list[tuple[float, int, str]] = []
    for n, facet in enumerate(plan.facets):
        real = next((k for k in aggregations if _agg_name(k) == facet.name), None)
        agg = aggregations.get(real) if real is not None else None
        if agg is None or not isinstance(agg.get("buckets"), list):
            continue
        if facet.group_hidden_by:
            del aggregations[real]  # type: ignore[arg-type]
            groups[facet.name] = _group_log(facet, [], [], explain)
            continue
        extra = fetched.get(facet.name, {})
        extra_buckets = extra.get("buckets") if isinstance(extra, dict) else None
        before = agg["buckets"]
        ordered, moves = reorder_buckets(before, extra_buckets or [], facet)
        _adjust_other(agg, before, ordered)
        agg["buckets"] = ordered
        groups[facet.name] = _group_log(facet, ordered, moves, explain)
        shown = [facet.favored.get(str(_key(b)), 0.0) for b in ordered]
        scores.append((facet.weight * max(shown, default=0.0), n, facet.name))
    scores.sort(key=lambda s: (-s[0], s[1]))
    return _log(plan, groups, scores, explain)


def _agg_name(key: str) -> str:
    """The aggregation's name with `typed_keys` (`sterms#brand`) or without."""
    return key.split("#", 1)[1] if "#" in key else key


def _adjust_other(agg: dict[str, Any], before: Sequence[Bucket], after: Sequence[Bucket]) -> None:
    """`sum_other_doc_count` counts the documents of the buckets not shown: displaced ones
    join it, fetched ones leave it (never below 0)."""
    other = agg.get("sum_other_doc_count")
    if not isinstance(other, int):
        return
    old = {_key(b) for b in before}
    new = {_key(b) for b in after}
    gone = sum(_count(b) for b in before if _key(b) not in new)
    came = sum(_count(b) for b in after if _key(b) not in old)
    agg["sum_other_doc_count"] = max(0, int(other + gone - came))


def _group_log(
    facet: Facet, ordered: Sequence[Bucket], moves: Sequence[Move], explain: bool
) -> dict[str, Any]:
    values = [str(b.get("key")) if isinstance(b, dict) else str(b) for b in ordered]
    fetched = {m.value for m in moves if m.before is None and m.after is not None}
    group: dict[str, Any] = {
        "field": facet.field,
        "attribute": facet.attribute,
        "hidden": facet.group_hidden_by is not None,
        "values": values,
        "favored": [v for v in values if v in facet.favored],
        "selected": sorted(facet.selected),
        "pinned": [v for v, _ in facet.pinned if v in values],
        "fetched": [v for v in values if v in fetched],
    }
    if not facet.reorder:
        group["kept_app_order"] = True
    if explain:
        group["why"] = [m.as_json() for m in moves]
        if facet.group_hidden_by:
            group["why"] = [{"value": None, "why": f"hidden by facet rule {facet.group_hidden_by}"}]
    return group


def _log(
    plan: FacetPlan,
    groups: Mapping[str, Any],
    scores: Sequence[tuple[float, int, str]],
    explain: bool,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "applied": plan.reason is None,
        "reason": plan.reason,
        "order": [name for _, _, name in scores],
        "groups": dict(groups),
        "rules_fired": list(plan.rules_fired),
    }
    if explain:
        weights = {f.name: f.weight for f in plan.facets}
        out["order_why"] = [
            {"group": name, "score": score, "weight": weights[name]} for score, _, name in scores
        ]
    return out
