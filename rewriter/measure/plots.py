"""PNG plots for `affinity experiment report --plot` and `affinity evaluate --plot`.

matplotlib is imported inside each function (with the non-interactive Agg backend), so the
rest of affinity never pays for it.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

from rewriter.experiments.assignment import METRICS
from rewriter.measure.experiment_report import LABELS, Report, format_p


def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def experiment_plot(report: Report, path: str | Path) -> Path:
    """One panel per metric: each variant's value with its 95% interval."""
    plt = _pyplot()
    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    names = [v.name for v in report.variants]
    colours = ["#777777", "#1f77b4", "#d62728", "#2ca02c", "#9467bd"]
    for ax, metric in zip(axes.ravel(), METRICS, strict=True):
        for i, v in enumerate(report.variants):
            est = v.metrics.get(metric)
            if est is None or not math.isfinite(est.value):
                continue
            low = est.value - est.low if math.isfinite(est.low) else 0.0
            high = est.high - est.value if math.isfinite(est.high) else 0.0
            colour = colours[i % len(colours)]
            ax.errorbar([i], [est.value], yerr=[[low], [high]], fmt="o", capsize=6, color=colour)
        ax.set_xticks(range(len(names)), names)
        ax.set_xlim(-0.6, len(names) - 0.4)
        ax.set_title(f"{LABELS[metric]}{_lift_note(report, metric)}", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    exp = report.experiment
    fig.suptitle(
        f"experiment {exp.name}: value per variant with 95% CI (control {exp.control}); "
        f"users {', '.join(f'{v.name} {v.users}' for v in report.variants)}",
        fontsize=11,
    )
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _lift_note(report: Report, metric: str) -> str:
    parts = [
        f"{c.variant}: {c.lift:+.1%} (p {format_p(c.p_value)})"
        for c in report.comparisons
        if c.metric == metric and math.isfinite(c.lift)
    ]
    return "\n" + "; ".join(parts) if parts else ""


def evaluation_plot(
    alphas: Sequence[float],
    personalized: Mapping[str, Sequence[float]],
    baselines: Mapping[str, Mapping[str, float]],
    path: str | Path,
    title: str,
) -> Path:
    """Each metric against alpha for personalized, with generic and popularity as lines."""
    plt = _pyplot()
    metrics = list(personalized)
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.8))
    for ax, metric in zip(list(axes), metrics, strict=True):
        ax.plot(alphas, personalized[metric], "o-", label="personalized", color="#1f77b4")
        for (name, values), style in zip(baselines.items(), ("--", ":", "-."), strict=False):
            colour = "#d62728" if name == "popularity" else "#555555"
            ax.axhline(values[metric], linestyle=style, color=colour, label=name, linewidth=1.2)
        ax.set_xlabel("alpha")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(textwrap.fill(title, 130), fontsize=9)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
