"""`GET /_affinity/placements?slot=NAME`: the banner or offer a page slot shows this user, and
the search slots' decisions inside search responses (`personalization.placements`).

Served from memory: the boost profile's placements (boost/placements.py), the user's
segments from their profile and context (one realtime GET, as a search), and frequency caps
counted per process (`CapCounter`: decisions per user, placement and UTC day; a proxy with
several workers counts per worker). Each decision gets a `decision_id` (`d-` + 32 hex) and is
logged as an impression (doc id = decision_id, `mode: placement`, `item_ids: [placement]`), so
impression, click and purchase events that carry it back join it in `affinity placements
report`.

Parameters: `slot` (required), `query` (search words, for placements with a `query`
condition), plus the search headers. An unknown slot is a 404 naming it and the known ones.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from dataclasses import replace
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from rewriter import privacy
from rewriter.boost import placements
from rewriter.boost.profile import BoostProfile
from rewriter.boost.segments import matched_segments
from rewriter.engine.http_pool import EngineError
from rewriter.profiles.doc import UnreadableProfile
from rewriter.profiles.view import UserAffinity
from rewriter.ranking.facts import facts_for
from rewriter.ranking.rewrite import RequestContext
from rewriter.serve.errors import ProxyError, json_response
from rewriter.serve.search import _context, _engine_error, _log_unreadable, _user_affinity
from rewriter.serve.state import ProxyState

PATH = "/_affinity/placements"
DAY_S = 86400
MAX_COUNTED = 200_000
DECISION_PREFIX = "d-"


class CapCounter:
    """Decisions per (user, placement) today; forgets earlier days."""

    def __init__(self) -> None:
        self.day = -1
        self.counts: dict[tuple[str, str], int] = defaultdict(int)

    def _today(self, now: float) -> None:
        day = int(now // DAY_S)
        if day != self.day or len(self.counts) > MAX_COUNTED:
            self.day, self.counts = day, defaultdict(int)

    def shown(self, user: str, placement: str, now: float) -> int:
        self._today(now)
        return self.counts.get((user, placement), 0)

    def add(self, user: str, placement: str, now: float) -> None:
        self._today(now)
        self.counts[(user, placement)] += 1


def caps(state: Any) -> CapCounter:
    counter = getattr(state, "placement_caps", None)
    if counter is None:
        counter = CapCounter()
        state.placement_caps = counter
    return counter


def decide_slot(
    app_state: Any,
    boost: BoostProfile,
    slot: placements.Slot,
    affinity: UserAffinity | None,
    ctx: RequestContext,
    text: str,
    raw_user: str | None,
) -> dict[str, Any]:
    """One slot's decision as the response shows it; counted for caps and logged."""
    now = time.time()
    counter, user = caps(app_state), ctx.user
    opted_out = affinity is not None and affinity.opt_out
    facts = facts_for(
        None if opted_out else affinity, now=now, pseudonym=user, device=ctx.device, geo=ctx.geo
    )
    segments = () if opted_out else tuple(s.name for s in matched_segments(boost.segments, facts))
    request = placements.Request(now, segments, text, ctx.device, ctx.geo, user)
    choice = placements.decide(
        slot, request, lambda pid: counter.shown(user, pid, now) if user else 0
    )
    if choice is None:
        return {"slot": slot.name, "placement": None, "decision_id": None, "segments": segments}
    decision_id = f"{DECISION_PREFIX}{uuid.uuid4().hex}"
    if user:
        counter.add(user, choice.placement.id, now)
    decision = {
        "slot": slot.name,
        "placement": choice.placement.id,
        "content": choice.content,
        "decision_id": decision_id,
        "experiment": choice.placement.experiment if choice.variant else None,
        "variant": choice.variant,
        "segments": list(segments),
    }
    _log(app_state, decision, user, boost, now)
    return decision


def _log(
    app_state: Any, decision: dict[str, Any], user: str | None, boost: BoostProfile, now: float
) -> None:
    writer = app_state.proxy.impressions
    if writer is None:
        return
    writer.record(
        {
            "query_id": decision["decision_id"],
            "user_id": user,
            "experiment": decision["experiment"],
            "variant": decision["variant"],
            "mode": "placement",
            "item_ids": [decision["placement"]],
            "items": [],
            "slot": decision["slot"],
            "segments": decision["segments"],
            "boost_profile": boost.name,
            "applied": True,
            "timestamp": now,
        }
    )


def search_placements(
    request: Request,
    boost: BoostProfile,
    affinity: UserAffinity | None,
    ctx: RequestContext,
    text: str,
) -> list[dict[str, Any]]:
    """The decisions of the boost profile's search slots (`search_*`) for one search."""
    if ctx.personalization_off:
        return []
    user = request.headers.get("x-user-id")
    return [
        decide_slot(request.app.state, boost, slot, affinity, ctx, text, user)
        for slot in boost.placements
        if slot.in_search
    ]


async def placements_endpoint(request: Request) -> Response:
    state: ProxyState = request.app.state.proxy
    try:
        name = request.query_params.get("slot", "").strip()
        if not name:
            raise ProxyError(400, "affinity_bad_placement", "slot: required (e.g. ?slot=home_hero)")
        user, ctx = _context(request)
        pseudonym = privacy.pseudonymize(user, state.secret) if user else None
        ctx = replace(ctx, user=pseudonym)
        boost = state.boost_for("", request.headers.get("x-boost-profile"))
        slot = placements.slot_named(boost.placements, name)
        if slot is None:
            known = ", ".join(s.name for s in boost.placements) or "none"
            raise ProxyError(
                404,
                "affinity_unknown_slot",
                f"slot {name[:100]!r} is not in boost profile {boost.name!r} (its slots: {known})",
            )
        try:
            affinity = await _user_affinity(state, pseudonym, boost)
        except UnreadableProfile as exc:
            _log_unreadable(exc)
            affinity = None
        except EngineError as exc:
            raise _engine_error(exc) from exc
        text = request.query_params.get("query", "")
        decision = decide_slot(request.app.state, boost, slot, affinity, ctx, text, user)
    except ProxyError as err:
        return err.response()
    return json_response(
        {**decision, "boost_profile": {"name": boost.name, "version": boost.version}}
    )


ROUTES = [Route(PATH, placements_endpoint, methods=["GET"])]
