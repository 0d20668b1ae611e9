"""Rules against the real engine: the engine's ranking equals the reference scorer's (scores
within 1e-4 relative, pins at their positions) on one shard and on three (the rescore window
is per shard), a segment rule moves only its segment's users, and pins work where the query
alone could not put the items.

Needs a real node (fixtures `opensearch`, `bootstrapped`, `index_prefix` in conftest.py).
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from dataclasses import replace

import pytest
from engine_helpers import close, scratch_index, shard_of
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st
from opensearchpy import OpenSearch

from rewriter import config, privacy
from rewriter.boost.dsl_eval import matches
from rewriter.boost.profile import BoostProfile, ColdStart, Shape, parse_boost_profile
from rewriter.boost.rules import Boost, Bury, Hide, Pin, PinItem, Rule, Where
from rewriter.profiles.fold import empty_profile
from rewriter.profiles.view import UserAffinity
from rewriter.ranking.reference import Hit, hit_from_source, ranking, score
from rewriter.ranking.rewrite import JSON, RequestContext, RewriteResult, rewrite
from rewriter.serve.api import Personalizer, run_search

pytestmark = pytest.mark.engine

NOW = 1_795_000_000.0  # 2026-11-18
DAY = 86_400.0
BRANDS = ["nike", "adidas", "puma"]
CATEGORIES = ["shoes", "shirts", "refurbished"]
WORDS = ["red", "blue", "shoe", "shirt", "running"]
ATTRIBUTES = ["brand", "category"]
MAPPING = {
    "properties": {
        "title": {"type": "text"},
        "brand": {"type": "keyword"},
        "category": {"type": "keyword"},
        "price": {"type": "float"},
        "created_at": {"type": "date"},
        "in_stock": {"type": "boolean"},
        "popularity": {"type": "float"},
    }
}


def _catalog(
    engine: OpenSearch, prefix: str, docs: list[dict[str, JSON]], shards: int = 1
) -> AbstractContextManager[str]:
    return scratch_index(engine, f"{prefix}rules", MAPPING, docs, shards)


def _served(
    engine: OpenSearch,
    index: str,
    request: dict[str, JSON],
    result: RewriteResult,
    docs: list[dict[str, JSON]],
    user: UserAffinity | None,
    boost: BoostProfile,
) -> None:
    """The page the engine serves (pins merged) equals the reference's page."""
    plain = {**request, "from": 0, "size": 100, "explain": True}  # explain: each hit's _shard
    plain_hits = engine.search(index=index, body=plain)["hits"]["hits"]
    hits = [
        hit_from_source(h["_id"], h["_score"], h["_source"], ATTRIBUTES, shard_of(h))
        for h in plain_hits
    ]
    scored = score(hits, user, boost, result.log["shape"], result.rules, now=NOW)  # type: ignore[arg-type]
    available = {
        str(i): Hit(str(i), 0.0, source=d)
        for i, d in enumerate(docs)
        if not any(matches(h.filter, d, str(i), NOW) for h in result.rules.hides)
    }
    expected = ranking(scored, result.rules, available)
    start, size = int(request["from"]), int(request["size"])  # type: ignore[arg-type]
    page = expected[start : start + size]
    got = run_search(engine, index, result)["hits"]["hits"]
    final = {h.id: h.final for h in scored}
    assert len(got) == len(page), (got, page, result.log)
    for hit, (want_id, pinned) in zip(got, page, strict=True):
        if pinned is not None:
            assert (hit["_id"], hit["_pinned"]["position"]) == (want_id, pinned), (hit, page)
            continue
        assert "_pinned" not in hit
        assert close(hit["_score"], final[hit["_id"]]), (hit, result.log)
        assert close(hit["_score"], final[want_id]), ("order differs", hit, want_id)


# --- the property test -----------------------------------------------------------------------

