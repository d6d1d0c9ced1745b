"""`wv model adapt`: DINO adaptation of a model version's backbone to folders of unlabeled frames."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer


def adapt_cmd(
    frames: Annotated[
        list[Path],
        typer.Option(
            "--frames", help="Folder of unlabeled frames (.jpg/.png, searched recursively); repeatable."
        ),
    ],
    out: Annotated[Path, typer.Option(help="Version dir to write the adapted model to.")],
    version_dir: Annotated[Path, typer.Argument(help="Model version to adapt.")] = Path("models/default"),
    max_frames: Annotated[int, typer.Option(help="Use at most this many frames, evenly spread.")] = 2000,
    replay_frames: Annotated[
        int, typer.Option(help="Simulator training frames mixed in and anchored on.")
    ] = 128,
    steps: int = 300,
    batch_size: int = 32,
    lr: float = 1e-4,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "auto",
    seed: int = 0,
) -> None:
    """Self-supervised (DINO) adaptation of the backbone; the heads stay the version's own."""
    from edge.model.version import load_detector, read_version, save_version
    from model_lifecycle.data import frame_to_sample
    from model_lifecycle.sources import training_frames
    from model_lifecycle.ssl.adapt import AdaptOptions, adapt
    from model_lifecycle.ssl.frames import image_files, read_frames, spread

    size = read_version(version_dir).input_size
    try:
        unlabeled = read_frames(spread(image_files(frames), max_frames), size)
    except (FileNotFoundError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if not unlabeled:
        typer.echo(f"error: no .jpg/.png frames under {', '.join(map(str, frames))}", err=True)
        raise typer.Exit(2)
    replay_fn = training_frames(1)
    replay = [frame_to_sample(replay_fn(i), size).image for i in range(replay_frames)]
    warmup = min(AdaptOptions().head_warmup_steps, steps // 4)
    opts = AdaptOptions(
        steps, batch_size, lr=lr, head_warmup_steps=warmup, device=device, seed=seed, threads=None
    )
    result = adapt(
        load_detector(version_dir), unlabeled, replay, opts, on_log=lambda r: typer.echo(json.dumps(r))
    )
    training = {"adapted_from": str(version_dir), "unlabeled_frames": len(unlabeled), "ssl": asdict(opts)}
    save_version(result.model, out, training={**training, "timings": result.timings})
    typer.echo(f"adapted model written to {out} ({result.steps} steps, {result.timings['adapt_s']:.0f} s)")
