"""ranking/facets.py cases beside the golden ones (tests/golden/facets)."""

from __future__ import annotations

from rewriter.boost.profile import BoostProfile
from rewriter.profiles.view import UserAffinity
from rewriter.ranking.facets import FAVORED_AGG_PREFIX, plan_facets


def test_facets_leave_an_app_alone_that_uses_the_sibling_names() -> None:
    user = UserAffinity("u", {"brand": {"zenit": 1.0}}, 10.0)
    body = {"aggs": {"b": {"terms": {"field": "brand"}}, FAVORED_AGG_PREFIX + "b": {"terms": {}}}}
    assert plan_facets(body, user, BoostProfile(name="x"), False) is None
    assert (
        plan_facets(
            {"aggs": {"b": {"terms": {"field": "brand"}}}}, user, BoostProfile(name="x"), True
        )
        is None
    )
    assert plan_facets(
        {"aggs": {"b": {"terms": {"field": "brand"}}}}, user, BoostProfile(name="x"), False
    )
