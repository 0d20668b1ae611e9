"""Statistics for A/B experiments. Pure: no I/O, no scipy (tests compare against scipy).

What each test is for (measure/experiment_report.py picks them):

- `two_proportion_ztest`: a share of users (conversion, add-to-cart, repeat visits). The
  z statistic uses the pooled variance (the null hypothesis: equal rates); the interval of
  the difference uses the unpooled one, as is usual.
- `ratio_delta_test`: a ratio of per-user sums (CTR = clicked impressions / impressions,
  average order value = revenue / orders). Impressions of one user are not independent, so
  the variance comes from the delta method over users (Deng et al., 2018), not from
  treating every impression as a coin flip (that would inflate the false-positive rate).
- `welch_ttest`: a mean per user with unequal variances (revenue per user).
- `bootstrap_diff`: any statistic of resampled users (used for average order value, whose
  per-user values are heavy-tailed and often zero-order).
- `relative_lift`: treatment / control − 1 with a delta-method interval on the log scale.
- `srm_test`: chi-square goodness of fit of users per variant to the configured split.
- `required_n`: users per variant for the observed effect at power 0.8, two-sided α 0.05.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

ALPHA = 0.05
POWER = 0.8
SRM_ALPHA = 0.001
"""A sample-ratio mismatch is flagged at p < 0.001 (a strict threshold: the check runs on
every report, and a false alarm stops a healthy experiment)."""

_N = NormalDist()


def z_crit(alpha: float = ALPHA) -> float:
    """The two-sided critical value of the standard normal (1.96 for α = 0.05)."""
    return _N.inv_cdf(1 - alpha / 2)


def normal_two_sided_p(z: float) -> float:
    return 2 * (1 - _N.cdf(abs(z))) if math.isfinite(z) else 0.0


@dataclass(frozen=True)
class TestResult:
    """A difference (treatment − control), its 95% interval, and the two-sided p-value."""

    diff: float
    low: float
    high: float
    p_value: float
    statistic: float
    method: str


# --------------------------------------------------------------------------- special functions
def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (Lentz's method)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        even = m * (b - m) * x / ((qam + m2) * (a + m2))
        odd = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        for num in (even, odd):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    ln = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x)
    front = math.exp(ln + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| ≥ |t|) for Student's t with `df` degrees of freedom."""
    if not math.isfinite(t):
        return 0.0
    return betainc(df / 2, 0.5, df / (df + t * t))


def t_crit(df: float, alpha: float = ALPHA) -> float:
    """The two-sided critical value of Student's t (bisection on the p-value)."""
    low, high = 0.0, 1e3
    for _ in range(200):
        mid = (low + high) / 2
        if t_two_sided_p(mid, df) > alpha:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def chi2_sf(x: float, df: int) -> float:
    """P(X ≥ x) for chi-square with `df` degrees of freedom (regularized upper gamma)."""
    if x <= 0:
        return 1.0
    a, y = df / 2.0, x / 2.0
    log_front = a * math.log(y) - y - math.lgamma(a)
    if y < a + 1:  # series for the lower incomplete gamma
        term = total = 1.0 / a
        n = a
        while abs(term) > abs(total) * 1e-16:
            n += 1
            term *= y / n
            total += term
        return max(0.0, 1.0 - total * math.exp(log_front))
    tiny, b = 1e-300, y + 1.0 - a  # continued fraction for the upper one
    c, d = 1.0 / tiny, 1.0 / b
    h = d
    for i in range(1, 400):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = b + an / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return math.exp(log_front) * h


# --------------------------------------------------------------------------- tests
def two_proportion_ztest(x_c: int, n_c: int, x_t: int, n_t: int) -> TestResult:
    """Rates x/n of control and treatment: pooled z test, unpooled 95% interval."""
    if min(n_c, n_t) <= 0:
        raise ValueError("both groups need at least one user")
    p_c, p_t = x_c / n_c, x_t / n_t
    pooled = (x_c + x_t) / (n_c + n_t)
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / n_c + 1 / n_t))
    se = math.sqrt(p_c * (1 - p_c) / n_c + p_t * (1 - p_t) / n_t)
    diff = p_t - p_c
    z = diff / se0 if se0 > 0 else 0.0
    half = z_crit() * se
    return TestResult(diff, diff - half, diff + half, normal_two_sided_p(z), z, "two-proportion z")


