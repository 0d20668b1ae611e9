"""rewrite() with segments and rules: where each rule goes in each shape, and when it applies."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rewriter.boost.profile import BoostProfile, bind_secret, parse_boost_profile
from rewriter.privacy import pseudonymize
from rewriter.profiles.view import UserAffinity
from rewriter.ranking.reference import alpha_eff
from rewriter.ranking.rewrite import JSON, RequestContext, rewrite

NOW = 1_800_000_000.0
SECRET = b"unit-test-secret-0123456789abcdef"
TEXT = """
name: shop
alpha: 1.0
segments:
  returning: {when: {sessions: {gte: 3}}, alpha: 3.0}
  vip: {when: {users: [alice]}}
rules:
  - id: new-for-returning
    segment: returning
    boost: {brand: acme, weight: 2}
  - id: bury-refurb
    bury: {category: refurbished, factor: 0.5}
  - id: hide-oos
    hide: {terms: {in_stock: false}}
  - id: vip-pin
    segment: vip
    pin: [{item: sku-9, position: 2}]
"""
RESCORE = bind_secret(parse_boost_profile(TEXT), lambda raw: pseudonymize(raw, SECRET))
FUNCTION = replace(RESCORE, shape="function_score")
USER = UserAffinity("p", {"brand": {"acme": 1.0}}, 10.0, counters={"sessions": 5})
CTX = RequestContext(now=NOW)
QUERY: dict[str, JSON] = {"match": {"title": "shoe"}}
BOOST_CLAUSE = {"constant_score": {"filter": {"terms": {"brand": ["acme"]}}, "boost": 2.0}}
HIDE_CLAUSE = {"terms": {"in_stock": [False]}}
BURY = [{"filter": {"terms": {"category": ["refurbished"]}}, "weight": 0.5}]


def _bury(query: JSON) -> dict[str, JSON]:
    return {
        "function_score": {
            "query": query,
            "functions": BURY,
            "score_mode": "multiply",
            "boost_mode": "multiply",
        }
    }


def test_rescore_shape_rules_in_the_first_pass_and_bury_on_the_term() -> None:
    result = rewrite({"query": QUERY}, USER, RESCORE, CTX)
    first = {"bool": {"must": [QUERY], "should": [BOOST_CLAUSE], "must_not": [HIDE_CLAUSE]}}
    assert result.body["query"] == _bury(first)
    [ours] = result.body["rescore"]  # type: ignore[misc]
    term = ours["query"]  # type: ignore[index]
    assert term["rescore_query"] == _bury(term["rescore_query"]["function_score"]["query"])
    assert term["rescore_query"]["function_score"]["query"]["script_score"]
    assert term["rescore_query_weight"] == pytest.approx(alpha_eff(3.0, 10.0, 5.0))
    log = result.log
    assert (log["alpha"], log["alpha_segment"], log["segments"]) == (
        3.0,
        "returning",
        ["returning"],
    )
    assert log["rules_fired"] == ["new-for-returning", "bury-refurb", "hide-oos"]
    assert result.pins is None


def test_function_score_shape_buries_the_whole_sum() -> None:
    body = rewrite({"query": QUERY}, USER, FUNCTION, CTX).body
    inner = body["query"]["function_score"]["query"]  # type: ignore[index,call-overload]
    assert body["query"]["function_score"]["functions"] == BURY  # type: ignore[index,call-overload]
    assert inner["function_score"]["boost_mode"] == "sum"
    assert inner["function_score"]["query"] == {
        "bool": {"must": [QUERY], "should": [BOOST_CLAUSE], "must_not": [HIDE_CLAUSE]}
    }
    assert "rescore" not in body


def test_user_list_pin_for_the_listed_user_only() -> None:
    alice = replace(CTX, user=pseudonymize("alice", SECRET))
    result = rewrite({"query": QUERY, "size": 5}, USER, RESCORE, alice)
    assert result.log["pinned"] == [{"id": "sku-9", "position": 2, "rule": "vip-pin"}]
    assert result.pins is not None and result.pins.ids == ["sku-9"]
    assert (result.body["from"], result.body["size"]) == (0, 5)
    assert result.body["post_filter"] == {"bool": {"must_not": [{"ids": {"values": ["sku-9"]}}]}}
    assert rewrite({"query": QUERY}, USER, RESCORE, CTX).pins is None


def test_opted_out_user_gets_rules_that_need_no_segment() -> None:
    out = UserAffinity("p", {}, 0.0, opt_out=True, counters={"sessions": 9})
    result = rewrite({"query": QUERY}, out, RESCORE, CTX)
    assert result.log["rules_fired"] == ["bury-refurb", "hide-oos"]
    assert (result.log["applied"], result.log["reason"], result.log["mode"]) == (
        True,
        "opt_out",
        None,
    )
    assert result.log["segments"] == [] and "rescore" not in result.body


@pytest.mark.parametrize(
    "extra", [{"sort": [{"price": "asc"}]}, {"size": 0, "aggs": {"b": {"terms": {"field": "x"}}}}]
)
def test_field_sort_and_no_hits_keep_only_hides(extra: dict[str, JSON]) -> None:
    result = rewrite({"query": QUERY, **extra}, USER, RESCORE, CTX)
    assert result.body["query"] == {"bool": {"must": [QUERY], "must_not": [HIDE_CLAUSE]}}
    assert result.log["rules_fired"] == ["hide-oos"]
    assert "rescore" not in result.body and result.log["mode"] is None


def test_personalization_off_ignores_rules() -> None:
    result = rewrite({"query": QUERY}, USER, RESCORE, replace(CTX, personalization_off=True))
    assert result.body == {"query": QUERY}
    assert result.log["rules_fired"] == [] and result.log["applied"] is False


def test_search_after_skips_pins_and_says_so() -> None:
    ctx = replace(CTX, user=pseudonymize("alice", SECRET))
    result = rewrite({"query": QUERY, "search_after": [1]}, USER, RESCORE, ctx)
    assert result.pins is None and result.log["pins_skipped"] == "search_after"
    assert "vip-pin" not in result.log["rules_fired"]


def test_rules_apply_without_the_affinity_term() -> None:
    boost = replace(RESCORE, alpha=0.0, segments=(), rules=RESCORE.rules[1:3])
    result = rewrite(
        {}, None, replace(boost, cold_start=replace(boost.cold_start, strategy="none")), CTX
    )
    assert result.body == {
        "query": _bury({"bool": {"must": [{"match_all": {}}], "must_not": [HIDE_CLAUSE]}})
    }
    assert (result.log["applied"], result.log["reason"]) == (True, "no_user")


def test_log_keys_are_stable_with_rules() -> None:
    keys = set(rewrite({}, USER, BoostProfile(name="x"), CTX).log)
    for ctx in (CTX, replace(CTX, personalization_off=True)):
        assert set(rewrite({"query": QUERY}, USER, RESCORE, ctx).log) == keys


_bodies = st.fixed_dictionaries(
    {},
    optional={
        "query": st.sampled_from([QUERY, {"bool": {"filter": [{"term": {"brand": "x"}}]}}]),
        "from": st.integers(0, 50),
        "size": st.integers(0, 50),
        "post_filter": st.just({"term": {"color": "red"}}),
        "_source": st.just(["title"]),
        "sort": st.sampled_from(["_score", [{"price": "asc"}]]),
        "collapse": st.just({"field": "brand"}),
    },
)


@settings(max_examples=150)
@given(body=_bodies, alice=st.booleans(), shape=st.sampled_from(["rescore", "function_score"]))
def test_rules_never_mutate_the_app_body(body: dict[str, JSON], alice: bool, shape: str) -> None:
    before = copy.deepcopy(body)
    ctx = replace(CTX, user=pseudonymize("alice", SECRET) if alice else None)
    result = rewrite(body, USER, replace(RESCORE, shape=shape), ctx)  # type: ignore[arg-type]
    assert body == before
    assert result.log["applied"] is True
