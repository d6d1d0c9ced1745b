"""Gated retraining: ``retraining_dataset`` → ``candidate_model`` → ``candidate_evaluation``.

The dataset is a manifest of *reproducible frame references*, not pixels: labeled hard examples
and verified samples from synthetic cameras, and every other frame in which the camera tracked
the same package (re-rendered by the simulator, with the verified label overriding the
simulator's condition for that package), plus a replay slice of the original synthetic training
data. A drifted facility contributes the labels of every day since its drop, and at most
``label_budget`` labeled packages (400 on a CPU, all on a GPU) are trained on, the production
model's mistakes first: on ``bench.label_efficiency`` several drifted days and hard examples raised
accuracy where one day's labels and self-supervised adaptation did not. Events from real cameras are counted but cannot be
trained on here (the edge ships no pixels).

The candidate is fine-tuned from the production model, distilled from it as teacher, exported to
ONNX and INT8, and registered as ``candidate``. ``candidate_evaluation`` compares it with
production on the frozen test set and on the recent verified hold-out; its blocking check stops a
worse candidate before anyone can promote it.
"""

import json
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
from psycopg.rows import namedtuple_row
from pydantic import Field

from assets.common.resources import DatabaseResource, ModelRegistryResource, WandbResource
from assets.common.settings import PipelineSettings
from assets.model_quality.crops import SyntheticCamera, parse_synthetic_uri
from assets.model_quality.labeling import camera_sources
from assets.retraining.adaptation import adapted_start
from model_lifecycle.recipes import (
    CPU_RECIPE,
    GPU_RECIPE,
    REPLAY_FRAMES,
    REPLAY_SEED,
    finetune_options,
    recipe_for,
    uses_gpu,
)
from quality.gate import GatePolicy, decide
from quality.sampling import LabeledPackage, hard_first, sample_rank
from realtime.storage.model_registry import ModelRegistry, ModelVersion

if TYPE_CHECKING:
    from model_lifecycle.finetune import FinetuneOptions

OWNERS = ["team:ml-platform"]
RECENT_HOLDOUT_SHARE = 0.3
"""Share of verified samples kept out of training to judge candidates on what facilities see now."""
MATCH_IOU = 0.5


@dataclass(frozen=True)
class FrameRef:
    """One frame to re-render and the verified conditions of packages in it."""

    facility_id: str
    camera_id: str
    source_uri: str
    frame_index: int
    overrides: list[tuple[tuple[float, float, float, float], str]]


@dataclass(frozen=True)
class RetrainingDataset:
    manifest: str
    train: list[FrameRef]
    recent: list[FrameRef]
    replay_seed: int
    replay_indices: list[int]
    selection: dict[str, Any] = field(default_factory=dict)
    """Which labeled packages were trained on: budget, hard ones, per facility and day."""

    @property
    def train_frames(self) -> int:
        return len(self.train) + len(self.replay_indices)


def load_manifest(path: Path) -> RetrainingDataset:
    """A dataset manifest written by ``retraining_dataset`` (boxes back to tuples)."""
    data = json.loads(path.read_text(encoding="utf-8"))

    def refs(items: list[dict[str, Any]]) -> list[FrameRef]:
        return [
            FrameRef(**{**r, "overrides": [(tuple(box), condition) for box, condition in r["overrides"]]})
            for r in items
        ]

    return RetrainingDataset(
        manifest=str(path), train=refs(data["train"]), recent=refs(data["recent"]),
        replay_seed=data["replay_seed"], replay_indices=data["replay_indices"],
        selection=data.get("selection", {}),
    )  # fmt: skip


# --- frames ------------------------------------------------------------------------------------
def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def render_ref(ref: FrameRef) -> Any:
    """The frame with the simulator's truth, verified conditions replacing the matched packages'."""
    camera = parse_synthetic_uri(ref.camera_id, ref.source_uri)
    if camera is None:
        raise ValueError(f"{ref.camera_id}: {ref.source_uri!r} is not a synthetic camera")
    frame = camera.render(ref.frame_index)
    truth = []
    for item in frame.truth:
        box = (item.box.x1, item.box.y1, item.box.x2, item.box.y2)
        best = max(ref.overrides, key=lambda o: _iou(box, o[0]), default=None)
        if best is not None and _iou(box, best[0]) >= MATCH_IOU:
            item = replace(item, condition=best[1])
        truth.append(item)
    frame.truth = truth
    return frame