_day = st.integers(-60, 5).map(lambda d: time.strftime("%Y-%m-%d", time.gmtime(NOW + d * DAY)))
_docs = st.lists(
    st.fixed_dictionaries(
        {"title": st.lists(st.sampled_from(WORDS), min_size=1, max_size=3).map(" ".join)},
        optional={
            "brand": st.sampled_from(BRANDS),
            "category": st.lists(st.sampled_from(CATEGORIES), min_size=1, max_size=2),
            "price": st.integers(1, 100),
            "created_at": _day,
            "in_stock": st.booleans(),
            "popularity": st.floats(0, 100, allow_nan=False),
        },
    ),
    min_size=1,
    max_size=20,
)
_where = st.one_of(
    st.sampled_from(BRANDS).map(lambda b: Where(terms=(("brand", (b,)),))),
    st.sampled_from(CATEGORIES).map(lambda c: Where(terms=(("category", (c,)),))),
    st.integers(1, 40).map(lambda d: Where(created_within_s=d * DAY)),
    st.integers(10, 90).map(lambda p: Where(dsl={"range": {"price": {"lte": p}}})),
    st.just(Where(dsl={"bool": {"must_not": [{"exists": {"field": "brand"}}]}})),
    st.just(Where(terms=(("brand", ("nike",)),), dsl={"term": {"in_stock": True}})),
)
_action = st.one_of(
    st.builds(Boost, _where, st.floats(0.1, 5)),
    st.builds(Bury, _where, st.floats(0.05, 0.95)),
    st.builds(
        Hide,
        st.sampled_from(
            [Where(terms=(("in_stock", (False,)),)), Where(terms=(("category", ("refurbished",)),))]
        ),
    ),
    st.builds(
        Pin,
        st.lists(
            st.builds(PinItem, st.sampled_from(["0", "1", "2", "5", "missing"]), st.integers(1, 8)),
            min_size=1,
            max_size=3,
            unique_by=(lambda p: p.item, lambda p: p.position),
        ).map(tuple),
    ),
)
_rules = st.lists(_action, min_size=1, max_size=4).map(
    lambda actions: tuple(Rule(f"r{i}", a) for i, a in enumerate(actions))
)
_users = st.one_of(
    st.none(),
    st.builds(
        UserAffinity,
        st.just("u"),
        st.fixed_dictionaries(
            {"brand": st.dictionaries(st.sampled_from(BRANDS), st.floats(0.05, 1), min_size=1)}
        ),
        st.floats(0.5, 50),
    ),
)
_queries = st.one_of(
    st.none(),
    st.sampled_from(WORDS).map(lambda w: {"match": {"title": w}}),
    st.just({"bool": {"filter": [{"terms": {"brand": ["nike", "puma"]}}]}}),
)


def _boosts(shape: Shape) -> st.SearchStrategy[BoostProfile]:
    return st.builds(
        BoostProfile,
        name=st.just("prop"),
        shape=st.just(shape),
        alpha=st.floats(0.1, 3),
        k=st.floats(0, 10),
        window=st.integers(1, 10),
        attributes=st.just({"brand": 1.0, "category": 0.5}),
        cold_start=st.builds(ColdStart, strategy=st.sampled_from(["popularity", "none"])),
        rules=_rules,
    )


