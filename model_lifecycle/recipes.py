"""The fine-tunes ``candidate_model`` runs and the verified packages each one wants.

One place for the Dagster assets' defaults (``CandidateModelConfig``, ``retraining_dataset``'s label
budget, the labeling campaign's need) and for the benchmarks that measure them, which also run
where neither Dagster nor the database client is installed (the lent GPU machine).

Three recipes: the night after a drop, on two CPU cores, a quick one (the last blocks, ≈ 2 min);
on a GPU the whole backbone; and when a labeling campaign has collected a hard drift's labels, the
whole backbone on the CPU too — it runs once, after days of labeling, so ten minutes are affordable,
and only moving every block recovers ``six_weeks_later`` (docs/benchmarks.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported only when a fine-tune is built: the code location loads without it
    from model_lifecycle.finetune import FinetuneOptions


@dataclass(frozen=True)
class Recipe:
    name: str
    frozen_blocks: int
    """Backbone blocks kept as they are in production (run once per frame and cached)."""
    steps: int
    lr: float
    label_budget: int
    """Labeled packages it trains on at most, the model's mistakes first (0: all of them)."""
    labels_wanted: int
    """Labeled packages of a drifted facility it needs: what a labeling campaign collects."""


CPU_RECIPE = Recipe("cpu", frozen_blocks=10, steps=300, lr=2e-3, label_budget=400, labels_wanted=400)
"""Two CPU cores the night after a drop: the last two blocks and the heads on cached features, at most
400 packages (what fits the nightly window: ``camera_bump`` recovers, ``six_weeks_later`` stops at
86.6 % from 400 and needs a campaign, docs/benchmarks.md)."""
GPU_RECIPE = Recipe("gpu", frozen_blocks=0, steps=1500, lr=5e-4, label_budget=0, labels_wanted=1400)
"""One GPU: the whole backbone at a lower rate, on every label; ``six_weeks_later`` passes 94 % from
≈ 1,400 verified drifted packages (95.7 %, ``bench.label_ceiling``)."""
REPLAY_FRAMES = 128
"""Frames of the original synthetic training data mixed in, so nothing already learnt is forgotten."""
REPLAY_SEED = 1
"""Seed of those frames (``model_lifecycle.sources.training_frames``)."""


CPU_CAMPAIGN_RECIPE = Recipe(
    "cpu-campaign", frozen_blocks=0, steps=300, lr=5e-4, label_budget=0, labels_wanted=800
)
"""Two CPU cores, once a labeling campaign is in: the whole backbone, a fifth of the GPU recipe's
steps at its rate (≈ 8 min at 1.6 s a step), on every label. On ``six_weeks_later`` 600 and 800
campaign labels gave 95.2 and 95.1 % with the frozen test set 0.2 points below the shipped model's
(``bench.label_efficiency --strategies campaign``, H100); at lr 1e-3 it forgot 0.5–0.8 points, which the
retraining gate refuses."""


def recipe_for(gpu: bool, campaign: bool = False) -> Recipe:
    """The fine-tune on a GPU or two CPU cores, after a drop or (``campaign``) after a labeling campaign."""
    if gpu:
        return GPU_RECIPE
    return CPU_CAMPAIGN_RECIPE if campaign else CPU_RECIPE


def finetune_options(
    frozen_blocks: int,
    steps: int,
    lr: float,
    device: str,
    *,
    batch_size: int = 32,
    distill_weight: float = 1.0,
    damaged_weight: float = 3.0,
    mirror: bool = True,
    seed: int = 0,
) -> FinetuneOptions:
    """``FinetuneOptions`` of a recipe (warm-up a tenth of the steps, a loss row every twentieth)."""
    from model_lifecycle.finetune import FinetuneOptions

    return FinetuneOptions(
        frozen_blocks=frozen_blocks,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        warmup_steps=max(1, steps // 10),
        distill_weight=distill_weight,
        damaged_weight=damaged_weight,
        mirror=mirror,
        device=device,
        seed=seed,
        log_every=max(1, steps // 20),
    )


def uses_gpu(device: str) -> bool:
    """Whether a run on ``device`` (cpu, cuda or auto: cuda when torch sees one) trains on a GPU."""
    if device not in ("cpu", "cuda", "auto"):
        raise ValueError(f"device must be cpu, cuda or auto, got {device!r}")
    if device == "auto":
        import torch

        return torch.cuda.is_available()
    return device == "cuda"
