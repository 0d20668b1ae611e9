"""rewriter/measure/stats.py against scipy and textbook values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special
from scipy import stats as ss

from rewriter.measure import stats


@pytest.mark.parametrize(
    ("a", "b", "x"),
    [
        (0.5, 0.5, 0.3),
        (2.5, 0.5, 0.9),
        (30, 0.5, 0.97),
        (1, 1, 0.4),
        (200, 0.5, 0.999),
        (3, 7, 0.01),
    ],
)
def test_incomplete_beta_matches_scipy(a: float, b: float, x: float) -> None:
    assert stats.betainc(a, b, x) == pytest.approx(special.betainc(a, b, x), rel=1e-10)


@pytest.mark.parametrize(("t", "df"), [(0.1, 1), (2.0, 5), (1.96, 1e4), (-3.3, 12.7), (8, 3)])
def test_t_p_value_and_critical_value_match_scipy(t: float, df: float) -> None:
    assert stats.t_two_sided_p(t, df) == pytest.approx(2 * ss.t.sf(abs(t), df), rel=1e-9)
    assert stats.t_crit(df) == pytest.approx(ss.t.ppf(0.975, df), rel=1e-9)


@pytest.mark.parametrize(("x", "df"), [(0.001, 1), (3.84, 1), (10, 3), (0.5, 2), (60, 5)])
def test_chi_square_survival_matches_scipy(x: float, df: int) -> None:
    assert stats.chi2_sf(x, df) == pytest.approx(ss.chi2.sf(x, df), rel=1e-9)


def test_two_proportion_z_test_known_values() -> None:
    r = stats.two_proportion_ztest(200, 1000, 250, 1000)
    pooled = 450 / 2000
    z = 0.05 / math.sqrt(pooled * (1 - pooled) * 2 / 1000)
    assert r.statistic == pytest.approx(z) == pytest.approx(2.6773, abs=1e-4)
    # a 2x2 chi-square without continuity correction is the pooled z test squared
    chi2 = ss.chi2_contingency([[200, 800], [250, 750]], correction=False)
    assert r.p_value == pytest.approx(chi2.pvalue, rel=1e-9)
    half = 1.959964 * math.sqrt(0.2 * 0.8 / 1000 + 0.25 * 0.75 / 1000)
    assert (r.low, r.high) == pytest.approx((0.05 - half, 0.05 + half), rel=1e-5)


def test_welch_t_test_matches_scipy() -> None:
    rng = np.random.default_rng(1)
    c, t = rng.normal(0, 1, 30), rng.exponential(2.0, 45)
    r = stats.welch_ttest(c, t)
    ref = ss.ttest_ind(t, c, equal_var=False)
    ci = ref.confidence_interval()
    assert r.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert r.statistic == pytest.approx(ref.statistic, rel=1e-9)
    assert (r.low, r.high) == pytest.approx((ci.low, ci.high), rel=1e-9)


def test_ratio_with_one_impression_per_user_is_a_plain_mean() -> None:
    x = np.array([0, 1, 1, 0, 1, 0, 0, 1, 1, 1], float)
    r = stats.ratio(x, np.ones_like(x))
    assert r.value == pytest.approx(x.mean())
    assert r.se == pytest.approx(x.std(ddof=1) / math.sqrt(len(x)))


def test_delta_method_standard_error_matches_the_sampling_distribution() -> None:
    rng = np.random.default_rng(7)

    def sample() -> tuple[np.ndarray, np.ndarray]:
        impressions = 1 + rng.poisson(3, 800)
        rate = rng.beta(2, 6, 800)  # users differ: impressions of one user are correlated
        return rng.binomial(impressions, rate).astype(float), impressions.astype(float)

    estimates = [stats.ratio(*sample()).value for _ in range(2000)]
    predicted = np.mean([stats.ratio(*sample()).se for _ in range(200)])
    assert predicted == pytest.approx(np.std(estimates), rel=0.08)


def test_bootstrap_interval_agrees_with_welch_for_means() -> None:
    rng = np.random.default_rng(3)
    c, t = rng.normal(10, 3, 400), rng.normal(10.8, 3, 400)
    boot = stats.bootstrap_diff(c[:, None], t[:, None], lambda s: s[..., 0].mean(axis=-1))
    welch = stats.welch_ttest(c, t)
    assert boot.diff == pytest.approx(welch.diff)
    assert (boot.low, boot.high) == pytest.approx((welch.low, welch.high), abs=0.06)
    assert boot.p_value < 0.01 and welch.p_value < 0.01


def test_wilson_and_t_intervals_match_scipy() -> None:
    p, low, high = stats.proportion_ci(37, 120)
    ci = ss.binomtest(37, 120).proportion_ci(method="wilson")
    assert p == pytest.approx(37 / 120)
    assert (low, high) == pytest.approx((ci.low, ci.high), rel=1e-9)
    values = [3.1, 4.5, 2.2, 5.0, 3.3, 4.1]
    mean, low, high = stats.mean_ci(values)
    assert mean == pytest.approx(np.mean(values))
    ref = ss.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=ss.sem(values))
    assert (low, high) == pytest.approx(ref, rel=1e-9)


def test_relative_lift_interval_on_the_log_scale() -> None:
    lift = stats.relative_lift(0.10, 0.01, 0.12, 0.01)
    se = math.sqrt((0.01 / 0.10) ** 2 + (0.01 / 0.12) ** 2)
    expected = np.exp(np.log(1.2) + np.array([-1, 1]) * 1.959964 * se) - 1
    assert lift.relative == pytest.approx(0.2)
    assert (lift.low, lift.high) == pytest.approx(tuple(expected), rel=1e-5)
    assert math.isnan(stats.relative_lift(0.0, 0.01, 0.1, 0.01).low)


def test_sample_ratio_mismatch() -> None:
    fine = stats.srm_test([5050, 4950], [50, 50])
    assert fine.p_value == pytest.approx(ss.chisquare([5050, 4950]).pvalue)
    assert not fine.mismatch
    bad = stats.srm_test([5200, 4800], [50, 50])
    assert bad.chi2 == pytest.approx(16.0) and bad.mismatch
    uneven = stats.srm_test([900, 100], [90, 10])
    assert not uneven.mismatch and uneven.chi2 == pytest.approx(0.0)


def test_required_sample_size_textbook_values() -> None:
    assert stats.required_n_proportions(0.5, 0.6) == 388  # Fleiss, without continuity corr.
    assert stats.required_n_proportions(0.10, 0.12) == 3841
    assert stats.required_n_proportions(0.1, 0.1) == math.inf
    # the generic form from an observed standard error lands on the same number
    n, p_c, p_t = 1000, 0.10, 0.12
    se = math.sqrt(p_c * (1 - p_c) / n + p_t * (1 - p_t) / n)
    assert stats.required_n(n, se, p_t - p_c) == pytest.approx(3841, rel=0.01)


def test_verdicts() -> None:
    win = stats.verdict(stats.two_proportion_ztest(100, 1000, 150, 1000), 1000)
    assert win.outcome == "winner" and "p = 0.000723 < 0.05" in win.text
    lose = stats.verdict(stats.two_proportion_ztest(150, 1000, 100, 1000), 1000)
    assert lose.outcome == "loser"
    unsure = stats.verdict(stats.two_proportion_ztest(100, 1000, 110, 1000), 1000)
    assert unsure.outcome == "not_enough_data"
    assert unsure.users_needed_per_variant == pytest.approx(
        stats.required_n_proportions(0.10, 0.11), rel=0.02
    )
    assert "more" in unsure.text
    flat = stats.verdict(stats.two_proportion_ztest(100, 1000, 100, 1000), 1000)
    assert flat.outcome == "not_enough_data" and flat.users_needed_per_variant is None
    srm = stats.verdict(stats.two_proportion_ztest(100, 1000, 150, 1000), 1000, srm=True)
    assert srm.outcome == "invalid"