# --- retraining_dataset ------------------------------------------------------------------------
class RetrainingDatasetConfig(dg.Config):
    lookback_days: int = 28
    """Labeled events from this many days before the newest labeled event are used (facilities in
    ``drift_since`` excepted)."""
    drift_since: dict[str, str] = Field(default_factory=dict)
    """Facility → first day (ISO) it was below the accuracy threshold: its labels from that day on are
    used, however many days that is (the drift sensor fills it in)."""
    campaign: bool = False
    """A labeling campaign's retraining (``campaign_retraining_sensor``): the campaign's recipe, which
    trains the whole backbone on every label on a CPU too (``model_lifecycle.recipes``)."""
    label_budget: int | None = None
    """At most this many labeled packages (not held out) are trained on, the model's mistakes first
    (``quality.sampling.hard_first``); 0: all of them. None: the budget of the recipe
    ``candidate_model`` runs (``WV_RETRAIN_DEVICE``, ``campaign``): 400 the night after a drop on a CPU
    (its two-core fine-tune), all of them on a GPU and after a campaign, where the whole backbone
    trains — on ``six_weeks_later`` that gave 89.8 % from 400 packages and 95.7 % from ≈ 1,400
    (docs/benchmarks.md)."""
    replay_frames: int = REPLAY_FRAMES
    """Frames of the original synthetic training data mixed in, so nothing already learnt is forgotten."""
    replay_seed: int = REPLAY_SEED
    """Seed of the original training frames (``model_lifecycle.sources.training_frames``)."""
    track_seconds: float = 30.0
    """A labeled package's detections by the same camera this close in time become training frames too."""

    def budget(self, gpu: bool | None = None) -> int:
        """The label budget of the recipe on this run's device (``gpu`` None: whether torch sees a GPU)."""
        if self.label_budget is not None:
            return self.label_budget
        return recipe_for(uses_gpu("auto") if gpu is None else gpu, self.campaign).label_budget


_LABELED = """
WITH labeled AS (
    SELECT 'hard' AS origin, event_id, package_id, facility_id, camera_id, event_time, bbox, verified_condition,
        predicted_condition, predicted_confidence
    FROM hard_examples WHERE verified_condition IS NOT NULL
    UNION ALL
    SELECT 'verified', event_id, package_id, facility_id, camera_id, event_time, bbox, verified_condition,
        predicted_condition, predicted_confidence
    FROM verified_samples WHERE verified_condition IS NOT NULL AND bbox IS NOT NULL
), chosen AS (
    SELECT DISTINCT ON (event_id) * FROM labeled
    WHERE event_time >= coalesce(
        (%(since)s::jsonb ->> facility_id)::date::timestamp AT TIME ZONE 'UTC',
        (SELECT max(event_time) FROM labeled) - make_interval(days => %(days)s))
    ORDER BY event_id, origin
)
SELECT * FROM chosen
UNION ALL
SELECT DISTINCT ON (d.event_id) 'track', d.event_id, d.package_id, d.facility_id, d.camera_id, d.event_time,
    ARRAY[d.x1, d.y1, d.x2, d.y2], c.verified_condition, c.predicted_condition, c.predicted_confidence
FROM chosen c JOIN package_detections d
    ON d.package_id = c.package_id AND d.facility_id = c.facility_id AND d.camera_id = c.camera_id
    AND d.event_time BETWEEN c.event_time - make_interval(secs => %(track_s)s)
                         AND c.event_time + make_interval(secs => %(track_s)s)
WHERE d.event_id NOT IN (SELECT event_id FROM chosen)
"""
"""Labeled events (a drifted facility's since its drift began, the others' of the last days), plus
the package's other detections by the same camera around them ("track" rows): a labeler judges a
package once, and the label holds for every frame that shows it."""


def is_recent_holdout(package_id: str) -> bool:
    """Held out by package, so no view of a held-out package is trained on."""
    return sample_rank(package_id, "holdout") < RECENT_HOLDOUT_SHARE * 2**64


