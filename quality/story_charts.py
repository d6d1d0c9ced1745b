"""Charts of a whole stretch of operations (the demo's week): accuracy over time with the events
that explain it, the latency distribution, and anomalies per day.

Pure functions from plain data to PNG bytes (matplotlib Agg), like ``quality.charts``; callers
decide where the files go and which asset shows them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime

import numpy as np
from matplotlib.dates import date2num
from matplotlib.ticker import FuncFormatter

from quality.charts import _png, plt

PALETTE = ["#30638e", "#d1495b", "#4c9f70", "#edae49", "#8f5ea6", "#5c5c5c"]


def accuracy_timeline(
    series: Mapping[str, Sequence[tuple[date, float | None]]],
    threshold: float,
    events: Sequence[tuple[date | datetime, str]] = (),
    title: str = "Verified accuracy per facility",
) -> bytes:
    """Daily accuracy per facility, the retraining threshold, and labelled vertical markers
    (e.g. drift switched on, model swapped) at the day or instant they happened."""
    fig, ax = plt.subplots(figsize=(9, 4))
    for i, (facility, points) in enumerate(sorted(series.items())):
        known = [(d, a) for d, a in points if a is not None]
        if known:
            days, values = zip(*known, strict=True)
            ax.plot(days, values, marker="o", color=PALETTE[i % len(PALETTE)], label=facility)
    ax.axhline(threshold, color="#5c5c5c", linestyle="--", linewidth=1)
    ax.annotate(
        f"retraining threshold {threshold:.0%}",
        xy=(0.01, threshold),
        xycoords=("axes fraction", "data"),
        xytext=(0, 3),
        textcoords="offset points",
        fontsize=8,
        color="#5c5c5c",
    )
    for when, label in events:
        x = float(date2num(when))
        ax.axvline(x, color="#edae49", linewidth=1.5)
        ax.annotate(
            label,
            xy=(x, 0.02),
            xycoords=("data", "axes fraction"),
            rotation=90,
            fontsize=8,
            xytext=(3, 0),
            textcoords="offset points",
            va="bottom",
        )
    ax.set_ylim(min(0.5, *(a for p in series.values() for _, a in p if a is not None)) - 0.02, 1.01)
    ax.set_ylabel("accuracy (verified samples)")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0%}"))
    ax.set_title(title)
    ax.legend(loc="lower left", fontsize=8)
    fig.autofmt_xdate()
    return _png(fig)


def latency_distribution(
    samples: Mapping[str, Sequence[float]], title: str = "End-to-end latency per frame (edge)"
) -> bytes:
    """Histogram of latencies (ms, log-spaced bins) per group, with each group's p50 and p99."""
    fig, ax = plt.subplots(figsize=(9, 4))
    values = [v for s in samples.values() for v in s if v > 0]
    if values:
        low = max(float(np.percentile(values, 5)) / 2, 1.0)  # a few flush-time events sit near 0 ms
        bins = np.geomspace(low, max(max(values), low * 2) * 1.05, 40).tolist()
        for i, (name, group) in enumerate(sorted(samples.items())):
            data = np.asarray([v for v in group if v > 0])
            if not len(data):
                continue
            color = PALETTE[i % len(PALETTE)]
            p50, p99 = np.percentile(data, [50, 99])
            ax.hist(data, bins=bins, histtype="step", linewidth=1.5, color=color,
                    label=f"{name}: p50 {p50:.0f} ms, p99 {p99:.0f} ms")  # fmt: skip
            ax.axvline(p99, color=color, linestyle=":", linewidth=1)
        ax.set_xscale("log")
    ax.set_xlabel("milliseconds (log scale); dotted: p99")
    ax.set_ylabel("events")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _png(fig)


def anomalies_per_day(
    counts: Mapping[date, Mapping[str, int]], title: str = "Anomalies per day, by kind"
) -> bytes:
    """Stacked bars: one bar per day, one colour per anomaly kind."""
    days = sorted(counts)
    kinds = sorted({k for per_day in counts.values() for k in per_day})
    fig, ax = plt.subplots(figsize=(9, 4))
    bottom = np.zeros(len(days))
    labels = [d.strftime("%a %d %b") for d in days]
    for i, kind in enumerate(kinds):
        heights = np.asarray([counts[d].get(kind, 0) for d in days], dtype=float)
        ax.bar(labels, heights, bottom=bottom, color=PALETTE[i % len(PALETTE)], label=kind)
        bottom += heights
    for x, total in enumerate(bottom):
        ax.annotate(f"{int(total)}", xy=(x, total), ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("anomaly flags")
    ax.set_title(title)
    if kinds:
        ax.legend(fontsize=8)
    return _png(fig)
