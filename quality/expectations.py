"""Great Expectations 1.x suites: what the platform's tables must look like.

Each function returns the expectations of one suite; ``quality.validate.validate`` runs them on a
DataFrame. Suites are code (reviewed, versioned, tested), not JSON edited in a UI.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import great_expectations.expectations as gxe
from great_expectations.expectations.expectation import Expectation

from contract.vocabulary import CONDITIONS


def detections_suite(facilities: Sequence[str]) -> list[Expectation]:
    """Rows of ``package_detections`` (joined with their assessment for decisions)."""
    return [
        gxe.ExpectColumnValuesToNotBeNull(column="event_id"),
        gxe.ExpectColumnValuesToBeUnique(column="event_id"),
        gxe.ExpectColumnValuesToBeInSet(column="kind", value_set=["detection", "decision"]),
        gxe.ExpectColumnValuesToBeInSet(column="facility_id", value_set=list(facilities)),
        gxe.ExpectColumnValuesToBeBetween(column="detection_confidence", min_value=0, max_value=1),
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="x2", column_B="x1", or_equal=True),
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="y2", column_B="y1", or_equal=True),
        gxe.ExpectColumnValuesToNotBeNull(column="model_version"),
        gxe.ExpectColumnValuesToBeInSet(column="condition", value_set=list(CONDITIONS)),
        # Latency is a budget, not a law: flag when more than 1 % of events blow 10 s end to end.
        gxe.ExpectColumnValuesToBeBetween(column="end_to_end_ms", min_value=0, max_value=10_000, mostly=0.99),
    ]


def verified_samples_suite(day: date, min_verified_share: float = 0.0) -> list[Expectation]:
    """One facility-day of ``verified_samples``."""
    suite: list[Expectation] = [
        gxe.ExpectColumnValuesToNotBeNull(column="event_id"),
        gxe.ExpectColumnValuesToBeUnique(column="event_id"),
        gxe.ExpectColumnValuesToBeInSet(column="sample_date", value_set=[day.isoformat()]),
        gxe.ExpectColumnValuesToBeInSet(column="predicted_condition", value_set=list(CONDITIONS)),
        gxe.ExpectColumnValuesToBeInSet(column="verified_condition", value_set=list(CONDITIONS)),
        gxe.ExpectColumnValuesToBeBetween(column="predicted_confidence", min_value=0, max_value=1),
    ]
    if min_verified_share > 0:
        suite.append(
            gxe.ExpectColumnValuesToNotBeNull(column="verified_condition", mostly=min_verified_share)
        )
    return suite


def analytics_suite(
    count_columns: Sequence[str] = (),
    rate_columns: Sequence[str] = (),
    latency_columns: Sequence[str] = (),
    key_columns: Sequence[str] = (),
) -> list[Expectation]:
    """A rollup table: keys present and unique together, counts ≥ 0, rates in [0, 1], latencies ≥ 0."""
    suite: list[Expectation] = [gxe.ExpectColumnValuesToNotBeNull(column=c) for c in key_columns]
    if key_columns:
        suite.append(gxe.ExpectCompoundColumnsToBeUnique(column_list=list(key_columns)))
    suite += [gxe.ExpectColumnValuesToBeBetween(column=c, min_value=0) for c in count_columns]
    suite += [gxe.ExpectColumnValuesToBeBetween(column=c, min_value=0, max_value=1) for c in rate_columns]
    suite += [gxe.ExpectColumnValuesToBeBetween(column=c, min_value=0) for c in latency_columns]
    return suite
