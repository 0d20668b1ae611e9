"""The offline replay's pure parts: split, queries, methods, metrics, recommendation."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest

from rewriter import config
from rewriter.boost.profile import BoostProfile, ColdStart
from rewriter.events.event import Event
from rewriter.measure import evaluate as ev
from rewriter.measure.evaluate_metrics import (
    Row,
    Scores,
    bootstrap_ci,
    recommend,
    render_segments,
    segments,
    summarize,
)
from rewriter.measure.evaluate_scratch import ScratchError, fingerprint, scratch_settings
from rewriter.profiles.fold import FoldConfig, fold


def event(user: str, item: str, t: float, kind: str = "rating_high", **kw: object) -> Event:
    return Event(f"{user}-{item}-{t}", user, kind, item, t, **kw)  # type: ignore[arg-type]


def test_split_by_time_and_per_user() -> None:
    evs = [event("a", str(i), 1000.0 + i) for i in range(10)] + [event("b", "x", 1004.5)]
    train, test = ev.split(evs, ev.parse_cutoff("1005"))
    assert {e.item_id for e in train} == {"0", "1", "2", "3", "4", "x"}
    assert len(test) == 5
    train, test = ev.split(evs, ev.parse_cutoff("user:0.8"))
    assert [e.item_id for e in train if e.user_id == "a"] == [str(i) for i in range(8)]
    assert [e.item_id for e in train if e.user_id == "b"] == ["x"]  # at least one trains
    assert [e.item_id for e in test] == ["8", "9"]
    with pytest.raises(ValueError, match="between 0 and 1"):
        ev.parse_cutoff("user:1.5")
    with pytest.raises(ValueError, match="--cutoff 'soon'"):
        ev.parse_cutoff("soon")
    assert ev.parse_cutoff("2016-01-01").time == 1451606400.0


def test_sample_is_seeded_and_in_time_order() -> None:
    evs = [event("a", str(i), float(i)) for i in range(100)]
    a, b = ev.sample(evs, 10, seed=1), ev.sample(evs, 10, seed=1)
    assert a == b and len(a) == 10
    assert [e.timestamp for e in a] == sorted(e.timestamp for e in a)
    assert ev.sample(evs, 1000, seed=1) == evs


def test_queries_use_the_event_query_else_one_of_the_item_categories() -> None:
    with_query = event("a", "1", 1.0, query="red shoe")
    text, body = ev.query_for(with_query, {"category": ["x"]}) or ("", {})
    assert text == "red shoe" and body["query"]["multi_match"]["query"] == "red shoe"
    genres = ["Comedy", "Drama", "Romance"]
    text, body = ev.query_for(event("a", "1", 1.0), {"category": genres}) or ("", {})
    assert text in genres and body == {"query": {"term": {"category": text}}}
    assert ev.query_for(event("a", "1", 1.0), {"category": genres}) == (text, body)  # stable
    picks = {ev.query_for(event("a", str(i), 1.0), {"category": genres})[0] for i in range(30)}  # type: ignore[index]
    assert picks == set(genres)  # spread over the item's categories
    assert ev.query_for(event("a", "1", 1.0), {"title": "no genres"}) is None
    _, pop = ev.query_for(event("a", "1", 1.0), {"category": "Drama"}, "category_by_popularity")  # type: ignore[misc]
    fs = pop["query"]["function_score"]
    assert fs["query"] == {"term": {"category": "Drama"}} and fs["boost_mode"] == "sum"
    assert fs["functions"][0]["field_value_factor"]["field"] == "popularity"


def _profile() -> dict:
    evs = [
        event("u", str(i), 1e9 + i, "purchase", attributes={"brand": ("acme",)}) for i in range(20)
    ]
    return dict(fold(None, evs, FoldConfig()))


def test_methods_go_through_the_rewriter() -> None:
    boost = BoostProfile("b", cold_start=ColdStart("none"))
    named = ev.methods(boost, (0.0, 1.0))
    assert list(named) == ["generic", "popularity", "alpha=0", "alpha=1"]
    body = {"query": {"term": {"category": "x"}}}
    warm = ev.Case(event("u", "9", 1e9 + 100), "x", body, frozenset(), _profile())
    cold = replace(warm, profile=None)
    assert named["generic"](warm) == (body, False)
    pop_body, _ = named["popularity"](warm)
    assert "field_value_factor" in str(pop_body)  # popularity even though the profile has none
    assert named["alpha=0"](warm) == (body, False)
    personal, applied = named["alpha=1"](warm)
    assert applied and personal["rescore"][0]["query"]["rescore_query_weight"] > 0.5
    assert named["alpha=1"](cold) == (body, False)  # cold start "none": generic


def test_scores_remove_seen_items_and_rank_the_target() -> None:
    s = Scores()
    s.add("t", ["a", "b", "t"], frozenset({"a"}), applied=True)  # rank 2 after removing a
    s.add("t", ["x"] * 5, frozenset(), applied=False)
    s.add("t", [str(i) for i in range(20)] + ["t"], frozenset(), applied=False)  # rank 21
    assert s.ndcg == pytest.approx([1 / math.log2(3), 0.0, 0.0])
    assert s.rr == pytest.approx([0.5, 0.0, 1 / 21])
    assert s.hit == [1.0, 0.0, 0.0] and s.personalized == 1
    rows = summarize({"m": s}, [True, False, True], catalog_size=100)
    assert rows[0].ndcg == pytest.approx(1 / math.log2(3) / 3)
    assert rows[0].warm_ndcg == pytest.approx(1 / math.log2(3) / 2)
    assert rows[0].coverage == pytest.approx(13 / 100)  # b t, x, 0..9


def test_recommend_picks_the_best_alpha_and_the_smaller_on_ties() -> None:
    def row(name: str, ndcg: float) -> Row:
        return Row(name, ndcg, 0, 0, 0, 0, 0)

    scores = {n: Scores(ndcg=[0.1, 0.2]) for n in ("generic", "popularity", "alpha=1", "alpha=2")}
    rows = [row("generic", 0.1), row("popularity", 0.1), row("alpha=1", 0.3), row("alpha=2", 0.3)]
    alpha, text = recommend(rows, scores)
    assert alpha == 1.0 and "recommended alpha=1" in text and "vs popularity" in text
    rows[3] = row("alpha=2", 0.31)
    assert recommend(rows, scores)[0] == 2.0


def test_weight_coordinate_search_finds_the_grid_optimum() -> None:
    boost = BoostProfile("b", attributes={"brand": 1.0, "category": 1.0})

    def score(b: BoostProfile) -> float:  # best at brand 2, category 0.5
        return -((b.attributes["brand"] - 2) ** 2) - (b.attributes["category"] - 0.5) ** 2

    weights, best = ev.tune_weights(boost, 1.0, score)
    assert weights == {"brand": 2.0, "category": 0.5} and best == 0.0


def test_scratch_prefix_must_differ_from_production() -> None:
    prod = config.Settings(indices=config.Indices(prefix=""))
    with pytest.raises(ScratchError, match="production prefix"):
        scratch_settings(prod, "")
    assert scratch_settings(prod, "eval-").indices.catalog == "eval-catalog"


# --------------------------------------------------------------------------- shop logs
def test_leave_last_out_tests_each_users_last_positive_and_trains_on_what_came_before() -> None:
    evs = [
        event("a", "1", 1.0, "view"),
        event("a", "2", 2.0, "purchase"),
        event("a", "3", 3.0, "view"),
        event("a", "4", 4.0, "click"),  # not a positive here: after the tested event, dropped
        event("b", "5", 1.0, "click"),  # no positive at all: trains only
    ]
    train, test = ev.split(evs, ev.parse_cutoff("last"), ("view", "purchase"))
    assert [(e.user_id, e.item_id) for e in test] == [("a", "3")]
    assert sorted(e.item_id for e in train) == ["1", "2", "5"]
    assert str(ev.parse_cutoff("last")).startswith("last")


def test_positives_must_be_event_types_of_the_profile() -> None:
    known = ("view", "add_to_cart", "purchase")
    assert ev.parse_positives("view, purchase", known) == ("view", "purchase")
    with pytest.raises(ValueError, match="rating_high is not an event type"):
        ev.parse_positives("view,rating_high", known)
    with pytest.raises(ValueError, match="no type"):
        ev.parse_positives(",", known)


def test_category_words_query_asks_the_words_of_the_category_path() -> None:
    item = {"category": ["electronics.audio.headphone", "electronics.sale"], "title": "X 1"}
    assert ev.category_words(item) == "electronics audio headphone sale"
    assert ev.category_words({"title": "Acme Kettle 3"}) == "acme kettle 3"
    text, body = ev.query_for(event("a", "1", 1.0), item, "category_words") or ("", {})
    assert text == "electronics audio headphone sale"
    assert body["query"]["multi_match"]["query"] == text
    assert ev.query_for(event("a", "1", 1.0), {}, "category_words") is None
    asked = ev.query_for(event("a", "1", 1.0, query="red"), item, "category_words")
    assert asked and asked[0] == "red"  # the event's own query first


def test_cases_know_whether_the_chosen_item_was_seen_and_the_history_length() -> None:
    train = [event("a", "1", 1.0, "view"), event("a", "1", 2.0, "view"), event("b", "2", 1.0)]
    tested = [event("a", "1", 5.0, "view"), event("b", "9", 5.0), event("c", "2", 5.0)]
    items = {i: {"category": ["x.y"]} for i in ("1", "2", "9")}
    cases = ev.case_list(tested, train, items, {}, "category_words")
    assert [(c.seen_target, c.history) for c in cases] == [(True, 2), (False, 1), (False, 0)]
    members = ev._segment_of(cases)
    assert members["seen"] == [True, False, False] and members["never seen"] == [False, True, True]
    assert members["history 0"] == [False, False, True]
    assert members["history 1-4"] == [True, True, False] and members["history 20+"] == [False] * 3


def test_segment_intervals_resample_users_not_cases() -> None:
    # user a: 9 cases at 1.0; b and c: one case at 0.0 each. Resampling cases would give a
    # narrow interval around 0.82; resampling users lets a appear 0..3 times.
    values = [1.0] * 9 + [0.0, 0.0]
    users = ["a"] * 9 + ["b", "c"]
    mean, low, high = bootstrap_ci(values, users)
    assert mean == pytest.approx(9 / 11)
    assert low == 0.0 and high == 1.0
    _, case_low, case_high = bootstrap_ci(values)
    assert case_low > 0.4 and case_high == 1.0
    assert all(math.isnan(x) for x in bootstrap_ci([]))  # no cases, no number


def test_segments_table_has_every_method_and_segment() -> None:
    scores = {"generic": Scores(ndcg=[0.0, 1.0, 0.5]), "default": Scores(ndcg=[1.0, 1.0, 0.5])}
    members = {"all": [True] * 3, "seen": [True, False, False], "never seen": [False, True, True]}
    rows = segments(scores, ["a", "b", "c"], members)
    at = {(r.method, r.segment): r for r in rows}
    assert at[("default", "seen")].ndcg == 1.0 and at[("generic", "seen")].ndcg == 0.0
    assert at[("generic", "never seen")].cases == 2
    table = render_segments(rows)
    assert "never seen" in table and "default" in table and "0.7500 [" in table


def test_reuse_needs_the_same_pseudonymization_key(tmp_path: Path) -> None:
    """Profiles stored under another AFFINITY_SECRET are nobody's: --reuse must rebuild."""
    catalog = tmp_path / "catalog.jsonl"
    catalog.write_text('{"id": "1", "title": "t"}\n')
    train, boost = [event("a", "1", 1.0)], BoostProfile("b")
    one = fingerprint(catalog, train, boost, b"k" * 32)
    assert one == fingerprint(catalog, train, boost, b"k" * 32)
    assert one != fingerprint(catalog, train, boost, b"j" * 32)