def welch_ttest(control: Sequence[float], treatment: Sequence[float]) -> TestResult:
    """Difference of means with unequal variances (Welch–Satterthwaite df)."""
    c, t = np.asarray(control, float), np.asarray(treatment, float)
    if min(len(c), len(t)) < 2:
        raise ValueError("Welch's t-test needs at least two values per group")
    vc, vt = c.var(ddof=1) / len(c), t.var(ddof=1) / len(t)
    diff = float(t.mean() - c.mean())
    se = math.sqrt(vc + vt)
    if se == 0:
        return TestResult(diff, diff, diff, 1.0 if diff == 0 else 0.0, 0.0, "Welch t")
    df = (vc + vt) ** 2 / (vc**2 / (len(c) - 1) + vt**2 / (len(t) - 1))
    stat = diff / se
    half = t_crit(df) * se
    p = float(t_two_sided_p(stat, float(df)))
    return TestResult(diff, diff - half, diff + half, p, float(stat), "Welch t")


@dataclass(frozen=True)
class Ratio:
    """Σ numerator / Σ denominator over users, with the delta-method variance."""

    value: float
    variance: float
    users: int

    @property
    def se(self) -> float:
        return math.sqrt(max(self.variance, 0.0))


def ratio(numerators: Sequence[float], denominators: Sequence[float]) -> Ratio:
    """R = Σx / Σy with Var(R) ≈ (s_x² − 2R s_xy + R² s_y²) / (n ȳ²) (delta method)."""
    x, y = np.asarray(numerators, float), np.asarray(denominators, float)
    n = len(x)
    if n == 0 or y.sum() == 0:
        return Ratio(float("nan"), float("nan"), n)
    r = float(x.sum() / y.sum())
    if n < 2:
        return Ratio(r, float("nan"), n)
    cov = np.cov(x, y, ddof=1)
    var = (cov[0, 0] - 2 * r * cov[0, 1] + r * r * cov[1, 1]) / (n * y.mean() ** 2)
    return Ratio(r, float(var), n)


def ratio_delta_test(control: Ratio, treatment: Ratio) -> TestResult:
    """z test of the difference of two independent ratio metrics."""
    diff = treatment.value - control.value
    se = math.sqrt(control.variance + treatment.variance)
    z = diff / se if se > 0 else 0.0
    half = z_crit() * se
    return TestResult(diff, diff - half, diff + half, normal_two_sided_p(z), z, "delta-method z")


def bootstrap_diff(
    control: np.ndarray,
    treatment: np.ndarray,
    statistic: Callable[[np.ndarray], np.ndarray],
    resamples: int = 2000,
    seed: int = 0,
) -> TestResult:
    """Percentile bootstrap of statistic(treatment) − statistic(control).

    `control` and `treatment` are arrays of per-user rows; `statistic` maps a stack of
    resampled arrays (resamples × users × columns) to one value per resample. The p-value is
    twice the smaller tail share of resampled differences beyond 0 (bounded by 1/resamples).
    """
    rng = np.random.default_rng(seed)
    point = float(statistic(treatment[None])[0] - statistic(control[None])[0])
    idx_c = rng.integers(0, len(control), (resamples, len(control)))
    idx_t = rng.integers(0, len(treatment), (resamples, len(treatment)))
    diffs = statistic(treatment[idx_t]) - statistic(control[idx_c])
    diffs = diffs[np.isfinite(diffs)]
    if len(diffs) == 0:
        return TestResult(point, float("nan"), float("nan"), float("nan"), 0.0, "bootstrap")
    low, high = np.quantile(diffs, [ALPHA / 2, 1 - ALPHA / 2])
    tail = min(np.mean(diffs <= 0), np.mean(diffs >= 0))
    p = min(1.0, max(2 * tail, 1 / len(diffs)))
    return TestResult(point, float(low), float(high), float(p), 0.0, "bootstrap")


def mean_ci(values: Sequence[float]) -> tuple[float, float, float]:
    """(mean, low, high): a t interval of a mean."""
    v = np.asarray(values, float)
    if len(v) == 0:
        return float("nan"), float("nan"), float("nan")
    m = float(v.mean())
    if len(v) < 2:
        return m, float("nan"), float("nan")
    half = t_crit(len(v) - 1) * float(v.std(ddof=1)) / math.sqrt(len(v))
    return m, m - half, m + half


