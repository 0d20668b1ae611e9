"""`affinity facets report`'s arithmetic: shown per segment and facet, selections joined by
query_id, rates, and the notes for facets a segment never or rarely uses."""

from __future__ import annotations

import pytest

from rewriter.measure.facets_report import ALL, NO_SEGMENT, facet_report, render


def _imp(qid: str, segments: list[str], facets: list[str]) -> dict:
    return {"query_id": qid, "segments": segments, "facets": facets}


def _sel(qid: str | None, attribute: str, value: str = "x") -> dict:
    return {"item_id": f"facet:{attribute}={value}", "query_id": qid}


def test_counts_rates_and_the_all_rows() -> None:
    imps = [
        _imp("q1", ["vip"], ["brand", "category"]),
        _imp("q2", ["vip"], ["brand"]),
        _imp("q3", [], ["brand"]),
    ]
    sels = [_sel("q1", "brand"), _sel("q2", "brand"), _sel("q3", "brand"), _sel("q9", "brand")]
    report = facet_report(imps, sels, min_shown=1)
    rows = {(r.segment, r.facet): (r.shown, r.selected) for r in report.rows}
    assert rows == {
        (ALL, "brand"): (3, 3),
        (ALL, "category"): (1, 0),
        ("vip", "brand"): (2, 2),
        ("vip", "category"): (1, 0),
        (NO_SEGMENT, "brand"): (1, 1),
    }
    assert (report.impressions, report.selections, report.unjoined) == (3, 4, 1)
    assert report.rows[0].segment == ALL  # (all) first
    vip_brand = next(r for r in report.rows if (r.segment, r.facet) == ("vip", "brand"))
    assert vip_brand.rate == pytest.approx(1.0)


def test_notes_name_the_unused_facet_and_the_reduced_segment() -> None:
    imps = [_imp(f"a{i}", ["new_user"], ["brand", "color"]) for i in range(30)]
    imps += [_imp(f"b{i}", ["returning"], ["brand", "color"]) for i in range(30)]
    sels = [_sel(f"b{i}", "brand") for i in range(20)] + [_sel("a0", "brand")]
    sels += [_sel(f"a{i}", "color") for i in range(5)] + [_sel(f"b{i}", "color") for i in range(5)]
    notes = facet_report(imps, sels, min_shown=20).notes
    assert any(n.startswith("segment new_user selects brand at 3.3%, under half") for n in notes), (
        notes
    )
    assert not any("returning" in n for n in notes), notes
    never = facet_report(imps, [], min_shown=20).notes
    assert any("segment new_user never selects a color value (shown 30 times)" in n for n in never)
    assert facet_report(imps, [], min_shown=31).notes == ()


def test_selections_that_are_not_facets_are_ignored_and_render_says_when_empty() -> None:
    report = facet_report([], [{"item_id": "sku-1", "query_id": "q"}])
    assert report.selections == 0 and report.rows == ()
    assert "no searches with facets" in render(report)
