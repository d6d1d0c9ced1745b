"""The retraining recipe follows the device the run resolves to: the last blocks and 400 labeled
packages on two CPU cores the night after a drop, the whole backbone and every label on a GPU and
after a labeling campaign (it recovers more of a hard drift from more labels, docs/benchmarks.md)."""

import torch

from assets.retraining.assets import CandidateModelConfig, RetrainingDatasetConfig


def test_the_whole_backbone_trains_on_a_gpu_and_only_the_last_blocks_on_a_cpu() -> None:
    cpu = CandidateModelConfig(device="cpu").finetune_options()
    gpu = CandidateModelConfig(device="cuda").finetune_options()
    assert (cpu.device, cpu.frozen_blocks, cpu.steps, cpu.lr) == ("cpu", 10, 300, 2e-3)
    assert (gpu.device, gpu.frozen_blocks, gpu.steps, gpu.lr, gpu.warmup_steps) == (
        "cuda",
        0,
        1500,
        5e-4,
        150,
    )
    assert CandidateModelConfig().finetune_options() == (gpu if torch.cuda.is_available() else cpu)


def test_the_drift_sensors_step_count_sizes_the_cpu_recipe_only() -> None:
    assert CandidateModelConfig(device="cpu", steps=60).finetune_options().steps == 60
    assert CandidateModelConfig(device="cuda", steps=60).finetune_options().steps == 1500


def test_the_label_budget_is_400_packages_on_a_cpu_and_every_label_on_a_gpu_or_after_a_campaign() -> None:
    assert (RetrainingDatasetConfig().budget(gpu=False), RetrainingDatasetConfig().budget(gpu=True)) == (
        400,
        0,
    )
    assert RetrainingDatasetConfig(campaign=True).budget(gpu=False) == 0
    assert RetrainingDatasetConfig().budget() == (0 if torch.cuda.is_available() else 400)
    assert RetrainingDatasetConfig(label_budget=5).budget(gpu=True) == 5


def test_wv_retrain_device_picks_the_recipe_and_the_labels_a_campaign_collects_for_it() -> None:
    from orchestration.settings import OrchestrationSettings

    cpu, gpu = (
        OrchestrationSettings.load(retrain_device="cpu"),
        OrchestrationSettings.load(retrain_device="cuda"),
    )
    assert CandidateModelConfig().finetune_options(cpu.retrain_device).frozen_blocks == 10
    assert CandidateModelConfig().finetune_options(gpu.retrain_device).frozen_blocks == 0
    assert (
        CandidateModelConfig(device="cpu").finetune_options(gpu.retrain_device).device == "cpu"
    )  # run config wins
    assert (cpu.labels_wanted(), gpu.labels_wanted()) == (800, 1400)  # what the campaign's recipe wants
    assert gpu.campaign_policy().labels_wanted == 1400
    assert OrchestrationSettings.load(retrain_device="cuda", campaign_labels=900).labels_wanted() == 900


def test_a_campaign_s_retraining_trains_the_whole_backbone_on_a_cpu_with_every_label() -> None:
    from orchestration.sensors import campaign_finetune
    from orchestration.settings import OrchestrationSettings

    settings = OrchestrationSettings.load(retrain_device="cpu")
    opts = CandidateModelConfig(device="cpu", **campaign_finetune(settings)).finetune_options()
    assert (opts.frozen_blocks, opts.steps, opts.lr) == (0, 300, 5e-4)
    assert settings.retrain_recipe(campaign=True).label_budget == 0
