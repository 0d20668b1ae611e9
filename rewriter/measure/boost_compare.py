"""`affinity boost preview`: a boost profile's effect on one search before it ships, and the
helpers measure/boost_diff.py shares (the search body, _msearch batches with pins).

preview: one user, one query. Three rankings from the engine, side by side: generic (the
app's query as is), personalized (the profile without its rules) and personalized with
rules (the profile as the proxy would serve it); for every item of the last that moved, what
moved it and by how much: the affinity term (value, affinity, points added), each boost
(+weight) and bury (x factor) rule it matched, or the pin that placed it. Hidden items of
the generic top are listed with the rule that hid them.

Searches go out in _msearch batches (run_many), pins included.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from opensearchpy import OpenSearch

from rewriter import config
from rewriter.boost.dsl_eval import matches
from rewriter.boost.profile import BoostProfile
from rewriter.profiles.view import UserAffinity
from rewriter.ranking import pins, reference
from rewriter.ranking.rewrite import RequestContext, RewriteResult, rewrite
from rewriter.serve.api import Personalizer

TOP = 10
DEPTH = 50
BATCH = 50
Hit = dict[str, Any]


def boost_index(settings: config.Settings, profile: str, index: str | None = None) -> str:
    """The index a boost profile is previewed, diffed and checked on: `index` if given, else
    the first index whose default profile it is (AFFINITY_INDEX_PROFILES), else the catalog."""
    mapped = [i for i, name in settings.index_profile_map.items() if name == profile]
    return index or (mapped[0] if mapped else settings.indices.catalog)


def search_body(query: str, size: int) -> dict[str, Any]:
    """What `affinity search` sends: title (x2) and description; "" browses everything."""
    if not query.strip():
        return {"size": size, "query": {"match_all": {}}}
    fields = ["title^2", "description"]
    return {"size": size, "query": {"multi_match": {"query": query, "fields": fields}}}


def run_many(es: OpenSearch, index: str, results: Sequence[RewriteResult]) -> list[Hit]:
    """Each rewritten search's response (pins placed), in _msearch batches."""
    out: list[Hit] = []
    for start in range(0, len(results), BATCH):
        batch = results[start : start + BATCH]
        lines: list[dict[str, Any]] = []
        for result in batch:
            if result.pins is None:
                lines += [{"index": index}, result.body]
            else:
                lines += pins.msearch_request(index, result.body, result.pins, {})[0]
        responses = es.msearch(body=lines)["responses"]
        at = 0
        for result in batch:
            if result.pins is None:
                out.append(responses[at])
                at += 1
            else:
                status, merged = pins.from_msearch(
                    {"responses": responses[at : at + 2]}, result.pins
                )
                out.append(merged if status == 200 else {"error": merged, "hits": {"hits": []}})
                at += 2
    return out


def _ids(response: Hit) -> list[str]:
    return [h["_id"] for h in response.get("hits", {}).get("hits", [])]


# --- preview ---------------------------------------------------------------------------------


@dataclass
class Preview:
    query: str
    user: str
    boost: BoostProfile
    generic: list[Hit]
    personalized: list[Hit]
    with_rules: list[Hit]
    log: dict[str, Any]
    why: dict[str, list[str]] = field(default_factory=dict)  # item id -> reasons
    hidden: list[tuple[Hit, str]] = field(default_factory=list)


def preview(
    es: OpenSearch,
    settings: config.Settings,
    index: str,
    boost: BoostProfile,
    user_id: str,
    query: str,
    size: int = TOP,
    context: RequestContext | None = None,
) -> Preview:
    """The three rankings of `query` for `user_id` under `boost`, and why items moved."""
    now = time.time()
    p = Personalizer(es, settings, {boost.name: boost})
    bound = p.boost(boost.name)
    ctx = replace(context or RequestContext(), now=now, user=p.pseudonym(user_id))
    user = p.user_affinity(user_id, bound)
    body = search_body(query, max(size, DEPTH))
    plain = es.search(index=index, body=body)
    no_rules = replace(bound, rules=())
    personal, ruled = (rewrite(body, user, b, ctx) for b in (no_rules, bound))
    personal_resp, ruled_resp = run_many(es, index, [personal, ruled])
    out = Preview(
        query,
        user_id,
        bound,
        _hits(plain),
        _hits(personal_resp),
        _hits(ruled_resp),
        dict(ruled.log),
    )
    ranks = [_rank_of(out.generic), _rank_of(out.personalized), _rank_of(out.with_rules)]
    for hit in out.with_rules[:size]:
        out.why[hit["_id"]] = _reasons(hit, ranks, ruled, user, bound, now)
    shown = {h["_id"] for h in out.with_rules}
    for hit in out.generic[:size]:
        rule = _hidden_by(hit, ruled, now)
        if hit["_id"] not in shown and rule:
            out.hidden.append((hit, rule))
    return out


