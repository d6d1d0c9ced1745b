"""`wv model train | eval | export | build-engine | import | export-dataset | adapt`: the model's command line (mounted by `wv.cli`)."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from model_lifecycle.ssl.command import adapt_cmd

app = typer.Typer(help="Train, evaluate and export the package detector.", no_args_is_help=True)
console = Console()
app.command("adapt")(adapt_cmd)

DEFAULT_VERSION = Path("models/default")


def _input_size(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    h, _, w = text.lower().partition("x")
    return int(h), int(w)


@app.command()
def train(
    config: Annotated[str, typer.Option(help="fallback | tiny | small | base")] = "tiny",
    out: Annotated[
        Path | None, typer.Option(help="Run directory (default .local/runs/<config>-<time>).")
    ] = None,
    steps: int = 3000,
    batch_size: Annotated[int, typer.Option(help="Per process.")] = 64,
    lr: float = 1e-3,
    warmup_steps: int = 200,
    frames: Annotated[
        int, typer.Option(help="Synthetic training frames (i.i.d. simulator indices).")
    ] = 20000,
    data: Annotated[
        Path | None, typer.Option(help="Train on a dataset dir (`wv data` or `wv model import`) instead.")
    ] = None,
    val: Annotated[
        Path | None, typer.Option(help="Validation dataset dir (default: a package split of --data).")
    ] = None,
    val_fraction: Annotated[
        float, typer.Option(help="With --data and no --val: share of packages held out for validation.")
    ] = 0.1,
    from_version: Annotated[
        Path | None, typer.Option(help="Fine-tune a model version (its config and weights) on --data.")
    ] = None,
    backbone: Annotated[
        Path | None,
        typer.Option(
            help="DINOv2/DINOv3 backbone file or Hugging Face folder; the backbone takes its shape."
        ),
    ] = None,
    freeze_backbone: Annotated[
        int | None,
        typer.Option(help="Keep the patch embedding and the first N blocks fixed (N >= depth: heads only)."),
    ] = None,
    export_onnx: Annotated[
        bool, typer.Option("--export/--no-export", help="With --save-version: ONNX + INT8 + parity.")
    ] = True,
    sim_seed: Annotated[int, typer.Option(help="Simulator seed of the training frames.")] = 1,
    damage_mix: Annotated[str | None, typer.Option(help="e.g. 'ok=0.5,crushed=0.125,...'")] = None,
    cache: Annotated[bool, typer.Option(help="Render all frames once, keep them on the device.")] = False,
    input_size: Annotated[
        str | None, typer.Option(help="HxW, multiples of 16 (default from config).")
    ] = None,
    seed: int = 0,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    amp: Annotated[bool, typer.Option(help="bf16 autocast on CUDA.")] = True,
    workers: int = 2,
    checkpoint_every: int = 500,
    resume: Annotated[bool, typer.Option(help="Continue from <out>/checkpoints/last.pt.")] = False,
    teacher: Annotated[
        Path | None, typer.Option(help="Model version dir or checkpoint to distil from.")
    ] = None,
    distill_weight: float = 1.0,
    init_checkpoint: Annotated[Path | None, typer.Option(help="DINOv2/DINOv3 backbone weights.")] = None,
    wandb: Annotated[
        bool, typer.Option(help="Log to W&B (offline unless WANDB_MODE says otherwise).")
    ] = True,
    save_version: Annotated[Path | None, typer.Option(help="Write a model version dir when done.")] = None,
    progress: bool = True,
    log_every: int = 20,
    time_limit: Annotated[
        float | None, typer.Option(help="Stop (with a checkpoint) after this many seconds.")
    ] = None,
) -> None:
    """Train the detector on simulator frames or a dataset dir (single process, or every rank under `torchrun`)."""
    import dataclasses
    import os

    from torch.utils.data import Dataset

    from edge.model.config import get_config
    from edge.model.version import read_version
    from edge.model.version import save_version as write_version
    from model_lifecycle.data import CachedSamples, FrameDataset, render_samples
    from model_lifecycle.sources import DirectoryFrames, SimulatedFrames, parse_mix, training_frames
    from model_lifecycle.train import TrainOptions, state_dir
    from model_lifecycle.train import train as run_training

    model_cfg = read_version(from_version).config if from_version else get_config(config)
    backbone_origin: dict[str, object] = {}
    if backbone is not None or init_checkpoint is not None:
        from model_lifecycle.checkpoints import describe_checkpoint

        bb_cfg, backbone_origin = describe_checkpoint(backbone or init_checkpoint)  # type: ignore[arg-type]
        if backbone is not None:  # shaped after the checkpoint: every tensor must fit
            model_cfg = dataclasses.replace(model_cfg, backbone=bb_cfg)
            backbone_origin["strict"] = True
    patch = model_cfg.backbone.patch_size
    size = _input_size(input_size) or model_cfg.input_size
    size = (max(patch, round(size[0] / patch) * patch), max(patch, round(size[1] / patch) * patch))
    out = out or state_dir() / "runs" / f"{config}-{time.strftime('%Y%m%d-%H%M%S')}"
    source: SimulatedFrames | DirectoryFrames = (
        DirectoryFrames(data)
        if data
        else training_frames(sim_seed, parse_mix(damage_mix) if damage_mix else None)
    )
    validation: DirectoryFrames | None = None
    if val is not None:
        validation = DirectoryFrames(val)
        if isinstance(source, DirectoryFrames) and (
            shared := source.package_ids() & validation.package_ids()
        ):
            raise typer.BadParameter(
                f"{len(shared)} packages are in both --data and --val (e.g. {sorted(shared)[:3]}): "
                "a package must be on one side only"
            )
    elif isinstance(source, DirectoryFrames) and val_fraction > 0:
        source, validation = source.split(val_fraction)
    frames = len(source) if isinstance(source, DirectoryFrames) else frames
    frame_data = FrameDataset(source, frames, size)
    dataset: Dataset = frame_data
    rank = int(os.environ.get("RANK", "0"))
    if cache:
        import torch

        t0 = time.perf_counter()
        dev = "cuda" if device != "cpu" and torch.cuda.is_available() else "cpu"
        dataset = CachedSamples(render_samples(frame_data, workers), dev)
        if rank == 0:
            console.print(f"rendered {frames} frames in {time.perf_counter() - t0:.1f} s")
    opts = TrainOptions(
        out_dir=out,
        config=config,
        input_size=size,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        warmup_steps=warmup_steps,
        seed=seed,
        device=device,
        amp=amp,
        workers=workers,
        checkpoint_every=checkpoint_every,
        resume=resume,
        teacher=teacher,
        distill_weight=distill_weight,
        init_checkpoint=backbone or init_checkpoint,
        model_config=model_cfg.to_dict(),
        init_version=from_version,
        freeze_blocks=freeze_backbone,
        backbone_origin=backbone_origin,
        wandb=wandb,
        progress=progress,
        log_every=log_every,
        time_limit_s=time_limit,
        data_description={
            "train": {**source.describe(), "frames": frames},
            "validation": validation.describe() if validation is not None else None,
        },
    )
    result = run_training(opts, dataset)
    if rank != 0:
        return
    console.print(f"trained {result.step} steps -> {out}/checkpoints/last.pt")
    if save_version:
        from edge.model.version import load_detector
        from model_lifecycle.release import complete_version

        model = load_detector(out / "checkpoints" / "last.pt")
        write_version(model, save_version, {"options": json.loads(json.dumps(vars(opts), default=str))})
        calib_source = source if isinstance(source, DirectoryFrames) else None
        calibration = (
            [calib_source(i).image for i in range(0, len(calib_source), max(1, len(calib_source) // 64))][:64]
            if calib_source is not None
            else None
        )
        with contextlib.redirect_stdout(sys.stderr):
            done = complete_version(save_version, validation, calibration, export=export_onnx)
        console.print(f"model version written to {save_version}")
        if "eval_torch" in done:
            console.print(_eval_table(f"{save_version} · validation", done["eval_torch"]))


def _eval_table(title: str, report: dict) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in (
        "frames",
        "packages",
        "map50",
        "condition_accuracy",
        "condition_map50",
        "precision",
        "recall",
        "matched",
    ):
        table.add_row(key, str(report[key]))
    return table


def _per_class_table(report: dict) -> Table:
    table = Table(title="conditions on matched packages")
    for col in ("condition", "truth", "predicted", "precision", "recall", "ap50"):
        table.add_column(col, justify="right")
    for name, row in report["per_condition"].items():
        table.add_row(name, *(str(row[k]) for k in ("truth", "predicted", "precision", "recall", "ap50")))
    return table


@app.command("eval")
def eval_(
    model: Annotated[
        Path, typer.Argument(help="Model version dir or training checkpoint.")
    ] = DEFAULT_VERSION,
    engine: Annotated[
        str, typer.Option(help="torch | onnx | int8 (ONNX files of the version dir)")
    ] = "torch",
    frames: Annotated[
        int | None,
        typer.Option(help="Frames to score (default: 400 held-out simulator frames, or all of --data)."),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Held-out simulator seed (default HELDOUT_SEED).")] = None,
    drift: Annotated[str | None, typer.Option(help="Simulator drift preset, e.g. six_weeks_later.")] = None,
    data: Annotated[
        Path | None, typer.Option(help="Evaluate on a dataset dir (`wv data` or `wv model import`) instead.")
    ] = None,
    coco_results: Annotated[
        Path | None,
        typer.Option(help="Also write the detections as COCO results JSON (image ids as `export-dataset`)."),
    ] = None,
    device: str = "cpu",
    threads: Annotated[int | None, typer.Option(help="ONNX Runtime intra-op threads.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    write: Annotated[bool, typer.Option(help="Store the result in the version's metrics.json.")] = False,
) -> None:
    """mAP@0.5, condition accuracy on matched packages and per-condition P/R on the held-out set."""
    from contract.frames import Frame
    from edge.backends import Engine, EngineSpec, load_engine
    from edge.backends.torch import TorchEngine
    from edge.model.version import load_detector, read_version, write_metrics
    from model_lifecycle.evaluate import SCORE_FLOOR, score
    from model_lifecycle.sources import DEFAULT_HELDOUT_FRAMES, HELDOUT_SEED, DirectoryFrames, heldout_frames

    version = read_version(model) if model.is_dir() else None
    thr, iou = (version.score_threshold, version.iou_threshold) if version else (0.3, 0.5)
    model_engine: Engine
    if engine == "torch":
        model_engine = TorchEngine.for_module(
            load_detector(model), EngineSpec("torch", "fp32", device, threads)
        )
    elif version is not None and engine in ("onnx", "int8"):
        precision = "fp32" if engine == "onnx" else "int8"
        model_engine = load_engine(
            version.path, EngineSpec("onnxruntime", precision, threads=threads), warmup=False
        )
    else:
        raise typer.BadParameter("engine must be torch, or onnx/int8 with a version dir that was exported")
    seed = HELDOUT_SEED if seed is None else seed
    eval_frames: Sequence[Frame]
    if data:
        source = DirectoryFrames(data)
        n = len(source) if frames is None else min(frames, len(source))
        eval_frames = DirectoryFrames(data, range(n)) if n < len(source) else source
    else:
        eval_frames = heldout_frames(frames or DEFAULT_HELDOUT_FRAMES, seed, drift)
    result, detections = score(model_engine, eval_frames, thr, iou)
    report = result.as_dict()
    if coco_results is not None:
        from model_lifecycle.datasets.coco import results

        coco_results.parent.mkdir(parents=True, exist_ok=True)
        coco_results.write_text(json.dumps(results(detections)))
        report.update(coco_results=str(coco_results), coco_score_floor=SCORE_FLOOR)
    report.update(engine=engine, heldout_seed=seed, drift=drift or "none", score_threshold=thr)
    if data:
        report.update(heldout_seed=None, data=str(data))
    if write and version is not None:
        write_metrics(version.path, f"eval_{engine}" if drift is None else f"eval_{engine}_{drift}", report)
    if json_out:
        typer.echo(json.dumps(report, indent=2))
        return
    console.print(_eval_table(f"{model} · {engine} · held-out seed {seed}", report))
    console.print(_per_class_table(report))


@app.command()
def export(
    version_dir: Annotated[Path, typer.Argument(help="Model version dir.")] = DEFAULT_VERSION,
    calibration_frames: Annotated[int, typer.Option(help="Held-out calibration frames.")] = 64,
    parity_frames: Annotated[int, typer.Option(help="Held-out frames for the parity report.")] = 200,
    record: Annotated[
        bool, typer.Option("--record/--no-record", help="Store the parity report in metrics.json.")
    ] = True,
    data: Annotated[
        Path | None,
        typer.Option(help="Calibrate on, and check parity on, this dataset dir instead of simulator frames."),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Write model.onnx (FP32, dynamic batch) and model.int8.onnx (static QDQ), print the parity report."""
    from model_lifecycle.export import export_version
    from model_lifecycle.sources import DirectoryFrames

    calibration = parity_set = None
    if data is not None:
        frames = DirectoryFrames(data)
        step = max(1, len(frames) // calibration_frames)
        calibration = [frames[i].image for i in range(0, len(frames), step)][:calibration_frames]
        parity_set = DirectoryFrames(data, range(min(parity_frames, len(frames))))
    # ONNX Runtime's calibrator prints its histogram settings: keep stdout for the report.
    with contextlib.redirect_stdout(sys.stderr):
        report = export_version(
            version_dir,
            calibration_frames,
            parity_frames,
            record,
            calibration=calibration,
            parity_set=parity_set,
        )
    if json_out:
        typer.echo(json.dumps(report, indent=2))
        return
    table = Table(title=f"INT8 vs FP32 parity · {version_dir.name} · {parity_frames} held-out frames")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in report.items():
        table.add_row(key, str(value))
    console.print(table)
    if not report.get("passed", True):
        console.print("[red]parity below target (agreement >= 0.96, mAP drop <= 1 point)[/red]")
        raise typer.Exit(1)


def _mapping(items: list[str] | None) -> dict[str, str]:
    out = {}
    for item in items or []:
        name, sep, target = item.rpartition("=")
        if not sep or not name:
            raise typer.BadParameter(f"--map takes NAME=CONDITION, got {item!r}")
        out[name] = target.strip().lower()
    return out


@app.command("import")
def import_(
    source: Annotated[Path, typer.Argument(help="Annotation file or folder in FORMAT.")],
    dest: Annotated[Path, typer.Argument(help="New dataset folder (must not exist).")],
    format: Annotated[str, typer.Option("--format", "-f", help="coco | yolo | voc | label-studio")],
    images: Annotated[
        Path | None, typer.Option(help="Folder of the image files (default: beside the annotations).")
    ] = None,
    map_: Annotated[
        list[str] | None,
        typer.Option(
            "--map", help="NAME=CONDITION or NAME=ignore, for a class or attribute value; repeatable."
        ),
    ] = None,
    condition_attribute: Annotated[
        str, typer.Option(help="Per-box attribute (or Label Studio choice) holding the condition.")
    ] = "condition",
    default_condition: Annotated[
        str | None,
        typer.Option(help="Condition of boxes with no condition label (e.g. ok); default: an error."),
    ] = None,
    boxes: Annotated[
        str, typer.Option(help="Boxes reaching outside the image: clip (counted) | refuse.")
    ] = "clip",
    split: Annotated[
        str | None, typer.Option(help="Only this split (YOLO train/val/test, VOC ImageSets).")
    ] = None,
    camera_id: Annotated[str, typer.Option(help="camera_id recorded on every image.")] = "imported",
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Import labeled images into the project's dataset layout: all or nothing, every problem reported."""
    from model_lifecycle.datasets.base import ConditionRules, ImportFailed, ImportOptions
    from model_lifecycle.datasets.importer import import_dataset

    if boxes not in ("clip", "refuse"):
        raise typer.BadParameter("--boxes must be clip or refuse")
    try:
        rules = ConditionRules(_mapping(map_), condition_attribute, default_condition)
        options = ImportOptions(rules, boxes, images, camera_id, split)  # type: ignore[arg-type]
        report = import_dataset(format, source, dest, options)
    except ImportFailed as exc:
        report = exc.report
        if json_out:
            typer.echo(json.dumps(report.as_dict(), indent=2))
        else:
            for line in report.lines():
                typer.echo(line, err=True)
            typer.echo(f"import failed: {exc}; {dest} was not created", err=True)
        raise typer.Exit(1) from exc
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if json_out:
        typer.echo(json.dumps(report.as_dict(), indent=2))
        return
    for line in report.lines():
        typer.echo(line)
    typer.echo(
        f"imported {report.counts['images_imported']} images, {report.counts['boxes_imported']} boxes -> {dest}"
    )


@app.command("export-dataset")
def export_dataset_cmd(
    dataset: Annotated[Path, typer.Argument(help="A project dataset (`wv data` or `wv model import`).")],
    dest: Annotated[Path, typer.Argument(help="New folder (must not exist).")],
    format: Annotated[str, typer.Option("--format", "-f", help="coco | yolo")],
    val_fraction: Annotated[
        float, typer.Option(help="YOLO: share of packages in images/val (split by package).")
    ] = 0.1,
) -> None:
    """Export a project dataset (simulator-made or imported) to COCO or YOLO."""
    from model_lifecycle.datasets.importer import export_dataset

    try:
        summary = export_dataset(format, dataset, dest, val_fraction)
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"{format} dataset written to {dest}: {json.dumps(summary)}")


@app.command("build-engine")
def build_engine_cmd(
    version_dir: Annotated[Path, typer.Argument()] = DEFAULT_VERSION,
    precision: Annotated[str, typer.Option(help="fp16 | int8")] = "fp16",
    min_batch: int = 1,
    opt_batch: int = 8,
    max_batch: int = 32,
    calibration_frames: int = 64,
    engine: Annotated[
        str, typer.Option(help="The engine whose plan to build (its builder plugin).")
    ] = "tensorrt",
    device: Annotated[str, typer.Option(help="The GPU to build on (cuda or cuda:N).")] = "cuda",
) -> None:
    """Build the engine plan of a version for this GPU into the model store, under the key the edges
    look for (model content, precision, GPU model, TensorRT version). Needs TensorRT; unverified here."""
    from edge.backends.base import EngineError, ModelFiles
    from edge.backends.plan_store import BuildOptions, build_plan, builder_for, plan_path
    from model_lifecycle.sources import calibration_images

    try:
        builder = builder_for(engine)
        if builder is None:
            raise EngineError(f"engine {engine!r} loads the model files directly: it has no plan to build")
        model = ModelFiles.read(version_dir)
        options = BuildOptions(precision, (min_batch, opt_batch, max_batch))
        dest = plan_path(model.path, precision, builder.target(device), max_batch)
        calib = calibration_images(calibration_frames) if precision == "int8" else None
        build_plan(builder, model.file("model.onnx"), dest, model.input_size, options, calib)
    except (EngineError, ValueError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    console.print(f"engine written to {dest}")


if __name__ == "__main__":
    app()