def labeled_packages(rows: list[Any]) -> dict[tuple[str, str], LabeledPackage]:
    """Each labeled (facility, package) of ``rows``, with what the budget ranks it by: whether the
    label contradicts the model's decision, came from the hard-example queue, and how sure the model was."""
    out: dict[tuple[str, str], LabeledPackage] = {}
    for r in sorted((r for r in rows if r.origin != "track"), key=lambda r: r.event_time):
        key = (r.facility_id, r.package_id)
        seen = out.get(key)
        confidence = float(r.predicted_confidence) if r.predicted_confidence is not None else 1.0
        out[key] = LabeledPackage(
            key=f"{r.facility_id}/{r.package_id}",
            day=seen.day if seen else r.event_time.astimezone(UTC).date().isoformat(),
            wrong=(seen is not None and seen.wrong) or r.verified_condition != r.predicted_condition,
            hard_example=(seen is not None and seen.hard_example) or r.origin == "hard",
            confidence=min(confidence, seen.confidence) if seen else confidence,
        )
    return out


def budget_selection(
    rows: list[Any], budget: int, drift_since: Mapping[str, str]
) -> tuple[list[Any], dict[str, Any]]:
    """The rows of the ``budget`` labeled packages ranked first by ``hard_first``, and what was chosen
    (per facility and day, how many were hard) for the manifest."""
    packages = labeled_packages(rows)
    chosen = {p.key for p in hard_first(packages.values(), budget)}
    kept = {k: p for k, p in packages.items() if p.key in chosen}
    per_day: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for (facility, _), p in sorted(kept.items(), key=lambda kv: (kv[0][0], kv[1].day)):
        per_day[facility][p.day] += 1
    summary = {
        "label_budget": budget,
        "drift_since": dict(drift_since),
        "labeled_packages": len(packages),
        "trained_packages": len(kept),
        "hard_packages": sum(p.hard for p in kept.values()),
        "wrong_packages": sum(p.wrong for p in kept.values()),
        "packages_per_day": {f: dict(days) for f, days in per_day.items()},
    }
    return [r for r in rows if (r.facility_id, r.package_id) in kept], summary


def _since(drift_since: Mapping[str, str]) -> str:
    """``drift_since`` as JSON for the query, each day checked."""
    for facility, day in drift_since.items():
        try:
            date.fromisoformat(day)
        except ValueError:
            raise dg.Failure(
                f"retraining_dataset.drift_since[{facility!r}] = {day!r}: not an ISO date (YYYY-MM-DD)"
            ) from None
    return json.dumps(dict(drift_since))


def group_frames(
    rows: list[Any],
    cameras: dict[tuple[str, str], SyntheticCamera],
    uris: dict[tuple[str, str], str],
) -> list[FrameRef]:
    frames: dict[tuple[str, str, int], list[tuple[tuple[float, float, float, float], str]]] = defaultdict(
        list
    )
    for r in rows:
        camera = cameras[(r.facility_id, r.camera_id)]
        key = (r.facility_id, r.camera_id, camera.frame_index(r.event_time))
        frames[key].append((tuple(r.bbox), r.verified_condition))
    return [
        FrameRef(facility, camera, uris[(facility, camera)], index, overrides)
        for (facility, camera, index), overrides in sorted(frames.items())
    ]


LABELS_CHECK = dg.AssetCheckSpec(
    "labels_for_recipe",
    asset="retraining_dataset",
    description=(
        "Warns when the drifted facilities' trained packages fall short of what a hard drift's retraining "
        "wants (800 on a CPU, 1,400 on a GPU, or WV_CAMPAIGN_LABELS): the candidate may not recover a hard "
        "drift; the labeling campaign's end launches a retraining that has them."
    ),
)


def labels_check(selection: Mapping[str, Any]) -> dg.AssetCheckResult:
    """Whether a drift retraining had the labels its recipe wants (no drifted facility: nothing to want)."""
    had, wanted = selection["drifted_packages"], selection["labels_wanted"]
    return dg.AssetCheckResult(
        check_name=LABELS_CHECK.name,
        passed=not selection["drift_since"] or had >= wanted,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"drifted_packages": had, "labels_wanted": wanted, "recipe": selection["recipe"]},
    )


