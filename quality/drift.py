"""Embedding drift: is today's embedding distribution the one the model was trained on?

A kernel two-sample test (MMD² with an RBF kernel, bandwidth by the median heuristic) with a
permutation p-value. It sees shifts in any direction of the embedding space, not only in the
marginals, and stays cheap because both samples are capped (the statistic is O(n²)).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DriftTest:
    method: str
    statistic: float
    p_value: float
    reference_size: int
    current_size: int
    permutations: int

    def drifted(self, alpha: float = 0.01) -> bool:
        return self.p_value < alpha


def _mmd2_unbiased(kernel: np.ndarray, n: int) -> float:
    """Unbiased MMD² of the first ``n`` rows versus the rest of a joint kernel matrix."""
    m = kernel.shape[0] - n
    kxx = kernel[:n, :n]
    kyy = kernel[n:, n:]
    kxy = kernel[:n, n:]
    return float(
        (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
        + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        - 2.0 * kxy.mean()
    )


def mmd_permutation_test(
    reference: np.ndarray,
    current: np.ndarray,
    permutations: int = 200,
    max_samples: int = 400,
    seed: int = 0,
) -> DriftTest:
    """Two-sample MMD test; the p-value is (1 + #permuted ≥ observed) / (1 + permutations)."""
    rng = np.random.default_rng(seed)
    x = np.asarray(reference, dtype=np.float64)
    y = np.asarray(current, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"expected two (n, d) arrays with equal d, got {x.shape} and {y.shape}")
    if len(x) < 2 or len(y) < 2:
        raise ValueError(f"need at least 2 embeddings per sample, got {len(x)} and {len(y)}")
    if len(x) > max_samples:
        x = x[rng.choice(len(x), max_samples, replace=False)]
    if len(y) > max_samples:
        y = y[rng.choice(len(y), max_samples, replace=False)]
    joint = np.concatenate([x, y])
    sq = np.sum(joint**2, axis=1)
    dist2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * joint @ joint.T, 0.0)
    upper = dist2[np.triu_indices(len(joint), k=1)]
    bandwidth = float(np.median(upper)) or 1.0
    kernel = np.exp(-dist2 / bandwidth)
    n = len(x)
    observed = _mmd2_unbiased(kernel, n)
    exceed = 0
    for _ in range(permutations):
        order = rng.permutation(len(joint))
        if _mmd2_unbiased(kernel[np.ix_(order, order)], n) >= observed:
            exceed += 1
    return DriftTest(
        method="mmd-rbf-permutation",
        statistic=observed,
        p_value=(1 + exceed) / (1 + permutations),
        reference_size=len(x),
        current_size=len(y),
        permutations=permutations,
    )
