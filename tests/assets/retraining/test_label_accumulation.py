"""Retraining answers a drift with what worked on the label-efficiency benchmark: the drifted
facility's labels of every day since the drop, the model's mistakes first within the label budget;
and the drift sensor retrains again while the facility stays below the threshold."""

from datetime import UTC, date, datetime, timedelta
from itertools import count
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import pytest

from assets.retraining.assets import is_recent_holdout, load_manifest, retraining_dataset
from orchestration.sensors import drift_retraining_sensor
from orchestration.settings import OrchestrationSettings

START = datetime(2025, 3, 10, 6, tzinfo=UTC)
URI = f"synthetic://seed=11&fps=10&start_time={START.timestamp():.0f}"
_ids = count()


def _label(
    conn: psycopg.Connection, facility: str, day: str, predicted: str, confidence: float, verified: str,
    hard: bool = False,
) -> str:  # fmt: skip
    """A labeled decision of a new (trained, not held-out) package on ``day``: a verified sample, or a
    hard example whose label came back from labeling."""
    package = next(p for i in _ids if not is_recent_holdout(p := f"PKG-{i:04d}"))
    at = datetime.fromisoformat(day).replace(hour=8, tzinfo=UTC) + timedelta(seconds=int(package[4:]))
    values = (
        f"ev-{package}",
        facility,
        at,
        package,
        "cam-a",
        [0.1, 0.2, 0.3, 0.4],
        predicted,
        confidence,
        verified,
    )
    if hard:
        conn.execute(
            "INSERT INTO hard_examples (export_id, event_id, facility_id, event_time, package_id, track_id, "
            "camera_id, bbox, predicted_condition, predicted_confidence, verified_condition, verified_at) "
            "VALUES ('hard-test', %s, %s, %s, %s, 'trk', %s, %s, %s, %s, %s, now())",
            values,
        )
    else:
        conn.execute(
            "INSERT INTO verified_samples (event_id, facility_id, sample_date, event_time, package_id, camera_id, "
            "bbox, predicted_condition, predicted_confidence, verified_condition, verified_at) "
            "VALUES (%s, %s, %s::timestamptz::date, %s, %s, %s, %s, %s, %s, %s, now())",
            (values[0], facility, at, *values[2:]),
        )
    return package


def _dataset(resources: dict[str, Any], **config: Any) -> dict[str, Any]:
    result = dg.materialize(
        [retraining_dataset],
        resources=resources,
        run_config={"ops": {"retraining_dataset": {"config": {"replay_frames": 0, **config}}}},
    )
    meta = result.asset_materializations_for_node("retraining_dataset")[0].metadata
    dataset = load_manifest(Path(str(meta["manifest"].value)))
    return {"selection": dataset.selection, "frames": len(dataset.train)}


def test_the_drifted_facility_s_days_since_the_drop_fill_the_budget_mistakes_first(
    db: psycopg.Connection, resources: dict[str, Any]
) -> None:
    for facility in ("FAC-001", "FAC-002"):
        db.execute(
            "INSERT INTO cameras (facility_id, camera_id, source_uri) VALUES (%s, 'cam-a', %s) "
            "ON CONFLICT (facility_id, camera_id) DO UPDATE SET source_uri = EXCLUDED.source_uri",
            (facility, URI),
        )
    db.execute(
        "INSERT INTO hard_example_exports (export_id, week_start, confidence_low, confidence_high, examples, "
        "manifest_path) VALUES ('hard-test', '2025-03-10', 0.65, 0.85, 1, 'x')"
    )
    _label(db, "FAC-002", "2025-03-10", "ok", 0.90, "torn")  # before the drop: not this drift's
    for day, sure, unsure in (
        ("2025-03-11", 0.97, 0.80),
        ("2025-03-12", 0.98, 0.91),
        ("2025-03-13", 0.99, 0.92),
    ):
        _label(db, "FAC-002", day, "ok", 0.95, "crushed")  # the model was wrong
        _label(db, "FAC-002", day, "ok", sure, "ok")
        _label(db, "FAC-002", day, "ok", unsure, "ok")
    _label(db, "FAC-002", "2025-03-12", "ok", 0.70, "ok", hard=True)  # unsure, right: a hard-example label
    _label(db, "FAC-001", "2025-03-13", "ok", 0.93, "ok")  # another facility's newest day
    _label(db, "FAC-001", "2025-03-10", "torn", 0.99, "torn")  # outside its one-day look-back

    chosen = _dataset(resources, lookback_days=1, drift_since={"FAC-002": "2025-03-11"}, label_budget=5)
    selection = chosen["selection"]
    assert selection["labeled_packages"] == 11  # FAC-002's three days (3 × 3 + 1) and FAC-001's newest
    assert selection["trained_packages"] == chosen["frames"] == 5
    # the three mistakes (one a day), the hard-example label, then the least confident (0.80 on the 11th)
    assert selection["wrong_packages"] == 3 and selection["hard_packages"] == 4
    assert selection["packages_per_day"] == {"FAC-002": {"2025-03-11": 2, "2025-03-12": 2, "2025-03-13": 1}}
    assert selection["drift_since"] == {"FAC-002": "2025-03-11"}

    everything = _dataset(resources, label_budget=0)  # the former behaviour: every label of the look-back
    assert everything["selection"]["trained_packages"] == everything["frames"] == 13  # all 13 labels

    with pytest.raises(dg.Failure, match=r"drift_since\['FAC-002'\]"):
        _dataset(resources, drift_since={"FAC-002": "11 March"})


def _evaluated(instance: dg.DagsterInstance, day: str, accuracy: float) -> None:
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key="drift_evaluation",
            partition=dg.MultiPartitionKey({"date": day, "facility": "FAC-002"}),
            metadata={"accuracy": dg.MetadataValue.float(accuracy)},
        )
    )


def test_the_sensor_retrains_again_on_more_drifted_days_while_accuracy_stays_below() -> None:
    settings = OrchestrationSettings.load(retrain_every_days=2)
    cursor: str | None = None

    def tick(day: date, accuracy: float) -> list[dg.RunRequest]:
        nonlocal cursor
        _evaluated(instance, day.isoformat(), accuracy)
        context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"settings": settings})
        result = drift_retraining_sensor(context)
        assert isinstance(result, dg.SensorResult)
        cursor = result.cursor
        return list(result.run_requests or [])

    with dg.DagsterInstance.ephemeral() as instance:
        first = date(2025, 3, 11)
        fired = {
            day.isoformat(): [
                r.run_config["ops"]["retraining_dataset"]["config"]["drift_since"] for r in tick(day, a)
            ]
            for day, a in (
                (first + timedelta(days=i), a) for i, a in enumerate((0.90, 0.91, 0.92, 0.92, 0.96))
            )
        }
        # the drop, then two days later on the labels of all three days; recovered on the 15th
        since = [{"FAC-002": "2025-03-11"}]
        assert fired == {"2025-03-11": since, "2025-03-12": [], "2025-03-13": since, "2025-03-14": [],
                         "2025-03-15": []}  # fmt: skip
        # a later drop starts a new accumulation from its own first day
        (request,) = tick(date(2025, 3, 16), 0.85)
        assert request.run_config["ops"]["retraining_dataset"]["config"]["drift_since"] == {
            "FAC-002": "2025-03-16"
        }
        assert request.tags["wv/drift_since"] == "FAC-002@2025-03-16"