@dg.asset(
    deps=["drift_evaluation", "hard_example_labels", "verified_samples", "labeling_campaign"],
    group_name="retraining",
    owners=OWNERS,
    kinds={"postgres", "python"},
    tags={"domain": "retraining"},
    check_specs=[LABELS_CHECK],
    description=(
        "Manifest of reproducible training frames: labeled hard examples, campaign labels and verified samples (a drifted "
        "facility's since its drop, the others' of the last days; at most `label_budget` packages, the model's "
        "mistakes first) and the other frames of each labeled package's track (re-rendered from synthetic "
        "cameras, verified labels overriding the simulator's) plus a replay slice of the original synthetic "
        "training data; the verified samples of 30 % of packages are held out as the recent verified set."
    ),
)
def retraining_dataset(
    context: dg.AssetExecutionContext,
    config: RetrainingDatasetConfig,
    database: DatabaseResource,
    settings: dg.ResourceParam[PipelineSettings],
) -> Iterator[dg.Output[RetrainingDataset] | dg.AssetCheckResult]:
    with database.connect() as conn:
        params = {
            "days": config.lookback_days,
            "track_s": config.track_seconds,
            "since": _since(config.drift_since),
        }
        rows: list[Any] = conn.cursor(row_factory=namedtuple_row).execute(_LABELED, params).fetchall()
        uris = {k: v for k, v in camera_sources(conn).items() if v}
    cameras = {k: c for k, uri in uris.items() if (c := parse_synthetic_uri(k[1], uri)) is not None}
    usable = [r for r in rows if (r.facility_id, r.camera_id) in cameras]

    def frame(r: Any) -> tuple[str, str, int]:
        return r.facility_id, r.camera_id, cameras[(r.facility_id, r.camera_id)].frame_index(r.event_time)

    held_out = [r for r in usable if is_recent_holdout(r.package_id)]
    recent_rows = [r for r in held_out if r.origin == "verified"]
    held_frames = {frame(r) for r in held_out}
    train_rows = [r for r in usable if not is_recent_holdout(r.package_id) and frame(r) not in held_frames]
    recipe = settings.retrain_recipe(config.campaign)
    budget = config.budget(recipe is GPU_RECIPE)
    train_rows, selection = budget_selection(train_rows, budget, config.drift_since)
    drifted = sum(
        sum(days.values()) for f, days in selection["packages_per_day"].items() if f in config.drift_since
    )
    selection.update(recipe=recipe.name, labels_wanted=settings.labels_wanted(), drifted_packages=drifted)
    dataset = RetrainingDataset(
        manifest="",
        train=group_frames(train_rows, cameras, uris),
        recent=group_frames(recent_rows, cameras, uris),
        replay_seed=config.replay_seed,
        replay_indices=list(range(config.replay_frames)),
        selection=selection,
    )
    folder = settings.state_dir / "datasets" / f"retraining-{datetime.now(UTC):%Y%m%dT%H%M%S}"
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / "manifest.json"
    manifest.write_text(json.dumps(asdict(dataset), indent=1, default=str), encoding="utf-8")
    dataset = replace(dataset, manifest=str(manifest.resolve()))
    per_facility: dict[str, int] = defaultdict(int)
    for r in train_rows:
        per_facility[r.facility_id] += 1
    yield dg.Output(
        dataset,
        metadata={
            "labeled_events": len(rows),
            "without_pixels": dg.MetadataValue.int(len(rows) - len(usable)),
            "train_events": len(train_rows),
            "train_track_events": sum(r.origin == "track" for r in train_rows),
            "train_camera_frames": len(dataset.train),
            "replay_frames": len(dataset.replay_indices),
            "recent_holdout_events": len(recent_rows),
            "recent_holdout_frames": len(dataset.recent),
            "train_events_per_facility": dg.MetadataValue.json(dict(per_facility)),
            "labeled_packages": selection["labeled_packages"],
            "trained_packages": selection["trained_packages"],
            "hard_packages": selection["hard_packages"],
            "wrong_packages": selection["wrong_packages"],
            "label_budget": selection["label_budget"],
            "packages_per_day": dg.MetadataValue.json(selection["packages_per_day"]),
            "recipe": recipe.name,
            "drifted_packages": drifted,
            "labels_wanted": selection["labels_wanted"],
            "manifest": dg.MetadataValue.path(str(manifest.resolve())),
        },
    )
    yield labels_check(selection)


