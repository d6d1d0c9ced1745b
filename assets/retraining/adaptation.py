"""``backbone_adaptation``: production's backbone adapted (DINO) to the facilities' unlabeled frames.

It reads the ``unlabeled_frames`` manifests of the last ``lookback_days``, adapts production's
backbone with ``model_lifecycle.ssl`` (production's heads kept), writes the result to
``<models_dir>/adapted/<name>/`` and, when its blocking check passes (the adapted model scores no
worse than production on the frozen test set, within the promotion gate's tolerance), points
``<models_dir>/adapted/latest.json`` at it. ``candidate_model`` starts from that backbone only when
asked (``adapted_backbone: true``): on the drift presets measured (``bench.label_efficiency``,
docs/benchmarks.md) adaptation did not raise accuracy, so the loop's default stays the plain
fine-tune and this asset is in no job the sensors launch. It runs on a GPU when one is there
(job ``adapt_backbone``, GPU node tags); on a CPU it shrinks to ``cpu_steps`` small steps.
"""

import json
import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg

from assets.common.resources import ModelRegistryResource
from assets.common.settings import PipelineSettings
from quality.gate import GatePolicy

OWNERS = ["team:ml-platform"]
POINTER = "latest.json"

ADAPTATION_GATE = dg.AssetCheckSpec(
    "adapted_backbone_keeps_frozen_accuracy",
    asset="backbone_adaptation",
    blocking=True,
    description=(
        "Blocking: production's heads on the adapted backbone lose no more than the gate's frozen tolerance of "
        "condition accuracy on the frozen test set; a failing adaptation is never pointed at."
    ),
)


class BackboneAdaptationConfig(dg.Config):
    lookback_days: int = 7
    """Unlabeled frames of this many days up to the newest collected day."""
    facilities: str = ""
    """Only these facilities' frames, comma-separated (empty: all)."""
    max_frames: int = 2000
    replay_frames: int = 128
    steps: int = 600
    batch_size: int = 64
    lr: float = 1e-4
    device: str = "auto"
    """cpu, cuda or auto (cuda when available)."""
    cpu_steps: int = 20
    """On a CPU the run shrinks to this many steps of `cpu_batch_size` frames."""
    cpu_batch_size: int = 8
    test_frames: int = 200
    """Frames of the frozen held-out test set the check compares on."""
    frozen_tolerance: float = GatePolicy.frozen_tolerance
    seed: int = 0


def recent_frames(state_dir: Path, config: BackboneAdaptationConfig) -> list[Path]:
    """Frame files listed by the newest ``lookback_days`` of ``unlabeled_frames`` manifests."""
    manifests = sorted((state_dir / "datasets" / "unlabeled").glob("*/*.json"))
    if wanted := {f.strip() for f in config.facilities.split(",") if f.strip()}:
        manifests = [m for m in manifests if m.parent.name in wanted]
    if not manifests:
        return []
    newest = max(date.fromisoformat(m.stem) for m in manifests)
    since = newest - timedelta(days=config.lookback_days - 1)
    files: list[Path] = []
    for m in manifests:
        if date.fromisoformat(m.stem) >= since:
            data = json.loads(m.read_text(encoding="utf-8"))
            root = Path(data["root"])
            files += [root / f for per_camera in data["frames"].values() for f in per_camera]
    return [f for f in files if f.exists()]  # retention may have removed some since


def adapted_start(models_dir: Path, production: str) -> Path:
    """The adapted model ``candidate_model`` may start from: the newest that passed, made from production."""
    pointer = models_dir / "adapted" / POINTER
    if not pointer.exists():
        raise dg.Failure(f"no adapted backbone: materialize backbone_adaptation first ({pointer} is missing)")
    data = json.loads(pointer.read_text(encoding="utf-8"))
    if data["parent"] != production:
        raise dg.Failure(
            f"the adapted backbone {data['path']} was made from {data['parent']}, production is {production}; "
            "materialize backbone_adaptation again"
        )
    return Path(data["path"])


