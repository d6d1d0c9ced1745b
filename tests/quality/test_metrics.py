"""Classification metrics of verified samples."""

import numpy as np
import pytest

from contract.vocabulary import CONDITIONS
from quality.metrics import classification_report, expected_calibration_error


def test_conditions_follow_the_contract_enum() -> None:
    assert CONDITIONS == ("ok", "crushed", "torn", "wet", "open")


def test_report_counts_accuracy_per_class_and_confusion() -> None:
    report = classification_report(
        verified=["ok", "ok", "wet", "torn", "ok"],
        predicted=["ok", "wet", "wet", "torn", "ok"],
        confidence=[0.9, 0.6, 0.8, 0.95, 0.99],
    )
    assert report.samples == 5
    assert report.accuracy == pytest.approx(0.8)
    assert report.per_class["ok"].recall == pytest.approx(2 / 3)
    assert report.per_class["wet"].precision == pytest.approx(0.5)
    assert report.per_class["crushed"].support == 0
    assert report.confusion[0][3] == 1  # a verified 'ok' predicted 'wet'
    assert sum(map(sum, report.confusion)) == 5
    assert sum(report.histogram["correct"]) == 4 and sum(report.histogram["wrong"]) == 1


def test_calibration_error_is_zero_when_confidence_matches_accuracy() -> None:
    confidence = np.full(100, 0.75)
    correct = np.array([True] * 75 + [False] * 25)
    assert expected_calibration_error(confidence, correct) == pytest.approx(0.0)
    assert expected_calibration_error(np.full(10, 0.95), np.zeros(10, bool)) == pytest.approx(0.95)


def test_empty_input_gives_zeros_and_unknown_labels_are_rejected() -> None:
    assert classification_report([], [], []).accuracy == 0.0
    with pytest.raises(ValueError, match="unknown labels"):
        classification_report(["soggy"], ["ok"], [0.5])