# --- candidate_model ---------------------------------------------------------------------------
class CandidateModelConfig(dg.Config):
    steps: int = CPU_RECIPE.steps
    """Optimiser steps on the cached features of the frozen blocks (each costs about a sixth of a
    full step at ``frozen_blocks=10``)."""
    batch_size: int = 32
    lr: float = CPU_RECIPE.lr
    distill_weight: float = 1.0
    """Distillation from production, on the replay frames only: there production is right, so it keeps
    the frozen test set where it was; on the drifted frames production is what went wrong."""
    frozen_blocks: int = CPU_RECIPE.frozen_blocks
    """Backbone blocks kept as they are in production and run once per training frame."""
    damaged_weight: float = 3.0
    """Extra sampling weight of labeled frames showing damage (cameras see mostly intact packages)."""
    mirror: bool = True
    """Train on mirrored copies of the frames too."""
    device: str = ""
    """cpu, cuda or auto (cuda when the run has a GPU, as the retraining job's node does); empty:
    WV_RETRAIN_DEVICE. On a CPU the fine-tune above is sized for two cores; on a GPU the ``gpu_*``
    recipe replaces it."""
    gpu_frozen_blocks: int = GPU_RECIPE.frozen_blocks
    """On a GPU the whole backbone trains: on ``six_weeks_later`` that gave +1.6 to +5.5 points over
    the two-core recipe at every label count measured (``bench.label_efficiency``/``label_ceiling``)."""
    gpu_steps: int = GPU_RECIPE.steps
    gpu_lr: float = GPU_RECIPE.lr
    """A lower rate than the CPU recipe's: every block moves, not only the last two."""
    calibration_frames: int = 32
    reference_frames: int = 48
    """Training frames whose embeddings become the candidate's drift reference."""
    seed: int = 0
    adapted_backbone: bool = False
    """Start from ``backbone_adaptation``'s newest passing model instead of production's weights (off:
    it did not raise accuracy on the drift presets measured, docs/benchmarks.md)."""

    def finetune_options(self, default_device: str = "auto") -> "FinetuneOptions":
        """The fine-tune this config describes on the device it resolves to (``device``, else
        ``default_device``; the CPU recipe is what ``bench.drift_recovery`` measures)."""
        gpu = uses_gpu(self.device or default_device)
        frozen_blocks, steps, lr = (
            (self.gpu_frozen_blocks, self.gpu_steps, self.gpu_lr)
            if gpu
            else (self.frozen_blocks, self.steps, self.lr)
        )
        return finetune_options(
            frozen_blocks, steps, lr, "cuda" if gpu else "cpu", batch_size=self.batch_size,
            distill_weight=self.distill_weight, damaged_weight=self.damaged_weight, mirror=self.mirror,
            seed=self.seed,
        )  # fmt: skip


def _require_production(registry: ModelRegistry) -> tuple[str, Path]:
    production = registry.production()
    if production is None:
        raise dg.Failure(
            "no production model: register one and approve it (`wv model approve VERSION --by NAME`)"
        )
    return production.version, registry.resolve(production)


def training_samples(dataset: RetrainingDataset, input_size: tuple[int, int]) -> tuple[list[Any], list[Any]]:
    """The labeled camera frames (re-rendered, verified labels applied) and the replay slice, as samples."""
    from model_lifecycle.data import frame_to_sample
    from model_lifecycle.sources import training_frames

    replay = training_frames(dataset.replay_seed)
    return (
        [frame_to_sample(render_ref(ref), input_size) for ref in dataset.train],
        [frame_to_sample(replay(i), input_size) for i in dataset.replay_indices],
    )


