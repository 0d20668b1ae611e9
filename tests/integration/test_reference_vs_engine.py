"""The engine's `_score` for rewritten queries equals the reference scorer (relative 1e-4).

Each example indexes a small generated catalog into a fresh index of one or three shards,
runs the plain app query for relevance (and each hit's shard: the rescore window is per
shard, decision 22), runs the rewritten query, and compares every returned hit's score and
the order with rewriter/ranking/reference.py. On three shards, `dfs_query_then_fetch` gives
the scores of one shard. Needs a real node (fixtures `opensearch`, `index_prefix`).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from engine_helpers import close, scratch_index, shard_of
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st
from opensearchpy import OpenSearch

from rewriter.boost.horizons import ItemMemory, SessionIntent
from rewriter.boost.profile import BoostProfile, ColdStart, Shape
from rewriter.profiles.view import UserAffinity
from rewriter.ranking.reference import hit_from_source, score
from rewriter.ranking.rewrite import JSON, RequestContext, rewrite

pytestmark = pytest.mark.engine

PAINLESS = Path(__file__).resolve().parents[2] / "painless" / "affinity.painless"
BRANDS = ["nike", "adidas", "puma", "asics"]
CATEGORIES = ["shoes", "shirts", "sport", "outdoor"]
WORDS = ["red", "blue", "shoe", "shirt", "running", "trail"]
ITEM_IDS = ["i1", "i2", "i3", "i4"]
# color is never mapped: the script must skip it; id is the item memory's field
ATTRIBUTES = ["brand", "category", "color", "id"]
MAPPING = {
    "properties": {
        "title": {"type": "text"},
        "brand": {"type": "keyword"},
        "category": {"type": "keyword"},
        "id": {"type": "keyword"},
        "popularity": {"type": "float"},
    }
}


@pytest.fixture(scope="module")
def engine(opensearch: OpenSearch) -> OpenSearch:
    body = {"script": {"lang": "painless", "source": PAINLESS.read_text()}}
    opensearch.put_script(id="affinity", body=body)
    return opensearch


def _catalog(
    engine: OpenSearch, prefix: str, docs: list[dict[str, JSON]], shards: int = 1
) -> AbstractContextManager[str]:
    return scratch_index(engine, f"{prefix}refscore", MAPPING, docs, shards)


def _keyword(values: list[str]) -> st.SearchStrategy[JSON]:
    one = st.sampled_from(values)
    return st.one_of(st.none(), st.just([]), one, st.lists(one, min_size=1, max_size=3))


_docs = st.lists(
    st.fixed_dictionaries(
        {"title": st.lists(st.sampled_from(WORDS), min_size=1, max_size=4).map(" ".join)},
        optional={
            "brand": _keyword(BRANDS),
            "category": _keyword(CATEGORIES),
            "id": st.sampled_from(ITEM_IDS),
            "popularity": st.floats(0, 1000, allow_nan=False),
        },
    ),
    min_size=1,
    max_size=25,
)
_aff = st.floats(0.01, 1)


@st.composite
def _users(draw: st.DrawFn) -> UserAffinity | None:
    """Mostly users with known values (the affinity term); sometimes none or empty."""
    kind = draw(st.sampled_from(["known"] * 6 + ["empty", "anonymous"]))
    if kind == "anonymous":
        return None
    if kind == "empty":
        return UserAffinity("u", {}, 0.0)
    affinities = {
        "brand": draw(st.dictionaries(st.sampled_from([*BRANDS, "zara"]), _aff, min_size=1)),
        "category": draw(st.dictionaries(st.sampled_from(CATEGORIES), _aff, max_size=4)),
        "color": draw(st.dictionaries(st.sampled_from(["red", "blue"]), _aff, max_size=2)),
    }
    items = st.dictionaries(st.sampled_from([*ITEM_IDS, "i9"]), _aff, max_size=4)
    horizons = {
        "session": {
            "brand": draw(st.dictionaries(st.sampled_from(BRANDS), _aff, max_size=2)),
            "item": draw(items),
        },
        "items": {"item": draw(items)},
    }
    return UserAffinity("u", affinities, draw(st.floats(0.1, 100)), horizons=horizons)


_word = st.sampled_from(WORDS)
_queries = st.one_of(
    st.none(),
    _word.map(lambda w: {"match": {"title": w}}),
    _word.map(lambda w: {"multi_match": {"query": f"{w} shoe", "fields": ["title"]}}),
    _word.map(lambda w: {"query_string": {"query": f"title:{w} OR title:red"}}),
    _word.map(
        lambda w: {
            "bool": {
                "should": [{"match": {"title": w}}],
                "filter": [{"exists": {"field": "title"}}],
            }
        }
    ),
    st.just({"bool": {"filter": [{"terms": {"brand": ["nike", "puma"]}}]}}),
    _word.map(
        lambda w: {
            "function_score": {
                "query": {"match": {"title": w}},
                "functions": [{"field_value_factor": {"field": "popularity", "missing": 1}}],
                "boost_mode": "sum",
            }
        }
    ),
)
# An app rescorer that only raises scores (query_weight 1), so the first `window` hits seen
# by our rescorer are the first hits of the plain query whatever from/size is.
_app_rescore = _word.map(
    lambda w: {"window_size": 3, "query": {"rescore_query": {"match": {"title": w}}}}
)


_weight = st.sampled_from([0.0, 0.3, 1.5])


def _boosts(shape: Shape) -> st.SearchStrategy[BoostProfile]:
    return st.builds(
        BoostProfile,
        name=st.just("prop"),
        shape=st.just(shape),
        alpha=st.floats(0.1, 3),
        k=st.floats(0, 10),
        window=st.integers(1, 12),
        top_k=st.integers(1, 5),
        attributes=st.fixed_dictionaries(
            {"brand": st.floats(0.1, 2)},
            optional={"category": st.floats(0, 2), "color": st.floats(0, 2)},
        ),
        session=st.builds(
            SessionIntent,
            weights=st.fixed_dictionaries({}, optional={"brand": _weight, "item": _weight}),
        ),
        item_memory=st.builds(ItemMemory, weight=_weight),
        cold_start=st.builds(
            ColdStart,
            strategy=st.sampled_from(["popularity", "none"]),
            popularity_weight=st.floats(0, 2),
            modifier=st.sampled_from(["none", "log1p", "sqrt"]),
        ),
    )


def _request(query: JSON, app_rescore: JSON, start: int, size: int) -> dict[str, JSON]:
    body: dict[str, JSON] = {"from": start, "size": size}
    if query is not None:
        body["query"] = query
    if app_rescore is not None:
        body["rescore"] = app_rescore
    return body


def _check(
    engine: OpenSearch,
    index: str,
    request: dict[str, JSON],
    user: UserAffinity | None,
    boost: BoostProfile,
) -> None:
    plain = {**request, "from": 0, "size": 100, "explain": True}  # explain: each hit's _shard
    plain_hits = engine.search(index=index, body=plain)["hits"]["hits"]
    hits = [
        hit_from_source(h["_id"], h["_score"], h["_source"], ATTRIBUTES, shard_of(h))
        for h in plain_hits
    ]
    result = rewrite(request, user, boost, RequestContext())
    event(f"mode={result.log['mode']}, beyond window: {result.log['page_beyond_window']}")
    event(f"horizons: {sorted(result.log.get('horizons') or {})}")  # type: ignore[arg-type]
    got = engine.search(index=index, body=result.body)["hits"]["hits"]
    expected = score(hits, user, boost, shape=result.log["shape"] or boost.shape)  # type: ignore[arg-type]
    start, size = int(request["from"]), int(request["size"])  # type: ignore[arg-type]
    page = expected[start : start + size]
    final_by_id = {h.id: h.final for h in expected}
    assert len(got) == len(page)
    for hit, want in zip(got, page, strict=True):
        assert close(hit["_score"], final_by_id[hit["_id"]]), (hit, result.log)
        assert close(hit["_score"], want.final), ("order differs", hit, want, result.log)


def _property(shape: Shape, shards: int) -> Callable[..., None]:
    """The property test for one shape on an index of `shards` shards. Shrinking is off: every
    step is an engine round trip (minutes for a failure); the failing example is printed as
    generated (<= 25 docs)."""

    @settings(
        max_examples=13,
        deadline=None,
        phases=[Phase.explicit, Phase.reuse, Phase.generate],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(
        docs=_docs,
        user=_users(),
        boost=_boosts(shape),
        query=_queries,
        app_rescore=st.none() if shape == "function_score" else st.none() | _app_rescore,
        start=st.integers(0, 5),
        size=st.integers(1, 30),
    )
    def check(
        engine: OpenSearch,
        index_prefix: str,
        docs: list[dict[str, JSON]],
        user: UserAffinity | None,
        boost: BoostProfile,
        query: JSON,
        app_rescore: JSON,
        start: int,
        size: int,
    ) -> None:
        with _catalog(engine, index_prefix, docs, shards) as index:
            _check(engine, index, _request(query, app_rescore, start, size), user, boost)

    return check


test_rescore_matches_reference = _property("rescore", shards=1)
test_function_score_matches_reference = _property("function_score", shards=1)
# Shards change what the rescore window reaches; function_score adds to every hit on any shard
# (on three shards: test_three_shards_score_as_one_with_dfs).
test_rescore_on_three_shards_matches_reference = _property("rescore", shards=3)


@pytest.mark.parametrize("shape", ["rescore", "function_score"])
def test_hand_computed_scores(engine: OpenSearch, index_prefix: str, shape: Shape) -> None:
    """match_all scores 1.0, so final = 1 + alpha_eff · Affinity can be written down."""
    docs: list[dict[str, JSON]] = [
        {"title": "a", "brand": "nike", "category": ["shoes", "sport"]},
        {"title": "b", "brand": ["nike", "adidas"]},
        {"title": "c", "category": []},
    ]
    user = UserAffinity("u", {"brand": {"nike": 1.0, "adidas": 0.5}, "category": {"sport": 0.5}}, 5)
    boost = BoostProfile(
        name="t", shape=shape, alpha=2.0, k=5.0, attributes={"brand": 1, "category": 2}
    )
    # alpha_eff = 2 · 5 / 10 = 1; a: 1 + (1·1 + 2·0.5) = 3; b: 1 + max(1, 0.5) = 2; c: 1
    body = rewrite({}, user, boost, RequestContext()).body
    with _catalog(engine, index_prefix, docs) as index:
        got = engine.search(index=index, body=body)["hits"]["hits"]
    assert [(h["_id"], h["_score"]) for h in got] == [("0", 3.0), ("1", 2.0), ("2", 1.0)]


def test_hand_computed_horizon_scores(engine: OpenSearch, index_prefix: str) -> None:
    """Session intent and item memory add their own "max over values" terms."""
    docs: list[dict[str, JSON]] = [
        {"title": "a", "brand": "nike", "id": "i1"},
        {"title": "b", "brand": "puma", "id": "i2"},
        {"title": "c", "brand": "nike", "id": "i3"},
    ]
    horizons = {
        "session": {"brand": {"puma": 0.5}, "item": {"i3": 1.0}},
        "items": {"item": {"i1": 1.0, "i2": 0.25}},
    }
    user = UserAffinity("u", {"brand": {"nike": 1.0}}, 5, horizons=horizons)
    boost = BoostProfile(
        name="t",
        alpha=2.0,
        attributes={"brand": 1},
        session=SessionIntent(weights={"brand": 2.0, "item": 0.5}),
        item_memory=ItemMemory(weight=4.0),
    )
    # alpha_eff = 1; a: 1 + 1 + 4·1 = 6; b: 1 + 2·0.5 + 4·0.25 = 3; c: 1 + 1 + 0.5·1 = 2.5
    body = rewrite({}, user, boost, RequestContext()).body
    with _catalog(engine, index_prefix, docs) as index:
        got = engine.search(index=index, body=body)["hits"]["hits"]
    assert [(h["_id"], h["_score"]) for h in got] == [("0", 6.0), ("1", 3.0), ("2", 2.5)]


DFS_DOCS: list[dict[str, JSON]] = [
    {"title": " ".join(WORDS[(n + i) % len(WORDS)] for i in range(1 + n % 4)), "brand": b}
    for n, b in enumerate(BRANDS * 5)
]


def test_three_shards_score_as_one_with_dfs(engine: OpenSearch, index_prefix: str) -> None:
    """BM25 statistics are per shard: the same catalog on three shards scores differently from
    one shard, unless the search is `dfs_query_then_fetch` (global statistics). With it, the
    personalized function_score ranking on three shards is the one-shard reference's."""
    user = UserAffinity("u", {"brand": {"nike": 1.0, "puma": 0.4}}, 20.0)
    boost = BoostProfile(name="t", shape="function_score", alpha=1.0, attributes={"brand": 1.0})
    plain: dict[str, JSON] = {"query": {"match": {"title": "red shoe"}}, "size": 100}
    body = rewrite(plain, user, boost, RequestContext()).body
    with (
        _catalog(engine, index_prefix, DFS_DOCS, shards=1) as one,
        _catalog(engine, index_prefix, DFS_DOCS, shards=3) as three,
    ):
        relevance = {h["_id"]: h for h in engine.search(index=one, body=plain)["hits"]["hits"]}
        per_shard = engine.search(index=three, body=plain)["hits"]["hits"]
        assert any(not close(h["_score"], relevance[h["_id"]]["_score"]) for h in per_shard)
        got = engine.search(index=three, body=body, search_type="dfs_query_then_fetch")
    hits = [hit_from_source(i, h["_score"], h["_source"], ATTRIBUTES) for i, h in relevance.items()]
    expected = score(hits, user, boost)
    assert len(got["hits"]["hits"]) == len(expected) == len(relevance)
    for hit, want in zip(got["hits"]["hits"], expected, strict=True):
        assert close(hit["_score"], want.final), (hit, want)
