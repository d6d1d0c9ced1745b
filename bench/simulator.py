"""Synthetic-dataset throughput: can 2 cores render a 20,000-frame training set in < 3 minutes?

    python -m bench.simulator [--quick]

Measures frames/s of the renderer alone and of `write_dataset` (render + JPEG + annotations)
with 1 and 2 worker processes; the baseline is the same run's rate of encoding and writing blank
frames (the floor cost of a dataset frame with nothing rendered).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from bench._report import write_report
from simulator import ConveyorSimulator, SimConfig
from simulator.dataset import write_dataset

TARGET_FRAMES = 20_000
TARGET_SECONDS = 180.0


def _rate(fn: Callable[[], int], reps: int) -> float:
    """Median frames/s over `reps` runs of `fn` (which returns how many frames it produced)."""
    rates = []
    for _ in range(reps):
        t0 = time.perf_counter()
        n = fn()
        rates.append(n / (time.perf_counter() - t0))
    return statistics.median(rates)


def _blank_encode(n: int, cfg: SimConfig) -> Callable[[], int]:
    def run() -> int:
        with tempfile.TemporaryDirectory() as tmp:
            for i in range(n):
                img = np.full((cfg.height, cfg.width, 3), 90, np.uint8)
                _, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 92])
                (Path(tmp) / f"{i:06d}.jpg").write_bytes(buf.tobytes())
        return n

    return run


def _render(n: int, cfg: SimConfig, iid: bool) -> Callable[[], int]:
    def run() -> int:
        sim = ConveyorSimulator(cfg, seed=11)
        render = sim.render_iid if iid else sim.render
        for i in range(n):
            render(i)
        return n

    return run


def _dataset(n: int, workers: int) -> Callable[[], int]:
    def run() -> int:
        with tempfile.TemporaryDirectory() as tmp:
            write_dataset(Path(tmp), n, seed=11, workers=workers)
        return n

    return run


def _row(measure: str, value: str, note: str) -> dict[str, str]:
    return {"measure (640x360, JPEG q92)": measure, "frames/s": value, "vs baseline": note}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer frames, one repetition (< 1 min)")
    args = parser.parse_args()
    n, reps = (300, 1) if args.quick else (2000, 3)
    cfg = SimConfig()
    cv2.setNumThreads(1)
    _render(20, cfg, True)()  # warm caches (catalogue, textures) outside the timings

    baseline = {"blank_jpeg_write_fps": _rate(_blank_encode(n, cfg), reps)}
    sim = ConveyorSimulator(cfg, seed=11)
    per_frame = statistics.mean(len(sim.render_iid(i).truth) for i in range(100))
    metrics = {
        "render_iid_fps": _rate(_render(n, cfg, True), reps),
        "render_sequence_fps": _rate(_render(n, cfg, False), reps),
        "dataset_fps_1_worker": _rate(_dataset(n, 1), reps),
        "dataset_fps_2_workers": _rate(_dataset(n, 2), reps),
        "packages_per_iid_frame": per_frame,
    }
    best = max(metrics["dataset_fps_1_worker"], metrics["dataset_fps_2_workers"])
    metrics["projected_20k_seconds"] = TARGET_FRAMES / best
    metrics["speedup_2_workers"] = metrics["dataset_fps_2_workers"] / metrics["dataset_fps_1_worker"]
    blank = baseline["blank_jpeg_write_fps"]
    ratio = metrics["render_iid_fps"] / blank
    verdict = "ok" if metrics["projected_20k_seconds"] < TARGET_SECONDS else "MISSED"
    rows = [
        _row("baseline: blank frame JPEG encode + write", f"{blank:.0f}", "1.00"),
        _row("render only, i.i.d. scenes", f"{metrics['render_iid_fps']:.0f}", f"{ratio:.2f}"),
        _row("render only, continuous scene", f"{metrics['render_sequence_fps']:.0f}", ""),
        _row("write_dataset, 1 worker", f"{metrics['dataset_fps_1_worker']:.0f}", ""),
        _row(
            "write_dataset, 2 workers",
            f"{metrics['dataset_fps_2_workers']:.0f}",
            f"x{metrics['speedup_2_workers']:.2f} vs 1 worker",
        ),
        _row(
            f"projected {TARGET_FRAMES:,} frames (target < {TARGET_SECONDS:.0f} s)",
            f"{metrics['projected_20k_seconds']:.0f} s",
            verdict,
        ),
    ]
    print(
        f"{n} frames per measurement, median of {reps}; {per_frame:.1f} labelled packages per i.i.d. frame\n"
    )
    write_report("simulator", metrics, baseline, rows)


if __name__ == "__main__":
    main()
