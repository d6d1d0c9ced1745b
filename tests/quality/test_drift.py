"""The MMD two-sample test on embeddings."""

import numpy as np
import pytest

from quality.drift import mmd_permutation_test


def test_same_distribution_is_not_flagged_and_a_shift_is() -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(300, 32))
    same = mmd_permutation_test(reference, rng.normal(size=(200, 32)), permutations=100)
    shifted = mmd_permutation_test(reference, rng.normal(size=(200, 32)) + 0.4, permutations=100)
    assert same.p_value > 0.05 and not same.drifted()
    assert shifted.p_value < 0.01 and shifted.drifted()
    assert shifted.statistic > same.statistic


def test_a_covariance_change_with_equal_means_is_flagged() -> None:
    rng = np.random.default_rng(1)
    reference = rng.normal(size=(300, 16))
    wider = rng.normal(scale=1.8, size=(200, 16))
    assert mmd_permutation_test(reference, wider, permutations=100).drifted()


def test_mismatched_shapes_are_rejected() -> None:
    with pytest.raises(ValueError, match="equal d"):
        mmd_permutation_test(np.zeros((5, 3)), np.zeros((5, 4)))
