"""Settings of the Dagster assets: the services they read and the thresholds of the model-quality loop.

Loaded once when the code location starts (``orchestration.definitions``) and handed to every
asset as the ``settings`` resource.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import Field

from foundation.settings import (
    DatabaseSettings,
    FacilitySettings,
    HardExampleSettings,
    KafkaSettings,
    RedisSettings,
    StateSettings,
)


class PipelineSettings(
    StateSettings, DatabaseSettings, KafkaSettings, RedisSettings, FacilitySettings, HardExampleSettings
):
    """Everything the assets read from the environment (``WV_…``)."""

    drift_accuracy_threshold: float = Field(
        0.94, gt=0, lt=1, description="Accuracy below which retraining starts."
    )
    verified_sample_rate: float = Field(
        0.01, gt=0, le=1, description="Share of decisions sampled for verification."
    )
    label_studio_url: str = Field(
        "",
        description=(
            "Label Studio server with its API token, `http://:TOKEN@host:port`; hard examples go there as "
            "a project and its annotations come back. Empty: task files only. `wv services up` sets it "
            "when WV_SERVICES_LABELING is on."
        ),
    )
    wandb_mode: Literal["offline", "online", "disabled"] = Field(
        "offline", description="Weights & Biases mode."
    )
    partitions_start: date = Field(
        date(2025, 1, 1), description="First day of the Dagster daily/weekly partitions."
    )
    retrain_steps: int = Field(
        300,
        gt=0,
        description="Fine-tuning steps of a drift-triggered retraining run on a CPU (a GPU run trains the whole "
        "backbone for candidate_model's gpu_steps).",
    )
    retrain_every_days: int = Field(
        2,
        ge=0,
        description=(
            "While a facility stays below the threshold, retrain again once this many more days are "
            "evaluated, on all its labels since the drop (0: once per drop)."
        ),
    )
    analytics_throughput_tolerance: float = Field(
        0.5, gt=0, description="Asset check: packages seen may differ from expected by this share."
    )
