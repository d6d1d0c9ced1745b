"""Dirichlet smoothing: frames vote by score, agreement does not inflate confidence."""

from __future__ import annotations

import numpy as np
import pytest

from edge.decisions.smoothing import DirichletSmoother


def probs(ok: float, crushed: float = 0.0) -> np.ndarray:
    rest = (1 - ok - crushed) / 3
    return np.array([ok, crushed, rest, rest, rest], dtype=np.float32)


def test_many_agreeing_frames_converge_to_their_probability_not_to_certainty():
    s = DirichletSmoother(prior=0.05)
    for _ in range(50):
        s.update(probs(0.7), 1.0)
    assert s.condition == "ok"
    assert s.confidence == pytest.approx(0.7, abs=0.01)


def test_a_few_noisy_frames_do_not_flip_a_consistent_track():
    s = DirichletSmoother()
    for i in range(30):
        s.update(probs(0.1, crushed=0.85) if i % 10 == 0 else probs(0.8), 0.9)
    assert s.condition == "ok"
    assert s.p_damaged < 0.5


def test_low_score_frames_weigh_less_than_confident_ones():
    s = DirichletSmoother(prior=0.01)
    for _ in range(5):
        s.update(probs(0.05, crushed=0.9), 0.95)
    for _ in range(5):
        s.update(probs(0.95), 0.1)
    assert s.condition == "crushed"
    assert s.detection_score > 0.8


def test_discount_forgets_old_frames():
    s = DirichletSmoother(discount=0.8)
    for _ in range(20):
        s.update(probs(0.9), 1.0)
    for _ in range(20):
        s.update(probs(0.05, crushed=0.9), 1.0)
    assert s.condition == "crushed"


def test_invalid_parameters_are_rejected():
    with pytest.raises(ValueError):
        DirichletSmoother(prior=0)
    with pytest.raises(ValueError):
        DirichletSmoother(discount=1.5)
