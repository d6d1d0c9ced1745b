"""``drift_evaluation``: how well the deployed model did on a facility-day, judged by people.

Accuracy, per-class precision/recall/F1 and the confusion matrix (scikit-learn), the expected
calibration error, a confidence histogram, and an MMD two-sample test of the day's embeddings
against the model's training reference. One row per facility-day in ``drift_evaluations``; the
retraining sensor reads ``accuracy`` from the materialization.
"""

from collections import Counter
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
from psycopg.types.json import Jsonb

from assets.common.modeling import reference_embeddings
from assets.common.partitions import daily_facility_partitions, facility_day
from assets.common.resources import DatabaseResource, ModelRegistryResource
from assets.common.settings import PipelineSettings
from assets.model_quality.verified_samples import DAILY_FRESHNESS
from contract.vocabulary import CONDITIONS
from quality.charts import drift_chart, markdown_image
from quality.drift import DriftTest, mmd_permutation_test
from quality.metrics import classification_report
from realtime.storage.model_registry import ModelRegistry, RegistryError

OWNERS = ["team:ml-quality"]
MIN_EMBEDDINGS = 10
"""Below this many embeddings per side the two-sample test says nothing useful."""

ACCURACY_CHECK = dg.AssetCheckSpec(
    "accuracy_above_threshold",
    asset="drift_evaluation",
    description="Verified accuracy ≥ WV_DRIFT_ACCURACY_THRESHOLD (warns; the retraining sensor acts on it).",
)


class DriftEvaluationConfig(dg.Config):
    permutations: int = 200
    """Permutations of the MMD test (p-value resolution 1/(n+1))."""
    alpha: float = 0.01
    """Significance level at which the embeddings count as drifted."""


_UPSERT = """
INSERT INTO drift_evaluations (facility_id, eval_date, model_version, samples, verified, accuracy, macro_f1,
    expected_calibration_error, drift_statistic, drift_p_value, drift_method, per_class, confusion,
    confidence_histogram, chart_path, evaluated_at)
VALUES (%(facility)s, %(day)s, %(model)s, %(samples)s, %(verified)s, %(accuracy)s, %(macro_f1)s, %(ece)s,
    %(statistic)s, %(p_value)s, %(method)s, %(per_class)s, %(confusion)s, %(histogram)s, %(chart)s, now())
ON CONFLICT (facility_id, eval_date) DO UPDATE SET model_version = EXCLUDED.model_version,
    samples = EXCLUDED.samples, verified = EXCLUDED.verified, accuracy = EXCLUDED.accuracy,
    macro_f1 = EXCLUDED.macro_f1, expected_calibration_error = EXCLUDED.expected_calibration_error,
    drift_statistic = EXCLUDED.drift_statistic, drift_p_value = EXCLUDED.drift_p_value,
    drift_method = EXCLUDED.drift_method, per_class = EXCLUDED.per_class, confusion = EXCLUDED.confusion,
    confidence_histogram = EXCLUDED.confidence_histogram, chart_path = EXCLUDED.chart_path,
    evaluated_at = now()
"""


def model_directory(registry: ModelRegistry, version: str) -> Path | None:
    """The directory of ``version``: from the registry, else ``<models_dir>/<version>``; None if absent."""
    try:
        path = registry.resolve(registry.get(version))
    except RegistryError:
        path = registry.models_dir / version
    return path if (path / "config.json").exists() else None


def embedding_drift(
    registry: ModelRegistry, version: str, embeddings: list[np.ndarray], permutations: int, cache_dir: Path
) -> tuple[DriftTest | None, str]:
    """The MMD test against the version's training reference, or None and the reason it was skipped."""
    if len(embeddings) < MIN_EMBEDDINGS:
        return None, f"only {len(embeddings)} sampled decisions carry an embedding (need {MIN_EMBEDDINGS})"
    path = model_directory(registry, version)
    if path is None:
        return None, f"model {version!r} has no directory in {registry.models_dir}; no training reference"
    reference = reference_embeddings(path, cache_dir)
    current = np.stack(embeddings)
    if reference.shape[1] != current.shape[1]:
        return None, f"embedding sizes differ: reference {reference.shape[1]}, events {current.shape[1]}"
    return mmd_permutation_test(reference, current, permutations=permutations), "ok"