def _property(shape: Shape, shards: int):  # type: ignore[no-untyped-def]
    @settings(
        max_examples=20,
        deadline=None,
        phases=[Phase.explicit, Phase.reuse, Phase.generate],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(
        docs=_docs,
        user=_users,
        boost=_boosts(shape),
        query=_queries,
        start=st.integers(0, 6),
        size=st.integers(1, 12),
    )
    def check(
        opensearch: OpenSearch,
        bootstrapped: config.Settings,
        docs: list[dict[str, JSON]],
        user: UserAffinity | None,
        boost: BoostProfile,
        query: JSON,
        start: int,
        size: int,
    ) -> None:
        request: dict[str, JSON] = {"from": start, "size": size}
        if query is not None:
            request["query"] = query
        result = rewrite(request, user, boost, RequestContext(now=NOW))
        event(f"rules fired: {len(result.rules.fired)}, pins: {len(result.rules.pins)}")
        with _catalog(opensearch, bootstrapped.indices.prefix, docs, shards) as index:
            _served(opensearch, index, request, result, docs, user, boost)

    return check


test_rules_rescore_match_reference = _property("rescore", shards=1)
test_rules_function_score_match_reference = _property("function_score", shards=1)
# Shards change what the rescore window reaches; function_score adds to every hit on any shard.
test_rules_rescore_on_three_shards_match_reference = _property("rescore", shards=3)


# --- a segment rule moves its segment only ---------------------------------------------------

SHOP = [
    {"title": "running shoe", "brand": "zenit", "category": "shoes", "price": 80},
    {"title": "running shoe light", "brand": "acme", "category": "shoes", "price": 60},
    {"title": "running shoe trail", "brand": "other", "category": "shoes", "price": 90},
    {"title": "running shirt", "brand": "zenit", "category": "shirts", "price": 30},
    {"title": "rain jacket", "brand": "acme", "category": "jackets", "price": 120},
]
SEGMENT_PROFILE = """
name: seg
alpha: 1.0
k: 5
attributes: {brand: 1.0}
segments:
  returning: {when: {sessions: {gte: 3}}}
rules:
  - id: acme-for-returning
    segment: returning
    boost: {brand: acme, weight: 3.0}
"""


def _store_user(es: OpenSearch, s: config.Settings, raw: str, sessions: int) -> None:
    """A profile document whose affinities favour zenit and whose counters say `sessions`."""
    pseudonym = privacy.pseudonymize(raw, config.user_secret(s))
    doc = dict(empty_profile(pseudonym, _fold_config()))
    doc.update(
        landmark=time.time(),
        mass=20.0,
        first_seen=time.time() - 30 * DAY,
        last_seen=time.time(),
        affinities={"brand": {"zenit": 20.0, "acme": 2.0}},
        counters={"events": 20, "sessions": sessions, "purchases": 0, "lifetime_value": 0.0},
    )
    es.index(index=s.indices.profiles, id=pseudonym, body=doc, refresh=True)


def _fold_config():  # type: ignore[no-untyped-def]
    from rewriter.profiles.fold import FoldConfig

    return FoldConfig()


def test_segment_rule_moves_only_the_segment(
    opensearch: OpenSearch, bootstrapped: config.Settings
) -> None:
    with_rule = parse_boost_profile(SEGMENT_PROFILE, source="seg.yaml")
    without = replace(with_rule, name="seg-off", rules=())
    _store_user(opensearch, bootstrapped, "returning-1", sessions=5)
    _store_user(opensearch, bootstrapped, "oneoff-1", sessions=1)
    p = Personalizer(opensearch, bootstrapped, {"seg": with_rule, "seg-off": without})
    body: dict[str, JSON] = {"query": {"match": {"title": "running"}}, "size": 10}
    ctx = RequestContext(now=NOW)
    with _catalog(opensearch, bootstrapped.indices.prefix, SHOP) as index:
        ranks: dict[tuple[str, str], list[str]] = {}
        for raw in ("returning-1", "oneoff-1"):
            for name in ("seg", "seg-off"):
                response = p.search(index, body, raw, ctx, boost_profile=name)
                ranks[raw, name] = [h["_id"] for h in response["hits"]["hits"]]
                log = response["personalization"]
                fired = raw == "returning-1" and name == "seg"
                assert (log["rules_fired"] == ["acme-for-returning"]) is fired, log
                assert log["segments"] == (["returning"] if raw == "returning-1" else [])
                user = p.user_affinity(raw, p.boost(name))
                result = p.rewrite(index, body, raw, ctx, boost_profile=name)
                _served(opensearch, index, {**body, "from": 0}, result, SHOP, user, p.boost(name))
        assert ranks["returning-1", "seg"][0] == "1"  # acme's shoe first for the returning user
        assert ranks["returning-1", "seg"] != ranks["returning-1", "seg-off"]
        assert ranks["oneoff-1", "seg"] == ranks["oneoff-1", "seg-off"]
        assert ranks["oneoff-1", "seg"][0] == "0"  # zenit first: affinity alone


# --- pins where the query cannot reach -------------------------------------------------------


def test_pins_place_items_the_query_does_not_match_or_rank_past_the_window(
    opensearch: OpenSearch, bootstrapped: config.Settings
) -> None:
    docs: list[dict[str, JSON]] = [
        {"title": f"running shoe {'fast ' * (20 - i)}", "brand": "zenit", "in_stock": True}
        for i in range(20)
    ]
    docs += [
        {"title": "rain jacket", "brand": "acme", "in_stock": True},  # 20: does not match
        {"title": "running shoe", "brand": "acme", "in_stock": False},  # 21: hidden
    ]
    profile = parse_boost_profile(
        "name: pins\nwindow: 3\nattributes: {brand: 1}\n"
        "rules:\n"
        "  - {id: oos, hide: {terms: {in_stock: false}}}\n"
        "  - id: p\n"
        "    pin: [{item: '20', position: 2}, {item: '19', position: 4},\n"
        "          {item: '21', position: 5}]\n"
    )
    user = UserAffinity("u", {"brand": {"zenit": 1.0}}, 10.0)
    pages = []
    with _catalog(opensearch, bootstrapped.indices.prefix, docs) as index:
        for start in (0, 4, 8):
            request: dict[str, JSON] = {
                "query": {"match": {"title": "running"}},
                "from": start,
                "size": 4,
            }
            result = rewrite(request, user, profile, RequestContext(now=NOW))
            _served(opensearch, index, request, result, docs, user, profile)
            pages += run_search(opensearch, index, result)["hits"]["hits"]
    ids = [h["_id"] for h in pages]
    assert ids[1] == "20" and ids[3] == "19"  # placed although unmatched / past the window
    assert "21" not in ids  # hide wins over pin
    assert len(ids) == len(set(ids)) == 12  # pages neither repeat nor skip
