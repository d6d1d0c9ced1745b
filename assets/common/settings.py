"""Settings of the Dagster assets: the services they read and the thresholds of the model-quality loop.

Loaded once when the code location starts (``orchestration.definitions``) and handed to every
asset as the ``settings`` resource.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from foundation.settings import (
    DatabaseSettings,
    FacilitySettings,
    HardExampleSettings,
    KafkaSettings,
    RedisSettings,
    StateSettings,
)
from model_lifecycle.recipes import Recipe, recipe_for, uses_gpu

if TYPE_CHECKING:
    from quality.campaign import CampaignPolicy


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
        description="Fine-tuning steps of a retraining run on a CPU, after a drop or a labeling campaign (a GPU "
        "run trains the whole backbone for candidate_model's gpu_steps).",
    )
    retrain_every_days: int = Field(
        2,
        ge=0,
        description=(
            "While a facility stays below the threshold, retrain again once this many more days are "
            "evaluated, on all its labels since the drop (0: once per drop)."
        ),
    )
    retrain_device: Literal["auto", "cpu", "cuda"] = Field(
        "auto",
        description=(
            "Where candidate_model fine-tunes, which decides its recipe and the labels a drift campaign "
            "collects for it: cuda (the retraining job's GPU node; set it where Dagster runs on Kubernetes), "
            "cpu, or auto (cuda when the process sees a GPU)."
        ),
    )
    campaign_rate: float = Field(
        0.02,
        ge=0,
        le=1,
        description=(
            "Drift-triggered labeling campaign: while a facility is below the threshold, this share of each "
            "day's package tracks (the model's least sure decisions first) goes to labeling on top of the "
            "regular sample (0: no campaigns)."
        ),
    )
    campaign_daily_quota: int = Field(
        2000,
        ge=0,
        description="At most this many campaign tasks per facility and day (the labelers' capacity).",
    )
    campaign_max_days: int = Field(
        14, ge=1, description="A campaign ends after this many days even without the labels it wants."
    )
    campaign_labels: int | None = Field(
        None,
        ge=1,
        description=(
            "Labeled packages since the drop a campaign collects before it ends and retraining runs on them; "
            "unset: what the campaign's recipe wants (800 on a CPU, 1,400 on a GPU; six_weeks_later passed "
            "94 % with both)."
        ),
    )
    analytics_throughput_tolerance: float = Field(
        0.5, gt=0, description="Asset check: packages seen may differ from expected by this share."
    )

    def retrain_recipe(self, campaign: bool = False) -> Recipe:
        """The fine-tune ``candidate_model`` runs where WV_RETRAIN_DEVICE says, after a drop or a campaign."""
        return recipe_for(uses_gpu(self.retrain_device), campaign)

    def labels_wanted(self) -> int:
        """Labeled packages since a drop that a hard drift's retraining wants: WV_CAMPAIGN_LABELS, else
        what the campaign's recipe wants."""
        return self.campaign_labels or self.retrain_recipe(campaign=True).labels_wanted

    def campaign_policy(self) -> CampaignPolicy:
        """The labeling campaign's settings, wanting the labels of the recipe that will run."""
        from quality.campaign import CampaignPolicy

        return CampaignPolicy(
            self.campaign_rate, self.campaign_daily_quota, self.campaign_max_days, self.labels_wanted()
        )