@dg.asset(
    deps=["unlabeled_frames"],
    group_name="retraining",
    owners=OWNERS,
    kinds={"pytorch"},
    tags={"domain": "retraining", "compute": "gpu"},
    op_tags={"wv/job": "adapt_backbone"},
    check_specs=[ADAPTATION_GATE],
    description=(
        "Production's backbone adapted by self-supervised DINO training to the facilities' recent unlabeled "
        "frames (replay-anchored, production's heads kept), written under <models_dir>/adapted; its blocking "
        "check compares it with production on the frozen test set. candidate_model starts from it only with "
        "adapted_backbone: true."
    ),
)
def backbone_adaptation(
    context: dg.AssetExecutionContext,
    config: BackboneAdaptationConfig,
    model_registry: ModelRegistryResource,
    settings: dg.ResourceParam[PipelineSettings],
) -> dg.MaterializeResult:
    import torch

    from edge.backends import EngineSpec
    from edge.backends.torch import TorchEngine
    from edge.model.version import load_detector, read_version, save_version
    from model_lifecycle.data import frame_to_sample
    from model_lifecycle.evaluate import evaluate
    from model_lifecycle.sources import heldout_frames, training_frames
    from model_lifecycle.ssl.adapt import AdaptOptions, adapt
    from model_lifecycle.ssl.frames import read_frames, spread

    registry = model_registry.registry()
    production = registry.production()
    if production is None:
        raise dg.Failure(
            "no production model: register one and approve it (`wv model approve VERSION --by NAME`)"
        )
    parent_dir = registry.resolve(production)
    version = read_version(parent_dir)
    files = spread(recent_frames(settings.state_dir, config), config.max_frames)
    if not files:
        raise dg.Failure(
            "no unlabeled frames: turn on WV_FRAME_SAMPLING at the edges and materialize unlabeled_frames"
        )
    unlabeled = read_frames(files, version.input_size)
    replay_fn = training_frames(1)
    replay = [frame_to_sample(replay_fn(i), version.input_size).image for i in range(config.replay_frames)]
    device = (
        "cuda"
        if config.device == "auto" and torch.cuda.is_available()
        else config.device.replace("auto", "cpu")
    )
    small = device == "cpu"
    steps = min(config.steps, config.cpu_steps) if small else config.steps
    opts = AdaptOptions(
        steps=steps,
        batch_size=min(config.batch_size, config.cpu_batch_size) if small else config.batch_size,
        head_warmup_steps=min(AdaptOptions().head_warmup_steps, steps // 4),
        lr=config.lr,
        device=device,
        threads=2 if small else None,
        seed=config.seed,
        log_every=max(1, steps // 10),
    )
    parent = load_detector(parent_dir)
    result = adapt(parent, unlabeled, replay, opts, on_log=lambda row: context.log.info("adapt %s", row))

    frozen = heldout_frames(config.test_frames)

    def accuracy(model: Any) -> float:
        engine = TorchEngine.for_module(model, EngineSpec("torch", "fp32", device))
        return evaluate(engine, frozen, version.score_threshold).condition_accuracy

    before, after = accuracy(parent), accuracy(result.model)
    passed = after >= before - config.frozen_tolerance
    name = f"adapted-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    out_dir = registry.models_dir / "adapted" / name
    training = {"adapted_from": production.version, "unlabeled_frames": len(unlabeled), "steps": result.steps,
                "device": device, "timings": result.timings, "frozen_accuracy": {"production": before, "adapted": after}}  # fmt: skip
    save_version(result.model, out_dir, training=training)
    if passed:
        pointer = registry.models_dir / "adapted" / POINTER
        tmp = pointer.with_name(f".{POINTER}.tmp")
        tmp.write_text(
            json.dumps({"path": str(out_dir.resolve()), "parent": production.version}), encoding="utf-8"
        )
        os.replace(tmp, pointer)
    summary = f"frozen test set {before:.2%} → {after:.2%} (tolerance {config.frozen_tolerance:.2%})"
    context.log.info(
        "adapted %s on %d frames in %d steps: %s", production.version, len(unlabeled), result.steps, summary
    )
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(out_dir.resolve())),
            "adapted_from": production.version,
            "unlabeled_frames": len(unlabeled),
            "steps": result.steps,
            "device": device,
            "final_loss": float(result.final_loss or 0.0),
            "adapt_seconds": round(result.timings["adapt_s"], 1),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=ADAPTATION_GATE.name,
                passed=passed,
                severity=dg.AssetCheckSeverity.ERROR,
                metadata={"production": before, "adapted": after, "summary": summary},
            )
        ],
    )
