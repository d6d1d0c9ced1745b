"""`wv data …`: render synthetic conveyor datasets and videos from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from simulator import PRESETS, SimConfig
from simulator.dataset import write_dataset
from simulator.video import write_video

app = typer.Typer(help="Generate synthetic conveyor datasets and videos.", no_args_is_help=True)
console = Console()

Drift = Annotated[str, typer.Option(help=f"Drift preset: {', '.join(sorted(PRESETS))}.")]


def _check_drift(drift: str) -> str:
    if drift not in PRESETS:
        raise typer.BadParameter(f"unknown preset {drift!r}; choose one of {sorted(PRESETS)}")
    return drift


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


@app.command()
def generate(
    out: Annotated[Path, typer.Option(help="Dataset directory (created).")],
    frames: Annotated[int, typer.Option(min=1, help="Number of frames.")] = 1000,
    seed: Annotated[int, typer.Option(help="Scene seed; same seed + options → same files.")] = 0,
    workers: Annotated[int, typer.Option(min=1, help="Rendering processes.")] = 2,
    drift: Drift = "none",
    width: Annotated[int, typer.Option(help="Frame width in pixels.")] = 640,
    height: Annotated[int, typer.Option(help="Frame height in pixels.")] = 360,
    sequence: Annotated[
        bool, typer.Option("--sequence/--iid", help="One continuous scene instead of independent frames.")
    ] = False,
    image_format: Annotated[str, typer.Option("--format", help="jpg or png.")] = "jpg",
) -> None:
    """Write images + annotations.jsonl + dataset.json for training or evaluation."""
    _check_drift(drift)
    if image_format not in ("jpg", "png"):
        raise typer.BadParameter("--format must be jpg or png")
    config = SimConfig(width=width, height=height)
    with _progress() as bar:
        task = bar.add_task(f"rendering {out}", total=frames)
        summary = write_dataset(
            out,
            frames,
            seed,
            config=config,
            drift=drift,
            workers=workers,
            mode="sequence" if sequence else "iid",
            image_format=image_format,  # type: ignore[arg-type]
            progress=lambda n: bar.advance(task, n),
        )
    console.print(
        f"{summary.frames} frames, {summary.packages} packages "
        f"({', '.join(f'{k} {v}' for k, v in summary.conditions.items())}; misplaced {summary.misplaced}) "
        f"→ {summary.path}"
    )


@app.command()
def video(
    out: Annotated[Path, typer.Option(help="Video file (.mp4 or .avi); truth goes to <name>.truth.jsonl.")],
    seconds: Annotated[float, typer.Option(min=0.1, help="Length in seconds.")] = 10.0,
    fps: Annotated[float, typer.Option(min=1, help="Frames per second.")] = 30.0,
    seed: Annotated[int, typer.Option(help="Scene seed.")] = 0,
    drift: Drift = "none",
    width: Annotated[int, typer.Option(help="Frame width in pixels.")] = 640,
    height: Annotated[int, typer.Option(help="Frame height in pixels.")] = 360,
    camera_id: Annotated[str, typer.Option(help="Camera id used in package ids.")] = "synthetic",
) -> None:
    """Record one continuous simulated scene, for `file://` camera sources and demos."""
    _check_drift(drift)
    config = SimConfig(width=width, height=height, fps=fps)
    with _progress() as bar:
        task = bar.add_task(f"recording {out}", total=max(1, round(seconds * fps)))
        n = write_video(
            out,
            seconds,
            seed,
            config=config,
            drift=drift,
            camera_id=camera_id,
            progress=lambda k: bar.advance(task, k),
        )
    console.print(f"{n} frames → {out} (+ {out.with_suffix('.truth.jsonl').name})")
