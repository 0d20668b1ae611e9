"""`?explain=true`: each hit's score taken apart, from the same params the engine used.

The breakdown is computed with the reference scorer (ranking/reference.py) from the hit's own
attribute values: affinity per attribute (the matched value and its weight), the rule
boosts and buries that fired, and the relevance that remains. Pinned hits are placed by
position, not by score, and carry no breakdown.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from rewriter.boost.profile import BoostProfile
from rewriter.profiles.view import UserAffinity
from rewriter.ranking import reference
from rewriter.ranking.resolve import EMPTY_PLAN, RulePlan


def _start(value: object) -> int:
    """The body's `from` (the engine refused anything that is not a whole number)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _hits(response: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The hits that can be explained: those with an `_id` (`stored_fields: _none_` and
    `filter_path` can leave hits without one, or no hits at all)."""
    hits = response.get("hits")
    found = hits.get("hits") if isinstance(hits, dict) else None
    return [h for h in found or [] if isinstance(h, dict) and "_id" in h]


def explain_hits(
    response: dict[str, Any],
    log_: dict[str, Any],
    boost: BoostProfile,
    user: UserAffinity | None,
    body: Mapping[str, Any],
    rules: RulePlan = EMPTY_PLAN,
) -> None:
    """Attach `_affinity` (the score breakdown) to each hit, from the same params the engine
    used; relevance = (_score − the added term) / buries − boosts (hits past a rescore window
    get no added term; pinned hits, placed by position, get none of it). The window is known
    by position: exact on one shard; on several, a hit past position `window` that led its own
    shard was rescored too and is shown without its added term (decision 22)."""
    params = log_.get("params") or reference.script_params(user, boost)
    weight = float(log_.get("alpha_eff") or 0.0)
    start = _start(body.get("from"))
    window = boost.window if log_.get("shape") == "rescore" else None
    now = time.time()
    organic = [h for h in _hits(response) if "_pinned" not in h]
    for i, hit in enumerate(organic):
        source = dict(hit.get("_source") or {})
        source.update(hit.get("fields") or {})
        item = reference.hit_from_source(hit["_id"], 0.0, source, reference.script_fields(params))
        aff, matches = reference.affinity(item.attributes, params)
        in_window = window is None or start + i < window
        if log_.get("mode") == "popularity":  # cold start: the popularity term, not affinity
            pop = reference.popularity_term(item.popularity, boost.cold_start.modifier)
            added = float(log_.get("popularity_weight") or 0.0) * pop if in_window else 0.0
        else:
            added = weight * aff if (log_.get("applied") and in_window) else 0.0
        boosted, bury, fired = reference.rule_effects(item, rules, now)
        added *= bury
        score = hit.get("_score")
        hit["_affinity"] = {
            "relevance": None if score is None else (score - added) / bury - boosted,
            "boost": boosted,
            "bury": bury,
            "rules": list(fired),
            "mode": log_.get("mode"),
            "affinity": aff,
            "alpha_eff": weight,
            "added": added,
            "final": score,
            "attributes": {
                m.key: {
                    "value": m.value,
                    "affinity": m.affinity,
                    "weight": m.weight,
                    "contribution": m.contribution,
                }
                for m in matches
            },
        }