@dg.asset(
    partitions_def=daily_facility_partitions,
    deps=["verified_samples"],
    group_name="model_quality",
    owners=OWNERS,
    kinds={"postgres", "scikitlearn"},
    tags={"domain": "model_quality"},
    freshness_policy=DAILY_FRESHNESS,
    check_specs=[ACCURACY_CHECK],
    description=(
        "Model quality on the facility-day's verified samples: accuracy, per-class P/R/F1, confusion matrix, "
        "expected calibration error, confidence histogram, and embedding drift (MMD permutation test) "
        "against the model's training reference. Writes `drift_evaluations`; accuracy below "
        "WV_DRIFT_ACCURACY_THRESHOLD makes the drift sensor launch retraining."
    ),
)
def drift_evaluation(
    context: dg.AssetExecutionContext,
    config: DriftEvaluationConfig,
    database: DatabaseResource,
    model_registry: ModelRegistryResource,
    settings: dg.ResourceParam[PipelineSettings],
) -> dg.MaterializeResult:
    facility, day = facility_day(context)
    with database.connect() as conn:
        rows = conn.execute(
            "SELECT predicted_condition, verified_condition, predicted_confidence, embedding, model_version "
            "FROM verified_samples WHERE facility_id = %s AND sample_date = %s ORDER BY event_id",
            (facility, day),
        ).fetchall()
    verified = [r for r in rows if r[1] is not None]
    report = classification_report(
        [r[1] for r in verified], [r[0] for r in verified], [r[2] for r in verified]
    )
    versions = Counter(r[4] for r in rows)
    model = versions.most_common(1)[0][0] if versions else ""
    embeddings = [np.asarray(r[3], dtype=np.float32) for r in rows if r[3] and r[4] == model]
    drift, drift_note = (
        embedding_drift(
            model_registry.registry(),
            model,
            embeddings,
            config.permutations,
            settings.state_dir / "reference",
        )
        if model
        else (None, "no samples")
    )
    accuracy = report.accuracy if verified else None
    threshold = settings.drift_accuracy_threshold
    title = (
        f"{facility} {day}: accuracy {accuracy:.3f}"
        if accuracy is not None
        else f"{facility} {day}: no verified"
    ) + (f", drift p={drift.p_value:.3f}" if drift else "")
    png = drift_chart(title, report.histogram, report.confusion, CONDITIONS)
    chart_path = settings.state_dir / "reports" / "drift" / facility / f"{day.isoformat()}.png"
    chart_path.parent.mkdir(parents=True, exist_ok=True)
    chart_path.write_bytes(png)
    per_class = {k: vars(v) for k, v in report.per_class.items()}
    with database.connect() as conn:
        conn.execute(
            _UPSERT,
            {
                "facility": facility,
                "day": day,
                "model": model,
                "samples": len(rows),
                "verified": len(verified),
                "accuracy": accuracy,
                "macro_f1": report.macro_f1 if verified else None,
                "ece": report.expected_calibration_error if verified else None,
                "statistic": drift.statistic if drift else None,
                "p_value": drift.p_value if drift else None,
                "method": drift.method if drift else "",
                "per_class": Jsonb(per_class),
                "confusion": Jsonb({"labels": list(CONDITIONS), "matrix": report.confusion}),
                "histogram": Jsonb(report.histogram),
                "chart": str(chart_path),
            },
        )
    metadata: dict[str, Any] = {
        "facility": facility,
        "date": day.isoformat(),
        "model_version": model,
        "samples": len(rows),
        "verified": len(verified),
        "accuracy": dg.MetadataValue.float(accuracy) if accuracy is not None else dg.MetadataValue.null(),
        "threshold": dg.MetadataValue.float(threshold),
        "macro_f1": dg.MetadataValue.float(round(report.macro_f1, 4)),
        "expected_calibration_error": dg.MetadataValue.float(round(report.expected_calibration_error, 4)),
        "per_class": dg.MetadataValue.md(_per_class_table(per_class)),
        "confusion": dg.MetadataValue.json({"labels": list(CONDITIONS), "matrix": report.confusion}),
        "confidence_histogram": dg.MetadataValue.json(report.histogram),
        "embedding_drift_p_value": dg.MetadataValue.float(drift.p_value)
        if drift
        else dg.MetadataValue.null(),
        "embedding_drift_statistic": dg.MetadataValue.float(drift.statistic)
        if drift
        else dg.MetadataValue.null(),
        "embedding_drifted": bool(drift and drift.drifted(config.alpha)),
        "embedding_drift_note": drift_note,
        "chart": dg.MetadataValue.md(markdown_image(png, f"drift {facility} {day}")),
        "chart_path": dg.MetadataValue.path(str(chart_path.resolve())),
    }
    passed = accuracy is None or accuracy >= threshold
    check = dg.AssetCheckResult(
        check_name=ACCURACY_CHECK.name,
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"accuracy": -1.0 if accuracy is None else round(accuracy, 4), "threshold": threshold},
    )
    context.log.info("%s %s: %s", facility, day, title)
    return dg.MaterializeResult(metadata=metadata, check_results=[check])


def _per_class_table(per_class: dict[str, dict[str, float]]) -> str:
    lines = ["| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for name, m in per_class.items():
        lines.append(
            f"| {name} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} |"
        )
    return "\n".join(lines)
