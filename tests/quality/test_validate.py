"""Great Expectations suites run on DataFrames, failures listed."""

from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from quality.expectations import analytics_suite, verified_samples_suite
from quality.validate import validate


@pytest.mark.timeout(120)
def test_failing_expectations_are_listed_and_data_docs_written(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "event_id": ["a", "b", "b"],
            "sample_date": ["2025-03-10"] * 3,
            "predicted_condition": ["ok", "wet", "soggy"],
            "verified_condition": ["ok", None, "wet"],
            "predicted_confidence": [0.9, 1.4, 0.5],
        }
    )
    outcome = validate(frame, "verified_samples", verified_samples_suite(date(2025, 3, 10)), tmp_path)
    assert not outcome.success
    failing = {(f["expectation"], f["column"]) for f in outcome.failures_table()}
    assert failing == {
        ("expect_column_values_to_be_unique", "event_id"),
        ("expect_column_values_to_be_in_set", "predicted_condition"),
        ("expect_column_values_to_be_between", "predicted_confidence"),
    }
    assert outcome.docs_path and Path(outcome.docs_path.removeprefix("file://")).exists()
    good = frame.iloc[:1]
    assert validate(good, "verified_samples", verified_samples_suite(date(2025, 3, 10)), tmp_path).success


@pytest.mark.timeout(120)
def test_analytics_suite_checks_keys_rates_and_counts(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {"facility_id": ["F1", "F1"], "day": ["d", "d"], "packages": [10, -1], "damage_rate": [0.1, 2]}
    )
    suite = analytics_suite(
        count_columns=["packages"], rate_columns=["damage_rate"], key_columns=["facility_id", "day"]
    )
    outcome = validate(frame, "analytics", suite, tmp_path, data_docs=False)
    assert {f["expectation"] for f in outcome.failures_table()} == {
        "expect_compound_columns_to_be_unique",
        "expect_column_values_to_be_between",
    }
    assert len(outcome.failures) == 3
