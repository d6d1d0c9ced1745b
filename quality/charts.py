"""PNG charts for materialization metadata: what a person would rather look at than read.

Rendered with matplotlib's Agg backend (no display needed) into bytes; callers decide where the
file goes and how it is embedded.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def _png(fig: plt.Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def markdown_image(png: bytes, alt: str) -> str:
    """Markdown embedding the PNG as a data URI (shown inline by the Dagster UI)."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"


def drift_chart(
    title: str,
    histogram: Mapping[str, Sequence[float]],
    confusion: Sequence[Sequence[int]],
    labels: Sequence[str],
) -> bytes:
    """Confidence histogram (correct vs wrong) beside the confusion matrix."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    edges = np.asarray(histogram["edges"], dtype=float)
    centres = (edges[:-1] + edges[1:]) / 2
    width = float(edges[1] - edges[0]) * 0.9
    right_counts = np.asarray(histogram["correct"], dtype=float)
    wrong_counts = np.asarray(histogram["wrong"], dtype=float)
    left.bar(centres, right_counts, width=width, color="#4c9f70", label="correct")
    left.bar(centres, wrong_counts, width=width, bottom=right_counts, color="#d1495b", label="wrong")
    left.set_xlabel("model confidence")
    left.set_ylabel("verified samples")
    left.set_xlim(0, 1)
    left.legend()
    matrix = np.asarray(confusion, dtype=float)
    right.imshow(matrix, cmap="Blues")
    right.set_xticks(range(len(labels)), labels, rotation=45)
    right.set_yticks(range(len(labels)), labels)
    right.set_xlabel("predicted")
    right.set_ylabel("verified")
    for (i, j), value in np.ndenumerate(matrix):
        if value:
            right.text(j, i, int(value), ha="center", va="center", fontsize=8)
    fig.suptitle(title)
    return _png(fig)


def bar_chart(title: str, values: Mapping[str, float], ylabel: str, reference: float | None = None) -> bytes:
    """One bar per key, with an optional horizontal reference line (e.g. a threshold)."""
    fig, ax = plt.subplots(figsize=(max(4, 0.6 * len(values) + 2), 3.5))
    names = list(values)
    ax.bar(names, [values[n] for n in names], color="#30638e")
    if reference is not None:
        ax.axhline(reference, color="#d1495b", linestyle="--", linewidth=1)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=45)
    return _png(fig)


def comparison_chart(
    title: str, arms: Mapping[str, Mapping[str, float | None]], panels: Sequence[str]
) -> bytes:
    """One small bar panel per figure in ``panels``, one bar per arm (e.g. canary vs production)."""
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.2), squeeze=False)
    names = list(arms)
    colours = ["#30638e", "#d1495b", "#edae49", "#00798c"]
    for ax, panel in zip(axes[0], panels, strict=True):
        values = [arms[n].get(panel) for n in names]
        ax.bar(names, [v or 0.0 for v in values], color=colours[: len(names)])
        for i, v in enumerate(values):
            ax.annotate(
                "n/a" if v is None else f"{v:.3g}", (i, v or 0.0), ha="center", va="bottom", fontsize=8
            )
        ax.set_title(panel, fontsize=9)
        ax.tick_params(axis="x", labelsize=8)
    fig.suptitle(title)
    return _png(fig)