def _hits(response: Hit) -> list[Hit]:
    return list(response.get("hits", {}).get("hits", []))


def _rank_of(hits: list[Hit]) -> dict[str, int]:
    return {h["_id"]: i + 1 for i, h in enumerate(hits)}


def _reasons(
    hit: Hit,
    ranks: list[dict[str, int]],
    result: RewriteResult,
    user: UserAffinity | None,
    boost: BoostProfile,
    now: float,
) -> list[str]:
    g, p, f = (r.get(hit["_id"]) for r in ranks)
    if "_pinned" in hit:
        return [
            f"pinned at {hit['_pinned']['position']} by rule {hit['_pinned']['rule']}"
            f" (generic {_place(g)})"
        ]
    source = hit.get("_source") or {}
    params = reference.script_params(user, boost)
    item = reference.hit_from_source(hit["_id"], 0.0, source, reference.script_fields(params))
    reasons: list[str] = []
    if g != p:
        aff, found = reference.affinity(item.attributes, params)
        alpha_eff = float(result.log.get("alpha_eff") or 0.0)
        values = ", ".join(f"{m.attribute}={m.value} {m.affinity:.2f}" for m in found if m.value)
        reasons.append(
            f"affinity +{alpha_eff * aff:.3f} ({values or 'no known value'}): "
            f"generic {_place(g)} -> personalized {_place(p)}"
        )
    if p != f:
        effects = _rule_parts(hit, result, now) or ["other items moved"]
        reasons.append(f"{'; '.join(effects)}: personalized {_place(p)} -> with rules {_place(f)}")
    return reasons


def _rule_parts(hit: Hit, result: RewriteResult, now: float) -> list[str]:
    """Each boost (+weight) and bury (x factor) rule the hit matches."""
    source, item = hit.get("_source") or {}, hit["_id"]
    boosts = [
        f"{b.rule} +{b.value:g}"
        for b in result.rules.boosts
        if matches(b.filter, source, item, now)
    ]
    buries = [
        f"{b.rule} x{b.value:g}"
        for b in result.rules.buries
        if matches(b.filter, source, item, now)
    ]
    return boosts + buries


def _place(rank: int | None) -> str:
    return f"#{rank}" if rank is not None else f"below #{DEPTH}"


def _hidden_by(hit: Hit, result: RewriteResult, now: float) -> str | None:
    source = hit.get("_source") or {}
    return next(
        (h.rule for h in result.rules.hides if matches(h.filter, source, hit["_id"], now)), None
    )


def format_preview(pv: Preview, size: int = TOP, width: int = 38) -> str:
    log = pv.log
    lines = [
        f"query {pv.query!r}, user {pv.user}, boost profile {pv.boost.name} "
        f"({pv.boost.version}) from {pv.boost.source}",
        f"alpha_eff {float(log.get('alpha_eff') or 0):.3f}, segments "
        f"{', '.join(log.get('segments') or []) or '-'}, rules fired "
        f"{', '.join(log.get('rules_fired') or []) or '-'}",
        "PERSONALIZED is the profile without its rules (segment alpha kept); WITH RULES is "
        "what the proxy would serve",
        f"    {'GENERIC':<{width}} {'PERSONALIZED':<{width}} {'WITH RULES':<{width}}",
    ]
    for i in range(size):
        cells = [_cell(hits, i, width) for hits in (pv.generic, pv.personalized, pv.with_rules)]
        if any(cells):
            lines.append(f"{i + 1:>3} " + " ".join(f"{c:<{width}}" for c in cells))
    lines.append("\nwhy (with rules):")
    for hit in pv.with_rules[:size]:
        for reason in pv.why.get(hit["_id"], []):
            lines.append(f"  {_label(hit)[:50]}: {reason}")
    for hit, rule in pv.hidden:
        lines.append(f"  {_label(hit)[:50]}: hidden by rule {rule}")
    return "\n".join(lines)


def _cell(hits: list[Hit], i: int, width: int) -> str:
    if i >= len(hits):
        return ""
    score = hits[i].get("_score")
    tail = "  pin" if "_pinned" in hits[i] else f" {score or 0:7.3f}"
    return f"{_label(hits[i])[: width - len(tail)]}{tail}"


def _label(hit: Hit) -> str:
    source = hit.get("_source") or {}
    return str(source.get("title") or hit["_id"])
