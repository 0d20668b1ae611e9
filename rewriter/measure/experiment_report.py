"""`affinity experiment report NAME`: per-variant metrics, lifts with 95% intervals, verdict.

Who counts: a user is in the experiment from their first impression in it (exposure), in
the variant that impression was ranked with. Events join like this:

- an event with a `query_id` belongs to that impression's variant (an id from a search that
  was not in this experiment, say on another index, is left out);
- an event without one is attributed to the user's variant (the same hash the proxy used),
  if the user was exposed and the event came after their first exposure.

Metrics (unit of analysis: the user, who is what the hash randomizes):

| metric | definition | test |
|---|---|---|
| ctr | impressions with ≥ 1 joined click / impressions | delta-method z |
| add_to_cart_rate | users with an add_to_cart / users | two-proportion z |
| conversion_rate | users with a purchase / users | two-proportion z |
| average_order_value | revenue / purchases | user bootstrap |
| revenue_per_user | revenue / users (zeros included) | Welch t |
| repeat_visit_rate | users with ≥ 2 visits (gap > 30 min) / users | two-proportion z |

Revenue is value × quantity (quantity 1 when absent) of purchase events. Relative lifts use
the delta method on the log ratio. Each treatment is compared with the control at α = 0.05
with no multiple-comparison correction: with several treatments, read single wins with care.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from opensearchpy import OpenSearch, helpers

from rewriter import config
from rewriter.events.fields import iso
from rewriter.experiments.assignment import METRICS, Experiment, describe
from rewriter.measure import stats

CLICK, CART, PURCHASE = "click", "add_to_cart", "purchase"
VISIT_GAP_S = 30 * 60.0
RATE_METRICS = ("add_to_cart_rate", "conversion_rate", "repeat_visit_rate")
LABELS = {
    "ctr": "CTR",
    "add_to_cart_rate": "cart rate",
    "conversion_rate": "conversion",
    "average_order_value": "avg order",
    "revenue_per_user": "revenue/user",
    "repeat_visit_rate": "repeat visit",
}


@dataclass(frozen=True)
class ImpressionRow:
    query_id: str
    user: str
    variant: str
    timestamp: float


@dataclass(frozen=True)
class EventRow:
    user: str
    type: str
    timestamp: float
    query_id: str | None = None
    value: float | None = None
    quantity: int | None = None


@dataclass
class UserTotals:
    first_seen: float
    impressions: int = 0
    clicked: set[str] = field(default_factory=set)
    carted: bool = False
    orders: int = 0
    revenue: float = 0.0
    times: list[float] = field(default_factory=list)

    @property
    def visits(self) -> int:
        ordered = sorted(self.times)
        return 1 + sum(1 for a, b in itertools.pairwise(ordered) if b - a > VISIT_GAP_S)


Users = dict[str, UserTotals]


# --------------------------------------------------------------------------- join
def attribute(
    exp: Experiment, impressions: Iterable[ImpressionRow], events: Iterable[EventRow]
) -> tuple[dict[str, Users], list[str]]:
    """Users per variant with their totals; notes on anything left out."""
    groups: dict[str, Users] = {v.name: {} for v in exp.variants}
    home: dict[str, str] = {}
    by_qid: dict[str, ImpressionRow] = {}
    crossed = 0
    for imp in sorted(impressions, key=lambda i: i.timestamp):
        if imp.variant not in groups:
            continue
        by_qid[imp.query_id] = imp
        if home.setdefault(imp.user, imp.variant) != imp.variant:
            crossed += 1
            continue
        totals = groups[imp.variant].setdefault(imp.user, UserTotals(imp.timestamp))
        totals.impressions += 1
        totals.times.append(imp.timestamp)
    skipped = 0
    for ev in events:
        totals = _owner(exp, ev, by_qid, home, groups)
        if totals is None:
            skipped += 1
        elif ev.type == CLICK and ev.query_id:
            totals.clicked.add(ev.query_id)
        elif ev.type == CART:
            totals.carted = True
        elif ev.type == PURCHASE:
            totals.orders += 1
            totals.revenue += (ev.value or 0.0) * (ev.quantity or 1)
    notes = [f"{skipped} events not attributed (unexposed users, or other searches)"]
    if crossed:
        notes.append(
            f"{crossed} impressions of users seen in two variants left out (salt changed?)"
        )
    return groups, notes


def _owner(
    exp: Experiment,
    ev: EventRow,
    by_qid: Mapping[str, ImpressionRow],
    home: Mapping[str, str],
    groups: Mapping[str, Users],
) -> UserTotals | None:
    if ev.query_id:
        imp = by_qid.get(ev.query_id)
        return None if imp is None else groups[home[imp.user]].get(imp.user)
    variant = exp.assign(ev.user).name
    totals = groups[variant].get(ev.user) if home.get(ev.user) == variant else None
    return totals if totals is not None and ev.timestamp >= totals.first_seen else None


# --------------------------------------------------------------------------- metrics
@dataclass(frozen=True)
class Estimate:
    value: float
    low: float
    high: float
    se: float


@dataclass(frozen=True)
class Comparison:
    metric: str
    variant: str
    diff: float
    low: float
    high: float
    lift: float
    lift_low: float
    lift_high: float
    p_value: float
    method: str


def _columns(users: Users) -> dict[str, np.ndarray]:
    rows = list(users.values())
    return {
        "impressions": np.array([u.impressions for u in rows], float),
        "clicked": np.array([len(u.clicked) for u in rows], float),
        "carted": np.array([u.carted for u in rows], float),
        "converted": np.array([u.orders > 0 for u in rows], float),
        "orders": np.array([u.orders for u in rows], float),
        "revenue": np.array([u.revenue for u in rows], float),
        "repeat": np.array([u.visits >= 2 for u in rows], float),
    }


_RATE_COLUMN = {
    "add_to_cart_rate": "carted",
    "conversion_rate": "converted",
    "repeat_visit_rate": "repeat",
}
_RATIO_COLUMNS = {"ctr": ("clicked", "impressions"), "average_order_value": ("revenue", "orders")}


def estimate(metric: str, cols: Mapping[str, np.ndarray]) -> Estimate:
    """The metric of one variant with its 95% interval and standard error."""
    n = len(cols["impressions"])
    if metric in _RATE_COLUMN:
        x = int(cols[_RATE_COLUMN[metric]].sum())
        p, low, high = stats.proportion_ci(x, n)
        return Estimate(p, low, high, math.sqrt(p * (1 - p) / n) if n else math.nan)
    if metric in _RATIO_COLUMNS:
        num, den = _RATIO_COLUMNS[metric]
        r = stats.ratio(cols[num], cols[den])
        half = stats.z_crit() * r.se
        return Estimate(r.value, r.value - half, r.value + half, r.se)
    mean, low, high = stats.mean_ci(cols["revenue"])
    se = float(cols["revenue"].std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    return Estimate(mean, low, high, se)


def compare(
    metric: str, ctl: Mapping[str, np.ndarray], trt: Mapping[str, np.ndarray]
) -> stats.TestResult:
    """Treatment − control for one metric, with the test the module docstring names."""
    if metric in _RATE_COLUMN:
        col = _RATE_COLUMN[metric]
        n_c, n_t = len(ctl[col]), len(trt[col])
        return stats.two_proportion_ztest(int(ctl[col].sum()), n_c, int(trt[col].sum()), n_t)
    if metric == "ctr":
        c = stats.ratio(ctl["clicked"], ctl["impressions"])
        t = stats.ratio(trt["clicked"], trt["impressions"])
        return stats.ratio_delta_test(c, t)
    if metric == "average_order_value":
        c = np.column_stack([ctl["revenue"], ctl["orders"]])
        t = np.column_stack([trt["revenue"], trt["orders"]])
        return stats.bootstrap_diff(c, t, _aov)
    return stats.welch_ttest(ctl["revenue"], trt["revenue"])


def _aov(sample: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return sample[..., 0].sum(axis=-1) / sample[..., 1].sum(axis=-1)


# --------------------------------------------------------------------------- report
@dataclass(frozen=True)
class VariantSummary:
    name: str
    users: int
    impressions: int
    metrics: dict[str, Estimate]


@dataclass(frozen=True)
class Report:
    experiment: Experiment
    variants: list[VariantSummary]
    comparisons: list[Comparison]
    srm: stats.SampleRatio
    verdicts: dict[str, stats.Verdict]
    notes: list[str]

    def to_json(self) -> dict[str, object]:
        """Plain data; undefined numbers (nan) become None, so the output is strict JSON."""
        return _finite(
            {
                "experiment": describe(self.experiment),
                "variants": [asdict(v) for v in self.variants],
                "comparisons": [asdict(c) for c in self.comparisons],
                "sample_ratio": asdict(self.srm),
                "verdicts": {k: asdict(v) for k, v in self.verdicts.items()},
                "notes": self.notes,
            }
        )


def _finite(value: object) -> object:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def build_report(
    exp: Experiment, impressions: Iterable[ImpressionRow], events: Iterable[EventRow]
) -> Report:
    """Everything `affinity experiment report` prints, from impressions and events."""
    groups, notes = attribute(exp, impressions, events)
    cols = {name: _columns(users) for name, users in groups.items()}
    summaries = [
        VariantSummary(
            v.name,
            len(groups[v.name]),
            int(cols[v.name]["impressions"].sum()),
            {m: estimate(m, cols[v.name]) for m in METRICS} if groups[v.name] else {},
        )
        for v in exp.variants
    ]
    srm = stats.srm_test([s.users for s in summaries], [v.traffic for v in exp.variants])
    comparisons, verdicts = [], {}
    ctl = exp.control
    for v in exp.treatments:
        if len(groups[ctl]) < 2 or len(groups[v.name]) < 2:
            verdicts[v.name] = stats.Verdict("not_enough_data", "not enough data yet: no users")
            continue
        for metric in METRICS:
            comparisons.append(_comparison(metric, v.name, cols[ctl], cols[v.name], summaries))
        primary = compare(exp.primary_metric, cols[ctl], cols[v.name])
        users = (len(groups[ctl]) + len(groups[v.name])) / 2
        verdicts[v.name] = stats.verdict(primary, users, srm=srm.mismatch)
    return Report(exp, summaries, comparisons, srm, verdicts, notes)


def _comparison(
    metric: str,
    variant: str,
    ctl: Mapping[str, np.ndarray],
    trt: Mapping[str, np.ndarray],
    summaries: Sequence[VariantSummary],
) -> Comparison:
    result = compare(metric, ctl, trt)
    c, t = estimate(metric, ctl), estimate(metric, trt)
    lift = stats.relative_lift(c.value, c.se, t.value, t.se)
    return Comparison(
        metric,
        variant,
        result.diff,
        result.low,
        result.high,
        lift.relative,
        lift.low,
        lift.high,
        result.p_value,
        result.method,
    )


# --------------------------------------------------------------------------- rendering
def _fmt(x: float, pct: bool) -> str:
    if not math.isfinite(x):
        return "n/a"
    return f"{x * 100:.2f}%" if pct else f"{x:,.2f}"


def format_p(p: float) -> str:
    if not math.isfinite(p):
        return "n/a"
    return "<0.0001" if p < 1e-4 else f"{p:.3g}"


def _pct_metric(metric: str) -> bool:
    return metric in ("ctr", *RATE_METRICS)


def render_table(report: Report) -> str:
    exp = report.experiment
    end = iso(exp.end) if exp.end else "open"
    lines = [
        f"experiment {exp.name} on index {exp.index} ({iso(exp.start)} .. {end}), "
        f"control {exp.control}, primary metric {exp.primary_metric}",
        "",
        f"{'variant':<16}{'users':>8}{'impr.':>9}" + "".join(f"{LABELS[m]:>14}" for m in METRICS),
    ]
    for s in report.variants:
        cells = "".join(
            f"{_fmt(s.metrics[m].value, _pct_metric(m)) if s.metrics else 'n/a':>14}"
            for m in METRICS
        )
        lines.append(f"{s.name:<16}{s.users:>8}{s.impressions:>9}{cells}")
    lines += [
        "",
        f"{'vs ' + exp.control:<28}{'abs. lift [95% CI]':>34}{'rel. lift [95% CI]':>30}"
        f"{'p':>9}  test",
    ]
    for c in report.comparisons:
        pct = _pct_metric(c.metric)
        absolute = f"{_fmt(c.diff, pct)} [{_fmt(c.low, pct)}, {_fmt(c.high, pct)}]"
        rel = f"{_fmt(c.lift, True)} [{_fmt(c.lift_low, True)}, {_fmt(c.lift_high, True)}]"
        p = format_p(c.p_value)
        lines.append(f"{c.variant + ' ' + c.metric:<28}{absolute:>34}{rel:>30}{p:>9}  {c.method}")
    srm = report.srm
    lines += [
        "",
        f"sample ratio: chi2 {srm.chi2:.2f}, p {srm.p_value:.3g}: "
        + ("MISMATCH" if srm.mismatch else "ok"),
    ]
    lines += [f"verdict {name}: {v.text}" for name, v in report.verdicts.items()]
    lines += [f"note: {n}" for n in report.notes]
    return "\n".join(lines)


# --------------------------------------------------------------------------- I/O
def fetch(
    es: OpenSearch, settings: config.Settings, exp: Experiment, now: float
) -> tuple[list[ImpressionRow], list[EventRow]]:
    """The experiment's impressions and the events of its time window, from OpenSearch."""
    end = min(exp.end or now, now)
    window = {"range": {"timestamp": {"gte": exp.start, "lte": end}}}
    idx = settings.indices
    es.indices.refresh(index=f"{idx.impressions},{idx.events}")
    imp_query = {"query": {"bool": {"filter": [{"term": {"experiment": exp.name}}, window]}}}
    impressions = [
        ImpressionRow(s["query_id"], s["user_id"], s["variant"], float(s["timestamp"]))
        for s in _scan(
            es, idx.impressions, imp_query, ["query_id", "user_id", "variant", "timestamp"]
        )
        if s.get("user_id") and s.get("variant")
    ]
    types = {"terms": {"type": [CLICK, CART, PURCHASE]}}
    ev_query = {"query": {"bool": {"filter": [types, window]}}}
    fields = ["user_id", "type", "timestamp", "query_id", "value", "quantity"]
    events = [
        EventRow(
            s["user_id"],
            s["type"],
            float(s["timestamp"]),
            s.get("query_id"),
            s.get("value"),
            s.get("quantity"),
        )
        for s in _scan(es, idx.events, ev_query, fields)
    ]
    return impressions, events


def _scan(es: OpenSearch, index: str, query: dict, fields: list[str]) -> Iterable[dict]:
    for hit in helpers.scan(es, index=index, query={**query, "_source": fields}, size=5000):
        yield hit["_source"]
