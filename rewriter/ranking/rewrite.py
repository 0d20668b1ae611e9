"""The rewrite: an app's search body + a user's profile + a boost profile -> a body that makes
OpenSearch rank by relevance + alpha_eff · Affinity (docs/architecture.md, "Scoring").

Pure: no I/O, the input body is never mutated (the result is a deep copy); the clock is
read once when the context gives no `now`. Returns the body and a log, the response's
`personalization` object. The log always has the same keys: applied (the body was
rewritten: the affinity or cold-start term, or a rule), reason (why not the affinity term;
None when it is), mode (affinity | popularity | None), shape, shape_fallback, window,
page_beyond_window, alpha (the one used: the profile's, or a segment's), alpha_segment,
alpha_eff, mass (only with the affinity term), attributes (attribute -> weight sent to the
engine), popularity_weight, segments (the user's, in file order), rules_fired (rule ids),
pinned ([{id, position, rule}] as requested), pins_skipped (why pins were not applied),
boost_profile {name, version}; plus `params` (the script params) when the context asks for
explain.

Decisions:

- No affinity term, and the body unchanged unless rules apply (then applied is true, reason
  still says why there is no term): `X-Personalization: off`
  (personalization_off), an opted-out user (opt_out), a user whose stored profile cannot be
  read (profile_unreadable: served like a user without one, minus the cold-start term, until
  `affinity profile rebuild` repairs it), a `sort` that is anything but `_score`
  descending (sorted_by_field: the app asked for a field order, and OpenSearch rejects
  rescore with a sort), `size: 0` (no_hits_requested: nothing to rank), alpha 0
  (alpha_zero), cold start with strategy none (no_user / no_profile_cold_start).
- A sort of only `_score` descending is relevance order: it is kept as it is (OpenSearch
  treats it as no sort and accepts it together with rescore).
- Cold start (no user, no mass, no known value of a weighted attribute) with strategy
  popularity: the same shapes add popularity_weight · modifier(popularity) via
  field_value_factor (`missing: 0`, so catalogs without the field still work).
- rescore shape: our rescorer is appended after the app's own (`rescore` object or list
  becomes a list, the app's first). Rescorers run in order, so ours adds the term to the
  score the app's rescorers produced, over our window of that order.
- function_score shape: the app's query (match_all if none) is wrapped as is, including an
  app function_score (they nest). An app `rescore` then runs on the personalized first pass,
  so its query_weight scales our term too; a top-level `min_score` applies to the
  personalized score. Both are OpenSearch's semantics, left as they are.
- `collapse` cannot be combined with rescore in OpenSearch, so a rescore profile falls back
  to function_score for such requests (shape_fallback: "collapse").
- Pagination with rescore: the window stays `boost.window` on every page; it is never raised
  to from + size. Re-ranking only the top `window` of the same first pass on every page is
  what keeps pages consistent (no hit shown twice or skipped while paging); results past
  the window are in generic relevance order, and the log says so (page_beyond_window).
  Profiles that need personalized deep pages use shape function_score.

Rules (boost/rules.py) become clauses: boosts are `constant_score` clauses in a `bool.should` next
to the app's query (in `must`), hides are `must_not`, buries a `function_score` that
multiplies (no negative scores). With rescore, the rules change the first pass over the
whole match set and the affinity rescore query is multiplied by the same buries, so inside
the window final = (relevance + boosts + alpha_eff · Affinity) · buries, and outside it
(relevance + boosts) · buries. With function_score the same formula holds for every hit.
Rules apply whenever the request is not `X-Personalization: off`: an opted-out user gets the
rules that need no segment (no segment is evaluated for them); a field sort or `size: 0`
keeps only hides (scores do not order those hits). Pins: see ranking/pins.py (the result carries a
PinPlan; the caller sends both searches in one _msearch and merges).

`from`/`size` are read from the body; a proxy that receives them as URL parameters moves
them into the body first.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from rewriter.boost.profile import BoostProfile, Shape
from rewriter.profiles.view import UserAffinity
from rewriter.ranking import pins
from rewriter.ranking.facts import facts_for
from rewriter.ranking.reference import POPULARITY_FIELD, SCRIPT_ID, Plan, copy_params, plan
from rewriter.ranking.resolve import EMPTY_PLAN, ActiveFilter, RulePlan, query_text, resolve

JSON = str | int | float | bool | None | list["JSON"] | dict[str, "JSON"]
Body = dict[str, JSON]

DEFAULT_SIZE = 10


@dataclass(frozen=True)
class RequestContext:
    """Per-request facts beside the body (headers X-Personalization, X-User-Context, ...).

    user: the pseudonym of X-User-Id (for segment user lists; raw ids stay in the proxy);
    now: epoch seconds for schedules, recency and created_within (None: the clock);
    query_text: the search text for query conditions (None: taken from the body's query)."""

    personalization_off: bool = False
    explain: bool = False
    device: str | None = None
    geo: str | None = None
    raw: Mapping[str, JSON] = field(default_factory=dict)
    user: str | None = None
    now: float | None = None
    query_text: str | None = None
    profile_unreadable: bool = False
    """The user has a stored profile that cannot be read (profiles.doc.UnreadableProfile)."""


@dataclass(frozen=True)
class RewriteResult:
    """The body to send to OpenSearch and the response's `personalization` object; `rules`
    is what the rules did, `pins` (when set) how to fetch and place pinned items."""

    body: Body
    log: dict[str, JSON]
    rules: RulePlan = EMPTY_PLAN
    pins: pins.PinPlan | None = None


@dataclass(frozen=True)
class _Term:
    """The engine form of the added term: a rescore query and a function_score function that
    compute it unweighted, and its weight (alpha_eff, or the popularity weight)."""

    query: dict[str, JSON]
    function: dict[str, JSON]
    weight: float


def rewrite(
    body: Mapping[str, JSON],
    user: UserAffinity | None,
    boost: BoostProfile,
    context: RequestContext,
) -> RewriteResult:
    """Rewrite one search body; see the module docstring for every decision."""
    out: Body = copy.deepcopy(dict(body))
    if context.personalization_off:
        return RewriteResult(out, _log(boost, user, reason="personalization_off"))
    rules, pins_skipped = _rules(out, user, boost, context)
    eff = boost if rules.alpha is None else replace(boost, alpha=rules.alpha)
    p = plan(user, eff)
    skipped = _skip_reason(out, user, context) or (p.reason if p.mode == "none" else None)
    if skipped is not None and not rules.changes_query:
        log = _log(eff, user, reason=skipped, rules=rules, pins_skipped=pins_skipped)
        return RewriteResult(out, log, rules)
    term = None
    if skipped is None:
        term = _affinity_term(p) if p.mode == "affinity" else _popularity_term(p, boost)
    shape, fallback = _shape(out, boost) if term is not None else (None, None)
    start, size = _int(out.get("from"), 0), _int(out.get("size"), DEFAULT_SIZE)
    _apply(out, term, shape, rules, boost.window)
    pin_plan = pins.apply(out, rules.pins, rules.hides, start, size) if rules.pins else None
    log = _log(
        eff,
        user,
        reason=skipped or p.reason,
        applied=p if term is not None else None,
        shape=shape,
        fallback=fallback,
        rules=rules,
        pins_skipped=pins_skipped,
    )
    log["applied"] = True
    log["page_beyond_window"] = shape == "rescore" and _page_end(out) > boost.window
    if context.explain and term is not None:
        log["params"] = copy_params(p.params)  # type: ignore[assignment]
    return RewriteResult(out, log, rules, pin_plan)


def _apply(
    body: Body, term: _Term | None, shape: Shape | None, rules: RulePlan, window: int
) -> None:
    """The rules' first pass, then the term in its shape, then the buries (which multiply
    the whole score, the term included)."""
    if rules.boosts or rules.hides:
        body["query"] = _first_pass(body.get("query"), rules)
    if term is not None and shape == "rescore":
        _add_rescore(body, _buried(term.query, rules.buries), term.weight, window)
    elif term is not None:
        _wrap_function_score(body, term)
    if rules.buries:
        body["query"] = _buried(body.get("query", {"match_all": {}}), rules.buries)


def _first_pass(query: JSON, rules: RulePlan) -> dict[str, JSON]:
    """The app's query in `must`, boosts as constant scores in `should`, hides `must_not`:
    score = relevance + the weights of the matching boosts."""
    clauses: dict[str, JSON] = {"must": [query if query is not None else {"match_all": {}}]}
    if rules.boosts:
        clauses["should"] = [
            {"constant_score": {"filter": copy.deepcopy(b.filter), "boost": b.value}}
            for b in rules.boosts
        ]
    if rules.hides:
        clauses["must_not"] = [copy.deepcopy(h.filter) for h in rules.hides]
    return {"bool": clauses}


def _buried(query: JSON, buries: Sequence[ActiveFilter]) -> dict[str, JSON]:
    """`query`'s score times the factors of the matching buries (1 when none match)."""
    if not buries:
        return query  # type: ignore[return-value]
    return {
        "function_score": {
            "query": query,
            "functions": [{"filter": copy.deepcopy(b.filter), "weight": b.value} for b in buries],
            "score_mode": "multiply",
            "boost_mode": "multiply",
        }
    }


def _rules(
    body: Body, user: UserAffinity | None, boost: BoostProfile, context: RequestContext
) -> tuple[RulePlan, str | None]:
    """The rules for this request, cut to what its shape allows, and why pins were not."""
    if not boost.rules and not boost.segments:
        return EMPTY_PLAN, None
    now = time.time() if context.now is None else context.now
    opted_out = user is not None and user.opt_out
    facts = facts_for(
        None if opted_out else user,
        now=now,
        pseudonym=context.user,
        device=context.device,
        geo=context.geo,
    )
    text = context.query_text if context.query_text is not None else query_text(body.get("query"))
    rules = resolve(boost, facts, text, segments=not opted_out)
    if not is_relevance_sort(body.get("sort")) or _int(body.get("size"), DEFAULT_SIZE) == 0:
        return rules.only_hides(), None
    if rules.pins and "search_after" in body:
        return rules.without_pins(), "search_after"
    return rules, None


def _skip_reason(body: Body, user: UserAffinity | None, context: RequestContext) -> str | None:
    if context.personalization_off:
        return "personalization_off"
    if user is not None and user.opt_out:
        return "opt_out"
    if context.profile_unreadable:
        return "profile_unreadable"
    if not is_relevance_sort(body.get("sort")):
        return "sorted_by_field"
    if _int(body.get("size"), DEFAULT_SIZE) == 0:
        return "no_hits_requested"
    return None


def is_relevance_sort(sort: JSON) -> bool:
    """True when `sort` is absent or only `_score` descending, in any of its spellings:
    "_score", ["_score"], {"_score": "desc"}, [{"_score": {"order": "desc"}}], ..."""
    if sort is None:
        return True
    items = sort if isinstance(sort, list) else [sort]
    return all(_is_score_desc(item) for item in items)


def _is_score_desc(item: JSON) -> bool:
    if item == "_score":
        return True
    if not isinstance(item, dict) or list(item) != ["_score"]:
        return False
    spec = item["_score"]
    if isinstance(spec, str):
        return spec == "desc"
    return isinstance(spec, dict) and spec.get("order", "desc") == "desc"


def _shape(body: Body, boost: BoostProfile) -> tuple[Shape, str | None]:
    if boost.shape == "rescore" and "collapse" in body:
        return "function_score", "collapse"
    return boost.shape, None


def _affinity_term(p: Plan) -> _Term:
    params: JSON = copy_params(p.params)  # type: ignore[assignment]
    script: dict[str, JSON] = {"id": SCRIPT_ID, "params": params}
    return _Term(
        query={"script_score": {"query": {"match_all": {}}, "script": script}},
        function={"script_score": {"script": script}},  # one of the two goes in the body
        weight=p.alpha_eff,
    )


def _popularity_term(p: Plan, boost: BoostProfile) -> _Term:
    factor: dict[str, JSON] = {
        "field": POPULARITY_FIELD,
        "factor": 1.0,
        "modifier": boost.cold_start.modifier,
        "missing": 0,
    }
    function: dict[str, JSON] = {"field_value_factor": factor}
    query: dict[str, JSON] = {
        "function_score": {
            "query": {"match_all": {}},
            "functions": [copy.deepcopy(function)],
            "boost_mode": "replace",
            "score_mode": "sum",
        }
    }
    return _Term(query=query, function=function, weight=p.popularity_weight)


def _add_rescore(body: Body, query: JSON, weight: float, window: int) -> None:
    ours: dict[str, JSON] = {
        "window_size": window,
        "query": {
            "rescore_query": query,
            "query_weight": 1,
            "rescore_query_weight": weight,
            "score_mode": "total",
        },
    }
    existing = body.get("rescore")
    apps = [] if existing is None else existing if isinstance(existing, list) else [existing]
    body["rescore"] = [*apps, ours]


def _wrap_function_score(body: Body, term: _Term) -> None:
    body["query"] = {
        "function_score": {
            "query": body.get("query", {"match_all": {}}),
            "functions": [{**term.function, "weight": term.weight}],
            "boost_mode": "sum",
            "score_mode": "sum",
        }
    }


def _page_end(body: Body) -> int:
    return _int(body.get("from"), 0) + _int(body.get("size"), DEFAULT_SIZE)


def _int(value: JSON, default: int) -> int:
    """An int from/size; anything unparsable counts as the default (OpenSearch will reject
    the request itself with its own error, which the app should see, not ours)."""
    try:
        return default if value is None else int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default


def _log(
    boost: BoostProfile,
    user: UserAffinity | None,
    *,
    reason: str | None,
    applied: Plan | None = None,
    shape: Shape | None = None,
    fallback: str | None = None,
    rules: RulePlan = EMPTY_PLAN,
    pins_skipped: str | None = None,
) -> dict[str, JSON]:
    """The `personalization` object; `applied` is None when no term was added."""
    mode = applied.mode if applied is not None else None
    attributes = applied.params["attributes"] if applied is not None and mode == "affinity" else {}
    horizons = applied.params.get("horizons", {}) if applied is not None else {}
    log: dict[str, JSON] = {
        "applied": applied is not None,
        "reason": reason,
        "mode": mode,
        "shape": shape,
        "shape_fallback": fallback,
        "window": boost.window if shape == "rescore" else None,
        "page_beyond_window": False,
        "alpha": boost.alpha,
        "alpha_segment": rules.alpha_segment,
        "alpha_eff": applied.alpha_eff if applied is not None else 0.0,
        "mass": user.mass if user is not None and mode == "affinity" else None,
        "attributes": {name: spec["weight"] for name, spec in attributes.items()},
        "popularity_weight": applied.popularity_weight
        if applied is not None and mode == "popularity"
        else None,
        "segments": list(rules.segments),
        "rules_fired": list(rules.fired),
        "pinned": [{"id": p.item, "position": p.position, "rule": p.rule} for p in rules.pins],
        "pins_skipped": pins_skipped,
        "boost_profile": {"name": boost.name, "version": boost.version},
    }
    if horizons and mode == "affinity":
        log["horizons"] = {h: {f: t["weight"] for f, t in ts.items()} for h, ts in horizons.items()}
    return log
