"""rewrite(): decisions one by one, purity, and agreement with the reference scorer."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rewriter.boost.profile import BoostProfile, ColdStart
from rewriter.profiles.view import UserAffinity
from rewriter.ranking.reference import alpha_eff, script_params
from rewriter.ranking.rewrite import JSON, RequestContext, is_relevance_sort, rewrite

USER = UserAffinity("u1", {"brand": {"nike": 1.0, "puma": 0.5}, "category": {"shoes": 0.8}}, 10.0)
BOOST = BoostProfile(name="shop", version="abc123", alpha=1.5, k=5.0)
FS_BOOST = BoostProfile(name="shop", version="abc123", shape="function_score")
CTX = RequestContext()
QUERY: dict[str, JSON] = {"match": {"title": "running shoes"}}


def _rescore_entries(body: dict[str, JSON]) -> list[JSON]:
    rescore = body["rescore"]
    assert isinstance(rescore, list)
    return rescore


def test_rescore_shape_appends_our_rescorer() -> None:
    result = rewrite({"query": QUERY}, USER, BOOST, CTX)
    assert result.body["query"] == QUERY
    [ours] = _rescore_entries(result.body)
    assert ours == {
        "window_size": 100,
        "query": {
            "rescore_query": {
                "script_score": {
                    "query": {"match_all": {}},
                    "script": {"id": "affinity", "params": script_params(USER, BOOST)},
                }
            },
            "query_weight": 1,
            "rescore_query_weight": alpha_eff(1.5, 10.0, 5.0),
            "score_mode": "total",
        },
    }
    assert result.log["applied"] is True
    assert result.log["alpha_eff"] == pytest.approx(1.0)
    assert result.log["attributes"] == {"brand": 1.0, "category": 1.0}
    assert result.log["boost_profile"] == {"name": "shop", "version": "abc123"}


def test_function_score_shape_wraps_the_query() -> None:
    result = rewrite({"query": QUERY, "size": 5}, USER, FS_BOOST, CTX)
    assert result.body == {
        "query": {
            "function_score": {
                "query": QUERY,
                "functions": [
                    {
                        "script_score": {
                            "script": {"id": "affinity", "params": script_params(USER, FS_BOOST)}
                        },
                        "weight": alpha_eff(1.0, 10.0, 5.0),
                    }
                ],
                "boost_mode": "sum",
                "score_mode": "sum",
            }
        },
        "size": 5,
    }
    assert result.log["shape"] == "function_score"
    assert result.log["window"] is None


def test_function_score_without_query_uses_match_all() -> None:
    body = rewrite({"size": 3}, USER, FS_BOOST, CTX).body
    assert body["query"]["function_score"]["query"] == {"match_all": {}}  # type: ignore[index,call-overload]


@pytest.mark.parametrize(
    "existing",
    [
        {"window_size": 10, "query": {"rescore_query": {"match": {"title": "x"}}}},
        [{"window_size": 10, "query": {"rescore_query": {"match": {"title": "x"}}}}],
    ],
)
def test_app_rescorers_come_first(existing: JSON) -> None:
    body = rewrite({"query": QUERY, "rescore": existing}, USER, BOOST, CTX).body
    entries = _rescore_entries(body)
    apps = existing if isinstance(existing, list) else [existing]
    assert entries[:-1] == apps
    assert entries[-1]["query"]["rescore_query"]["script_score"]  # type: ignore[index,call-overload]


@pytest.mark.parametrize(
    ("context", "user", "body", "reason"),
    [
        (RequestContext(personalization_off=True), USER, {"query": QUERY}, "personalization_off"),
        (CTX, UserAffinity("u", USER.affinities, 5.0, opt_out=True), {}, "opt_out"),
        (CTX, USER, {"query": QUERY, "sort": [{"price": "asc"}]}, "sorted_by_field"),
        (CTX, USER, {"sort": [{"_score": "desc"}, "_doc"]}, "sorted_by_field"),
        (CTX, USER, {"sort": {"_score": "asc"}}, "sorted_by_field"),
        (CTX, USER, {"query": QUERY, "size": 0, "aggs": {}}, "no_hits_requested"),
    ],
)
def test_not_personalized_leaves_the_body_equal(
    context: RequestContext, user: UserAffinity, body: dict[str, JSON], reason: str
) -> None:
    result = rewrite(body, user, BOOST, context)
    assert result.body == body
    assert result.log["applied"] is False
    assert result.log["reason"] == reason
    assert result.log["mass"] is None


@pytest.mark.parametrize(
    "sort",
    [None, "_score", ["_score"], {"_score": "desc"}, [{"_score": {"order": "desc"}}], []],
)
def test_relevance_sorts(sort: JSON) -> None:
    assert is_relevance_sort(sort)
    body = {"query": QUERY} if sort is None else {"query": QUERY, "sort": sort}
    result = rewrite(body, USER, BOOST, CTX)
    assert result.log["applied"] is True
    assert result.body.get("sort") == sort


@pytest.mark.parametrize(
    "sort", ["price", ["_score", "price"], {"_score": "asc"}, [{"_score": {"order": "asc"}}]]
)
def test_field_sorts(sort: JSON) -> None:
    assert not is_relevance_sort(sort)


def test_cold_start_popularity_rescore() -> None:
    boost = BoostProfile(name="t", cold_start=ColdStart("popularity", 0.3, "sqrt"))
    result = rewrite({"query": QUERY}, None, boost, CTX)
    [ours] = _rescore_entries(result.body)
    query = ours["query"]  # type: ignore[index,call-overload]
    assert query["rescore_query_weight"] == 0.3
    inner = query["rescore_query"]["function_score"]
    assert inner["functions"] == [
        {
            "field_value_factor": {
                "field": "popularity",
                "factor": 1.0,
                "modifier": "sqrt",
                "missing": 0,
            }
        }
    ]
    assert inner["boost_mode"] == "replace"
    assert (result.log["applied"], result.log["mode"], result.log["reason"]) == (
        True,
        "popularity",
        "no_user",
    )


def test_cold_start_none_is_unchanged() -> None:
    boost = BoostProfile(name="t", cold_start=ColdStart("none"))
    thin = UserAffinity("u", {}, 0.0)
    for user, reason in [(None, "no_user"), (thin, "no_profile_cold_start")]:
        result = rewrite({"query": QUERY}, user, boost, CTX)
        assert result.body == {"query": QUERY}
        assert (result.log["applied"], result.log["reason"]) == (False, reason)


def test_collapse_falls_back_to_function_score() -> None:
    body = {"query": QUERY, "collapse": {"field": "brand"}}
    result = rewrite(body, USER, BOOST, CTX)
    assert "rescore" not in result.body
    assert "function_score" in result.body["query"]  # type: ignore[operator]
    assert (result.log["shape"], result.log["shape_fallback"]) == ("function_score", "collapse")


@pytest.mark.parametrize(
    ("page", "beyond"),
    [({}, False), ({"from": 90, "size": 10}, False), ({"from": 95, "size": 10}, True)],
)
def test_window_is_fixed_and_pages_beyond_it_are_flagged(
    page: dict[str, int], beyond: bool
) -> None:
    result = rewrite({"query": QUERY, **page}, USER, BOOST, CTX)
    assert _rescore_entries(result.body)[-1]["window_size"] == 100  # type: ignore[index,call-overload]
    assert result.log["page_beyond_window"] is beyond


def test_explain_adds_the_params_to_the_log() -> None:
    assert "params" not in rewrite({}, USER, BOOST, CTX).log
    log = rewrite({}, USER, BOOST, RequestContext(explain=True)).log
    assert log["params"] == script_params(USER, BOOST)


def test_log_keys_are_stable() -> None:
    applied = rewrite({}, USER, BOOST, CTX).log
    skipped = rewrite({}, USER, BOOST, RequestContext(personalization_off=True)).log
    assert set(applied) == set(skipped)


_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5))
_json = st.recursive(
    _leaf,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)
_bodies = st.fixed_dictionaries(
    {},
    optional={
        "query": st.sampled_from([QUERY, {"bool": {"filter": [{"term": {"brand": "x"}}]}}]),
        "aggs": st.dictionaries(st.text(max_size=5), _json, max_size=2),
        "_source": _json,
        "highlight": _json,
        "from": st.integers(0, 200),
        "size": st.integers(1, 200),
        "rescore": st.just({"window_size": 5, "query": {"rescore_query": QUERY}}),
        "collapse": st.just({"field": "brand"}),
        "track_total_hits": st.booleans(),
    },
)


@settings(max_examples=200)
@given(body=_bodies, shape=st.sampled_from(["rescore", "function_score"]), cold=st.booleans())
def test_never_mutates_and_keeps_app_keys(body: dict[str, JSON], shape: str, cold: bool) -> None:
    before = copy.deepcopy(body)
    boost = BoostProfile(name="t", shape=shape)  # type: ignore[arg-type]
    result = rewrite(body, None if cold else USER, boost, CTX)
    assert body == before
    for key, value in body.items():
        if key not in ("query", "rescore"):
            assert result.body[key] == value
            assert not isinstance(value, dict | list) or result.body[key] is not value
    assert result.log["applied"] is True


@pytest.mark.parametrize("page", [{"size": "lots"}, {"from": "x"}])
def test_unparsable_paging_passes_through_for_opensearch_to_reject(page: dict[str, JSON]) -> None:
    result = rewrite({"query": QUERY, **page}, USER, BOOST, CTX)
    assert result.log["applied"] is True
    assert {key: result.body[key] for key in page} == page