@dg.asset(
    deps=["backbone_adaptation"],
    group_name="retraining",
    owners=OWNERS,
    kinds={"pytorch", "onnx", "wandb"},
    tags={"domain": "retraining", "compute": "gpu"},
    op_tags={"wv/job": "retraining"},
    description=(
        "Fine-tunes the production model on `retraining_dataset`: its first backbone blocks stay frozen and run "
        "once per frame, the last blocks and heads train on their cached output (labeled drifted frames plus the "
        "replay slice, distilled from production there); W&B run (offline by default); exports ONNX and INT8 "
        "ONNX; registers the version with status `candidate`."
    ),
)
def candidate_model(
    context: dg.AssetExecutionContext,
    config: CandidateModelConfig,
    retraining_dataset: RetrainingDataset,
    model_registry: ModelRegistryResource,
    wandb: WandbResource,
    settings: dg.ResourceParam[PipelineSettings],
) -> dg.MaterializeResult:
    import time

    import numpy as np

    from assets.common.modeling import REFERENCE_FILE, compute_reference_embeddings
    from edge.model.version import load_detector, read_version, save_version
    from model_lifecycle.export import export_version
    from model_lifecycle.finetune import finetune

    registry = model_registry.registry()
    parent, parent_dir = _require_production(registry)
    parent_version = read_version(parent_dir)
    start_dir = adapted_start(registry.models_dir, parent) if config.adapted_backbone else parent_dir
    version = f"cand-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    out_dir = registry.models_dir / version
    started = time.perf_counter()
    labeled, replay = training_samples(retraining_dataset, parent_version.input_size)
    opts = config.finetune_options(settings.retrain_device)
    labels = {
        k: retraining_dataset.selection.get(k)
        for k in ("trained_packages", "drifted_packages", "labels_wanted")
    }
    run_config = {**asdict(opts), "parent": parent, "manifest": retraining_dataset.manifest}
    with wandb.run(version, "retraining", run_config) as run:
        result = finetune(load_detector(start_dir), labeled, replay, opts, on_log=run.log)
        run.summary.update(result.timings)
    training: dict[str, Any] = {
        "parent": parent,
        "steps": result.steps,
        "frames": len(labeled) + len(replay),
        "labeled_frames": len(labeled),
        "replay_frames": len(replay),
        "frozen_blocks": opts.frozen_blocks,
        "device": opts.device,
        "manifest": retraining_dataset.manifest,
        "adapted_backbone": str(start_dir) if config.adapted_backbone else None,
        **labels,
        "final_loss": result.final_loss,
        "timings": {k: round(v, 2) for k, v in result.timings.items()},
    }
    save_version(result.model, out_dir, training=training)
    export = export_version(out_dir, config.calibration_frames)
    np.save(out_dir / REFERENCE_FILE, compute_reference_embeddings(out_dir, frames=config.reference_frames))
    frozen = f"backbone blocks 0..{opts.frozen_blocks - 1} frozen" if opts.frozen_blocks else "nothing frozen"
    (out_dir / "MODEL_CARD.md").write_text(
        f"# {version}\n\nFine-tuned from `{parent}` for {result.steps} steps on {opts.device}: {frozen}, "
        f"the rest and the heads trained on {len(labeled)} labeled "
        f"camera frames and {len(replay)} replay frames (manifest `{retraining_dataset.manifest}`), distilled "
        f"from `{parent}` on the replay frames.\n\nStatus: candidate; see `candidate_evaluation`.\n",
        encoding="utf-8",
    )
    registry.register(
        version, out_dir, parent_version.config.name, {"training": training}, parent_version=parent
    )
    elapsed = time.perf_counter() - started
    context.log.info("registered candidate %s (parent %s) in %.0f s", version, parent, elapsed)
    return dg.MaterializeResult(
        metadata={
            "version": version,
            "parent_version": parent,
            "steps": result.steps,
            "train_frames": len(labeled) + len(replay),
            "labeled_frames": len(labeled),
            "replay_frames": len(replay),
            "frozen_blocks": opts.frozen_blocks,
            "device": opts.device,
            **{k: v for k, v in labels.items() if v is not None},
            "final_loss": dg.MetadataValue.float(float(result.final_loss or 0.0)),
            "fine_tune_seconds": round(result.timings["cache_s"] + result.timings["train_s"], 1),
            "fine_tune_cpu_seconds": round(result.timings["cache_cpu_s"] + result.timings["train_cpu_s"], 1),
            "total_seconds": round(elapsed, 1),
            "path": dg.MetadataValue.path(str(out_dir.resolve())),
            "onnx_mb": export["fp32_mb"],
            "int8_onnx_mb": export["int8_mb"],
        },
    )


