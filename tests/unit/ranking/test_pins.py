"""Pins: the organic body, the fetch body, and laying out pages."""

from __future__ import annotations

import pytest

from rewriter.ranking.pins import apply, from_msearch, layout, merge
from rewriter.ranking.resolve import ActiveFilter, ActivePin

PINS = (ActivePin("r", "p1", 1), ActivePin("r", "p3", 3))
ORGANIC = [f"o{i}" for i in range(20)]


def _page(start: int, size: int, total: int | None = 20, present: tuple[int, ...] = (1, 3)):
    pinned = [(pos, f"p{pos}") for pos in present]
    organic_from = max(0, start - 2)
    return [e for e, _ in layout(pinned, ORGANIC[organic_from:], organic_from, start, size, total)]


def test_pins_take_their_positions() -> None:
    assert _page(0, 5) == ["p1", "o0", "p3", "o1", "o2"]


def test_pages_are_consistent_whatever_the_page_size() -> None:
    whole = _page(0, 22)
    assert whole[:4] == ["p1", "o0", "p3", "o1"] and len(whole) == 22
    for size in (1, 2, 3, 7):
        paged = [e for start in range(0, 22, size) for e in _page(start, size)]
        assert paged == whole


def test_a_missing_pin_leaves_no_gap() -> None:
    assert _page(0, 4, present=(3,)) == ["o0", "o1", "p3", "o2"]


def test_pins_past_the_end_follow_the_results() -> None:
    pinned = [(5, "p5"), (9, "p9")]
    page = [e for e, _ in layout(pinned, ["o0", "o1"], 0, 0, 10, 2)]
    assert page == ["o0", "o1", "p5", "p9"]


def test_apply_excludes_pins_by_post_filter_and_widens_the_page() -> None:
    body: dict[str, object] = {
        "query": {"match_all": {}},
        "post_filter": {"term": {"a": 1}},
        "_source": ["title"],
        "from": 5,
        "size": 10,
    }
    hide = ActiveFilter("h", {"term": {"in_stock": False}})
    plan = apply(body, PINS, [hide], 5, 10)
    assert body["from"] == 3 and body["size"] == 12
    assert body["post_filter"] == {
        "bool": {"filter": [{"term": {"a": 1}}], "must_not": [{"ids": {"values": ["p1", "p3"]}}]}
    }
    assert plan.fetch == {
        "query": {
            "bool": {
                "filter": [{"ids": {"values": ["p1", "p3"]}}],
                "must_not": [{"term": {"in_stock": False}}],
            }
        },
        "size": 2,
        "_source": ["title"],
    }


def _hits(ids: list[str]) -> dict[str, object]:
    hits = [{"_id": i, "_score": 1.0} for i in ids]
    return {"took": 3, "hits": {"total": {"value": 20, "relation": "eq"}, "hits": hits}}


def test_merge_marks_pinned_hits_and_counts_them() -> None:
    body: dict[str, object] = {"size": 4}
    plan = apply(body, PINS, [], 0, 4)
    merged = merge(_hits(["o0", "o1", "o2", "o3"]), {**_hits(["p3"]), "took": 9}, plan)
    assert [h["_id"] for h in merged["hits"]["hits"]] == ["o0", "o1", "p3", "o2"]
    assert merged["hits"]["hits"][2]["_pinned"] == {"position": 3, "rule": "r"}
    assert merged["hits"]["total"]["value"] == 21 and merged["took"] == 9


@pytest.mark.parametrize("which", [0, 1])
def test_an_error_in_either_search_is_the_answer(which: int) -> None:
    plan = apply({}, PINS, [], 0, 10)
    responses = [_hits([]), _hits([])]
    responses[which] = {"error": {"type": "x"}, "status": 400}
    assert from_msearch({"responses": responses}, plan) == (
        400,
        {"error": {"type": "x"}, "status": 400},
    )