def proportion_ci(x: int, n: int) -> tuple[float, float, float]:
    """(rate, low, high): the Wilson score interval of a proportion."""
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    p, z = x / n, z_crit()
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return p, centre - half, centre + half


# --------------------------------------------------------------------------- lift, SRM, power
@dataclass(frozen=True)
class Lift:
    relative: float
    low: float
    high: float


def relative_lift(control: float, se_c: float, treatment: float, se_t: float) -> Lift:
    """treatment / control − 1, 95% interval from the delta method on log(t / c).

    The log scale keeps the interval inside (−100%, ∞) and fits the ratio's skew. Undefined
    (nan) when either estimate is not positive.
    """
    if control <= 0 or treatment <= 0:
        nan = float("nan")
        return Lift(treatment / control - 1 if control > 0 else nan, nan, nan)
    log_ratio = math.log(treatment / control)
    se = math.sqrt((se_c / control) ** 2 + (se_t / treatment) ** 2)
    half = z_crit() * se
    return Lift(
        math.exp(log_ratio) - 1, math.exp(log_ratio - half) - 1, math.exp(log_ratio + half) - 1
    )


@dataclass(frozen=True)
class SampleRatio:
    chi2: float
    p_value: float
    mismatch: bool


def srm_test(observed: Sequence[int], shares: Sequence[float]) -> SampleRatio:
    """Chi-square goodness of fit of users per variant to the configured traffic shares."""
    total = sum(observed)
    weights = [s / sum(shares) for s in shares]
    if total == 0 or len(observed) < 2:
        return SampleRatio(0.0, 1.0, False)
    chi2 = sum((o - total * w) ** 2 / (total * w) for o, w in zip(observed, weights, strict=True))
    p = chi2_sf(chi2, len(observed) - 1)
    return SampleRatio(chi2, p, p < SRM_ALPHA)


def required_n_proportions(
    p_c: float, p_t: float, alpha: float = ALPHA, power: float = POWER
) -> int:
    """Users per group to detect p_c → p_t (two-sided, pooled null variance); inf if equal."""
    if p_c == p_t:
        return math.inf  # type: ignore[return-value]
    bar = (p_c + p_t) / 2
    za, zb = z_crit(alpha), _N.inv_cdf(power)
    num = za * math.sqrt(2 * bar * (1 - bar)) + zb * math.sqrt(p_c * (1 - p_c) + p_t * (1 - p_t))
    return math.ceil(num**2 / (p_c - p_t) ** 2)


def required_n(n_per_group: float, se_diff: float, effect: float, power: float = POWER) -> float:
    """Users per group for the observed effect: the standard error shrinks as 1/√n, so
    n_needed = n · ((z_α/2 + z_power) · se / |effect|)². inf when the effect is 0."""
    if effect == 0 or not math.isfinite(se_diff):
        return math.inf
    factor = (z_crit() + _N.inv_cdf(power)) * se_diff / abs(effect)
    return n_per_group * factor**2


# --------------------------------------------------------------------------- verdict
@dataclass(frozen=True)
class Verdict:
    outcome: str  # winner | loser | not_enough_data | invalid
    text: str
    users_needed_per_variant: float | None = None


def verdict(
    result: TestResult, users_per_variant: float, higher_is_better: bool = True, srm: bool = False
) -> Verdict:
    """A plain verdict for one treatment on the primary metric."""
    if srm:
        return Verdict(
            "invalid",
            "sample-ratio mismatch: users are not split as configured, so the comparison is "
            "biased; find the cause (bots, redirects, logging loss) before reading results",
        )
    better = result.diff > 0 if higher_is_better else result.diff < 0
    if math.isfinite(result.p_value) and result.p_value < ALPHA and result.diff != 0:
        word = "winner" if better else "loser"
        shown = "< 0.0001" if result.p_value < 1e-4 else f"= {result.p_value:.3g}"
        return Verdict(word, f"{word} (p {shown} < {ALPHA}, difference {result.diff:+.4g})")
    se = (result.high - result.low) / (2 * z_crit())
    needed = required_n(users_per_variant, se, result.diff)
    if not math.isfinite(needed):
        return Verdict("not_enough_data", "not enough data yet: no observed difference", None)
    more = max(0.0, needed - users_per_variant)
    return Verdict(
        "not_enough_data",
        f"not enough data yet: about {needed:,.0f} users per variant ({more:,.0f} more) "
        f"would detect the observed effect ({result.diff:+.4g}) with power {POWER}",
        needed,
    )