# --- candidate_evaluation ----------------------------------------------------------------------
CANDIDATE_GATE = dg.AssetCheckSpec(
    "candidate_beats_production",
    asset="candidate_evaluation",
    blocking=True,
    description=(
        "Blocking: the candidate beats production on the recent verified set, is no worse on the frozen test "
        "set, no class recall regresses beyond tolerance, and INT8 parity holds. A failing candidate is "
        "rejected and can never be promoted."
    ),
)


class CandidateEvaluationConfig(dg.Config):
    version: str = ""
    """Candidate to judge; empty: the newest registered candidate (also one trained outside Dagster and
    added with `wv model register`)."""
    manifest: str = ""
    """Dataset manifest whose hold-out is the recent verified set; empty: the candidate's training manifest."""
    test_frames: int = 200
    """Frames of the frozen held-out test set (``model_lifecycle.sources.heldout_frames``)."""
    frozen_data: str = ""
    """A dataset folder (``wv model import`` / ``wv data`` layout) to use as the frozen test set
    instead of the simulator's: a team's own fixed test images, which no version may get worse on."""
    recent_data: str = ""
    """A dataset folder to use as the recent set instead of the manifest's hold-out: the team's
    newest labeled images, which a candidate must do better on than production."""
    parity_frames: int = 64
    frozen_tolerance: float = GatePolicy.frozen_tolerance
    class_tolerance: float = GatePolicy.class_tolerance
    min_class_support: int = GatePolicy.min_class_support


def evaluation_sets(
    config: CandidateEvaluationConfig, manifest: str
) -> tuple[dict[str, Sequence[Any]], dict[str, Any]]:
    """The frozen and recent frame sets the gate compares on, and where each came from.

    Defaults: the simulator's frozen held-out set and the recent hold-out of the training manifest
    (verified samples); a team's own dataset folders replace either."""
    from model_lifecycle.sources import DirectoryFrames, heldout_frames

    frozen: Sequence[Any]
    recent: Sequence[Any]
    described: dict[str, Any] = {}
    if config.frozen_data:
        frozen = DirectoryFrames(_dataset_folder(config.frozen_data, "frozen_data"))
        described["frozen"] = frozen.describe()
    else:
        frozen = heldout_frames(config.test_frames)
        described["frozen"] = {"source": "simulator held-out set", "frames": len(frozen)}
    if config.recent_data:
        recent = DirectoryFrames(_dataset_folder(config.recent_data, "recent_data"))
        described["recent"] = recent.describe()
    else:
        recent = [render_ref(r) for r in load_manifest(Path(manifest)).recent] if manifest else []
        described["recent"] = {
            "source": f"recent hold-out of {manifest or 'no manifest'}",
            "frames": len(recent),
        }
    return {"frozen": frozen, "recent": recent}, described


def _dataset_folder(path: str, field: str) -> Path:
    folder = Path(path)
    if not (folder / "annotations.jsonl").is_file():
        raise dg.Failure(
            f"candidate_evaluation.{field}={path}: not a dataset folder (no annotations.jsonl); "
            "make one with `wv model import` or `wv data generate`"
        )
    return folder


def evaluate_version(path: Path, sets: Mapping[str, Sequence[Any]]) -> dict[str, dict[str, Any]]:
    """EvalReport dicts of the INT8 engine (what the edge runs) of ``path`` on each named frame set."""
    from assets.common.modeling import version_engine
    from edge.model.version import read_version
    from model_lifecycle.evaluate import evaluate

    version = read_version(path)
    engine, _ = version_engine(path)
    return {
        name: evaluate(engine, frames, version.score_threshold).as_dict()
        for name, frames in sets.items()
        if frames
    }


def int8_parity(path: Path, frames: Sequence[Any]) -> dict[str, Any]:
    from edge.backends import EngineSpec, load_engine
    from edge.model.version import read_version
    from model_lifecycle.evaluate import parity

    version = read_version(path)
    if not (version.onnx_path.exists() and version.int8_onnx_path.exists()):
        return {
            "passed": False,
            "error": f"{path} lacks model.onnx or model.int8.onnx (run `wv model export`)",
        }
    sizes = (version.onnx_path.stat().st_size, version.int8_onnx_path.stat().st_size)
    return parity(
        load_engine(path, EngineSpec("onnxruntime", "fp32", threads=2), warmup=False),
        load_engine(path, EngineSpec("onnxruntime", "int8", threads=2), warmup=False),
        frames,
        version.score_threshold,
        sizes,
    ).as_dict()


