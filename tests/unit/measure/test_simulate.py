"""The statistics on simulated experiments: A/A false positives, a known lift, coverage."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rewriter.measure import experiment_report as er
from rewriter.measure import simulate as sim


def test_the_true_ctr_matches_a_large_simulated_population() -> None:
    world = sim.World(seed=4)
    for personalized in (False, True):
        exp = sim.experiment("truth", "t", treatment_generic=not personalized)
        run = sim.simulate_run(world, exp, 40_000, seed=11)
        groups, _ = er.attribute(exp, run.impressions, run.events)
        arm = groups["treatment"].values()  # generic in the first pass, personalized next
        imps = sum(u.impressions for u in arm)
        clicked = sum(len(u.clicked) for u in arm)
        assert imps > 30_000
        se = np.sqrt(0.3 * 0.7 / imps) * 1.5  # generous: impressions of a user correlate
        assert clicked / imps == pytest.approx(world.true_ctr(personalized), abs=4 * se)


def test_aa_false_positive_rate_is_near_five_percent() -> None:
    fp = sim.aa_false_positive_rate(runs=300, users=600, metrics=("ctr", "conversion_rate"))
    # 300 runs at a true 5%: sd 1.26%; [1%, 9.1%] is ±3.2 sd. A variance off by a factor of
    # two (e.g. treating each impression as independent) lands far outside it.
    assert 0.01 <= fp.rates["ctr"] <= 0.091, sim.describe_rates(fp)
    assert 0.01 <= fp.rates["conversion_rate"] <= 0.091, sim.describe_rates(fp)


def test_a_true_lift_is_detected_and_its_interval_covers_the_truth() -> None:
    report, truth = sim.ab_report(users=4000, seed=1)
    ctr = next(c for c in report.comparisons if c.metric == "ctr")
    assert truth == pytest.approx(0.2396, abs=1e-3)
    assert ctr.p_value < 0.001 and ctr.diff > 0
    assert ctr.lift_low <= truth <= ctr.lift_high
    assert report.verdicts["treatment"].outcome == "winner"
    assert not report.srm.mismatch
    shares = [v.users for v in report.variants]
    assert abs(shares[0] - shares[1]) < 200


def test_interval_coverage_is_near_95_percent() -> None:
    assert 0.88 <= sim.coverage(runs=100, users=1000) <= 0.995


def test_a_small_experiment_says_how_many_users_it_needs() -> None:
    world = sim.World(alpha=0.3, seed=5)
    exp = sim.experiment("small", "s")
    run = sim.simulate_run(world, exp, 300, seed=5)
    report = er.build_report(exp, run.impressions, run.events)
    verdict = report.verdicts["treatment"]
    assert verdict.outcome == "not_enough_data"  # a true +10% lift, 300 users: noise wins
    assert verdict.users_needed_per_variant == pytest.approx(744, abs=1)
    assert "594 more" in verdict.text


def test_report_json_and_table_carry_every_metric() -> None:
    report, _ = sim.ab_report(users=1000, seed=3)
    data = json.loads(json.dumps(report.to_json(), default=str))
    assert {c["metric"] for c in data["comparisons"]} == set(er.METRICS)
    assert data["sample_ratio"]["mismatch"] is False
    table = er.render_table(report)
    for word in (
        "CTR",
        "cart rate",
        "conversion",
        "avg order",
        "revenue/user",
        "repeat visit",
        "sample ratio",
        "verdict treatment",
    ):
        assert word in table
