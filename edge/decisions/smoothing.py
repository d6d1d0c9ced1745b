"""Bayesian smoothing of a track's condition probabilities over frames.

The belief about a package's condition is a Dirichlet over `CONDITIONS`. Each frame adds its
predicted probabilities as pseudo-counts, weighted by the detection score (a half-visible package
at the frame edge counts for less). The posterior mean is the smoothed distribution. Frames of one
package are strongly correlated, so unlike a naive log-odds product this does not become
over-confident: ten frames that each say 0.7 still say 0.7. A `discount` below 1 forgets old
frames exponentially (useful when a package is damaged in view, e.g. at a sorter).
"""

from __future__ import annotations

import numpy as np

from contract.vocabulary import CONDITIONS


class DirichletSmoother:
    def __init__(self, prior: float = 0.05, discount: float = 1.0) -> None:
        if prior <= 0 or not 0 < discount <= 1:
            raise ValueError("prior must be > 0 and discount in (0, 1]")
        self._prior = np.full(len(CONDITIONS), prior, dtype=np.float64)
        self._counts = np.zeros(len(CONDITIONS), dtype=np.float64)
        self._score_sum = 0.0
        self._weight_sum = 0.0
        self.discount = discount
        self.frames = 0

    def update(self, probs: np.ndarray, weight: float = 1.0) -> None:
        """Add one frame's condition probabilities with evidence `weight` (the detection score)."""
        w = min(max(float(weight), 0.0), 1.0)  # np.clip on a scalar costs 6 µs, per detection
        self._counts = self.discount * self._counts + w * np.asarray(probs, dtype=np.float64)
        self._score_sum = self.discount * self._score_sum + w * w
        self._weight_sum = self.discount * self._weight_sum + w
        self.frames += 1

    def replace(self, index: int, old: tuple[np.ndarray, float], new: tuple[np.ndarray, float]) -> None:
        """Swap the `index`-th update's (probabilities, weight) for another (a late primary result
        replacing the fallback's): exact under the discount, which has shrunk it since by
        ``discount ** age``, so the frames after it keep their weight."""
        if not 0 <= index < self.frames:
            raise ValueError(f"update {index} does not exist ({self.frames} so far)")
        factor = self.discount ** (self.frames - 1 - index)
        (p_old, w_old), (p_new, w_new) = old, new
        wo, wn = float(np.clip(w_old, 0.0, 1.0)), float(np.clip(w_new, 0.0, 1.0))
        delta = wn * np.asarray(p_new, dtype=np.float64) - wo * np.asarray(p_old, dtype=np.float64)
        self._counts = np.maximum(self._counts + factor * delta, 0.0)
        self._score_sum = max(self._score_sum + factor * (wn * wn - wo * wo), 0.0)
        self._weight_sum = max(self._weight_sum + factor * (wn - wo), 0.0)

    @property
    def probs(self) -> np.ndarray:
        alpha = self._prior + self._counts
        return (alpha / alpha.sum()).astype(np.float32)

    @property
    def condition(self) -> str:
        return CONDITIONS[int(np.argmax(self.probs))]

    @property
    def confidence(self) -> float:
        """Smoothed probability of the chosen condition."""
        return float(self.probs.max())

    @property
    def p_damaged(self) -> float:
        """Smoothed probability that the package is anything but ok."""
        return 1.0 - float(self.probs[CONDITIONS.index("ok")])

    @property
    def detection_score(self) -> float:
        """Score-weighted mean detection score (high-score frames dominate)."""
        return self._score_sum / self._weight_sum if self._weight_sum > 0 else 0.0
