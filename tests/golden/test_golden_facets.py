"""Golden facet cases: tests/golden/facets/*.json, compared as exact dicts (ranking/facets.py).

Each case holds `request` (the app's body), `user` and `boost_profile` as in the rewrite
cases (test_golden.py), `context` {personalization_off, segments, explain}, and
`engine_aggregations`: what OpenSearch answers for the body the proxy sends (the app's
aggregations plus the favored siblings). `expected` holds `sent_aggs` (the aggregations
sent), `aggregations` (what the app gets back) and `facets` (`personalization.facets`).
Regenerate with `AFFINITY_REGEN_GOLDEN=1 python -m pytest tests/golden` and review the diff.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from test_golden import REGEN, _boost, _user

from rewriter.ranking.facets import apply_facets, plan_facets, with_favored_aggs

CASES = sorted((Path(__file__).parent / "facets").glob("*.json"))


def test_there_are_facet_cases() -> None:
    assert len(CASES) >= 8


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_golden_facets(path: Path) -> None:
    case = json.loads(path.read_text())
    request = case["request"]
    before = copy.deepcopy(request)
    ctx = case.get("context", {})
    plan = plan_facets(
        request,
        _user(case["user"]),
        _boost(case.get("boost_profile", {})),
        ctx.get("personalization_off", False),
        ctx.get("segments", []),
    )
    sent = with_favored_aggs(request, plan)
    assert request == before, "the facet rewrite mutated the request body"
    response = {"aggregations": copy.deepcopy(case["engine_aggregations"])}
    facets = apply_facets(response, plan, explain=ctx.get("explain", False))
    produced = {
        "sent_aggs": sent.get("aggs", sent.get("aggregations")),
        "aggregations": response["aggregations"],
        "facets": facets,
    }
    if REGEN:
        case["expected"] = produced
        path.write_text(json.dumps(case, indent=2, ensure_ascii=False) + "\n")
        return
    assert "expected" in case, f"{path.name}: no expected output; regenerate and review"
    assert produced == case["expected"]