def newest_candidate(registry: ModelRegistry, version: str = "") -> ModelVersion:
    """The named version, or the newest one still waiting as a candidate."""
    if version:
        model = registry.get(version)
    else:
        waiting = registry.list("candidate")
        if not waiting:
            raise dg.Failure(
                "no candidate model is registered; materialize candidate_model or `wv model register`"
            )
        model = waiting[-1]
    if model.status != "candidate":
        raise dg.Failure(f"{model.version} is {model.status}, not a candidate")
    return model


@dg.asset(
    deps=["candidate_model", "retraining_dataset"],
    group_name="retraining",
    owners=OWNERS,
    kinds={"onnx", "wandb"},
    tags={"domain": "retraining"},
    check_specs=[CANDIDATE_GATE],
    description=(
        "Candidate vs production (INT8 engines) on the frozen test set and the recent verified hold-out, "
        "plus the candidate's INT8-vs-FP32 parity. Writes the result into the candidate's registry metrics."
    ),
)
def candidate_evaluation(
    context: dg.AssetExecutionContext,
    config: CandidateEvaluationConfig,
    model_registry: ModelRegistryResource,
    wandb: WandbResource,
) -> dg.MaterializeResult:
    registry = model_registry.registry()
    production, production_dir = _require_production(registry)
    candidate = newest_candidate(registry, config.version)
    candidate_dir = registry.resolve(candidate)
    manifest = config.manifest or (candidate.metrics.get("training") or {}).get("manifest") or ""
    sets, described = evaluation_sets(config, manifest)
    reports = {
        "production": evaluate_version(production_dir, sets),
        "candidate": evaluate_version(candidate_dir, sets),
    }
    parity = int8_parity(candidate_dir, sets["frozen"][: config.parity_frames])
    policy = GatePolicy(
        frozen_tolerance=config.frozen_tolerance,
        class_tolerance=config.class_tolerance,
        min_class_support=config.min_class_support,
    )
    decision = decide(reports["production"], reports["candidate"], bool(parity["passed"]), policy)
    evaluation = {
        "passed": decision.passed,
        "reasons": decision.reasons,
        "against": production,
        "manifest": manifest,
        "sets": described,
        "comparisons": decision.comparisons,
        "reports": reports,
        "int8_parity": parity,
        "evaluated_at": datetime.now(UTC).isoformat(),
    }
    registry.update_metrics(candidate.version, {"evaluation": evaluation})
    if not decision.passed:
        registry.reject(candidate.version, decision.summary())
    with wandb.run(f"eval-{candidate.version}", "evaluation", {"production": production}) as run:
        run.log({f"{who}/{name}/{k}": v for who, per_set in reports.items() for name, r in per_set.items()
                 for k, v in r.items() if isinstance(v, int | float)})  # fmt: skip
    table = "\n".join(
        ["| set | metric | production | candidate |", "|---|---|---|---|"]
        + [
            f"| {c['set']} | {c['metric']} | {c['production']:.4f} | {c['candidate']:.4f} |"
            for c in decision.comparisons
        ]
    )
    context.log.info("candidate %s vs %s: %s", candidate.version, production, decision.summary())
    return dg.MaterializeResult(
        metadata={
            "candidate": candidate.version,
            "production": production,
            "passed": decision.passed,
            "comparison": dg.MetadataValue.md(table),
            "int8_parity": dg.MetadataValue.json(parity),
            "recent_frames": len(sets["recent"]),
            "frozen_frames": len(sets["frozen"]),
            "sets": dg.MetadataValue.json(described),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=CANDIDATE_GATE.name,
                passed=decision.passed,
                severity=dg.AssetCheckSeverity.ERROR,
                metadata={
                    "candidate": candidate.version,
                    "reasons": dg.MetadataValue.json(decision.reasons),
                    "comparison": dg.MetadataValue.md(table),
                },
            )
        ],
    )
