"""Jobs: named asset selections that schedules, sensors and people launch.

Every domain appends its jobs to ``JOBS`` (one list, so the code location sees them all).
Kubernetes resources per job travel as ``dagster-k8s/config`` tags (used by the K8sRunLauncher in
``deploy/``; ignored by the local launcher).
"""

from typing import Any

import dagster as dg

from assets.common.partitions import daily_facility_partitions
from assets.model_quality.hard_examples import hard_example_weeks

RETRAINING_K8S = {
    "container_config": {
        "resources": {
            "requests": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"},
            "limits": {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "1"},
        }
    },
    "pod_spec_config": {
        "node_selector": {"warehouse-vision/pool": "gpu"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    },
}
"""One GPU for fine-tuning and export; the GPU node pool is tainted so nothing else lands there."""

LIGHT_K8S = {
    "container_config": {
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}}
    }
}

nightly_model_quality_job = dg.define_asset_job(
    "nightly_model_quality",
    selection=dg.AssetSelection.assets("verified_samples", "drift_evaluation", "labeling_campaign"),
    partitions_def=daily_facility_partitions,
    description=(
        "Yesterday's verified samples, drift evaluation and (below the threshold) labeling campaign, one run "
        "per facility."
    ),
    tags={"wv/job": "nightly_model_quality", "dagster-k8s/config": LIGHT_K8S},
)

weekly_hard_examples_job = dg.define_asset_job(
    "weekly_hard_examples",
    selection=dg.AssetSelection.assets("hard_example_export", "hard_example_labels", "retraining_dataset"),
    partitions_def=hard_example_weeks,
    description=(
        "Last week's hard-example export for labeling, the labels that came back, and a fresh retraining dataset."
    ),
    tags={"wv/job": "weekly_hard_examples", "dagster-k8s/config": LIGHT_K8S},
)

hard_example_labels_job = dg.define_asset_job(
    "pull_hard_example_labels",
    selection=dg.AssetSelection.assets("hard_example_labels"),
    partitions_def=hard_example_weeks,
    description="A week's hard-example labels again, as annotators work (launched by a sensor on Label Studio).",
    tags={"wv/job": "pull_hard_example_labels", "dagster-k8s/config": LIGHT_K8S},
)

retraining_job = dg.define_asset_job(
    "retraining",
    selection=dg.AssetSelection.assets("retraining_dataset", "candidate_model", "candidate_evaluation"),
    description="Dataset, fine-tuned candidate and its blocking evaluation; launched by the drift sensor.",
    tags={"wv/job": "retraining", "dagster-k8s/config": RETRAINING_K8S},
)

backbone_adaptation_job = dg.define_asset_job(
    "adapt_backbone",
    selection=dg.AssetSelection.assets("backbone_adaptation"),
    description="Self-supervised adaptation of production's backbone to the unlabeled frames (on the GPU node).",
    tags={"wv/job": "adapt_backbone", "dagster-k8s/config": RETRAINING_K8S},
)

detections_quality_job = dg.define_asset_job(
    "detections_quality",
    selection=dg.AssetSelection.checks_for_assets("package_detections"),
    description="Great Expectations suite on the newest day of package_detections.",
    tags={"wv/job": "detections_quality", "dagster-k8s/config": LIGHT_K8S},
)

JOBS: list[Any] = [
    nightly_model_quality_job,
    weekly_hard_examples_job,
    hard_example_labels_job,
    retraining_job,
    backbone_adaptation_job,
    detections_quality_job,
]
