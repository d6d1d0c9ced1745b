"""Synthetic image datasets on disk: write (in parallel, reproducibly) and read back.

Layout of a dataset directory:
    images/000000.jpg …      the frames
    annotations.jsonl         one line per frame, in index order (see records.frame_record)
    dataset.json              config, seed, drift, mode and counts; written last (= complete)
Each frame depends only on (config, seed, drift, index), so any number of workers produce
byte-identical files.
"""

from __future__ import annotations

import json
import multiprocessing
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from contract.frames import Frame, PackageTruth
from simulator import ConveyorSimulator, DriftConfig, SimConfig, resolve_drift
from simulator.records import frame_record, truth_from_dict

Mode = Literal["iid", "sequence"]
FORMAT = "wv-synthetic-dataset/1"
_CHUNK = 32


@dataclass(frozen=True)
class _Job:
    out: str
    config_json: str
    seed: int
    drift_json: str
    camera_id: str
    mode: Mode
    ext: str
    quality: int


_worker_sim: tuple[_Job, ConveyorSimulator] | None = None


def _simulator(job: _Job) -> ConveyorSimulator:
    """One simulator per process, reused across chunks (belt, catalogue and noise are cached)."""
    global _worker_sim
    if _worker_sim is None or _worker_sim[0] != job:
        cv2.setNumThreads(1)
        sim = ConveyorSimulator(
            SimConfig.model_validate_json(job.config_json),
            job.seed,
            camera_id=job.camera_id,
            drift=DriftConfig.model_validate_json(job.drift_json),
        )
        _worker_sim = (job, sim)
    return _worker_sim[1]


def _render_chunk(job: _Job, start: int, stop: int) -> list[dict[str, Any]]:
    sim = _simulator(job)
    render = sim.render_iid if job.mode == "iid" else sim.render
    params = [cv2.IMWRITE_JPEG_QUALITY, job.quality] if job.ext == "jpg" else [cv2.IMWRITE_PNG_COMPRESSION, 1]
    records = []
    for index in range(start, stop):
        frame = render(index)
        name = f"images/{index:06d}.{job.ext}"
        ok, buf = cv2.imencode(f".{job.ext}", frame.image, params)
        if not ok:
            raise RuntimeError(f"cannot encode frame {index} as {job.ext}")
        (Path(job.out) / name).write_bytes(buf.tobytes())
        records.append(frame_record(frame, name))
    return records


@dataclass(frozen=True)
class DatasetSummary:
    path: Path
    frames: int
    packages: int
    conditions: dict[str, int]
    package_types: dict[str, int]
    misplaced: int


def write_dataset(
    out: Path,
    frames: int,
    seed: int,
    *,
    config: SimConfig | None = None,
    drift: str | DriftConfig | None = None,
    workers: int = 1,
    mode: Mode = "iid",
    camera_id: str = "synthetic",
    image_format: Literal["jpg", "png"] = "jpg",
    jpeg_quality: int = 92,
    progress: Callable[[int], None] | None = None,
) -> DatasetSummary:
    """Render `frames` frames into `out` (created; existing frames overwritten).

    `mode="iid"` draws an independent scene per frame (training); `"sequence"` records one
    continuous scene (tracking). `progress` is called with the number of frames just finished.
    """
    config = config or SimConfig()
    drift_cfg = resolve_drift(drift)
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "dataset.json").unlink(missing_ok=True)
    job = _Job(
        str(out), config.model_dump_json(), seed, drift_cfg.model_dump_json(), camera_id, mode,
        image_format, jpeg_quality,
    )  # fmt: skip
    chunk = max(1, min(_CHUNK, frames // (4 * workers)))
    bounds = [(s, min(s + chunk, frames)) for s in range(0, frames, chunk)]
    counts: Counter[str] = Counter()
    with (out / "annotations.jsonl").open("w") as ann:
        for records in _run(job, bounds, workers):
            for rec in records:
                ann.write(json.dumps(rec) + "\n")
                for p in rec["packages"]:
                    counts["packages"] += 1
                    counts[f"condition:{p['condition']}"] += 1
                    counts[f"type:{p['package_type']}"] += 1
                    counts["misplaced"] += p["zone"] != p["expected_zone"]
            if progress is not None:
                progress(len(records))
    summary = DatasetSummary(
        path=out,
        frames=frames,
        packages=counts["packages"],
        conditions={k.split(":", 1)[1]: v for k, v in sorted(counts.items()) if k.startswith("condition:")},
        package_types={k.split(":", 1)[1]: v for k, v in sorted(counts.items()) if k.startswith("type:")},
        misplaced=counts["misplaced"],
    )
    meta = {
        "format": FORMAT,
        "mode": mode,
        "seed": seed,
        "camera_id": camera_id,
        "image_format": image_format,
        "config": config.model_dump(),
        "drift": drift_cfg.model_dump(),
        "counts": {
            "frames": frames,
            "packages": summary.packages,
            "conditions": summary.conditions,
            "package_types": summary.package_types,
            "misplaced": summary.misplaced,
        },
    }
    (out / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n")
    return summary


def _run(job: _Job, bounds: list[tuple[int, int]], workers: int) -> Iterator[list[dict[str, Any]]]:
    """Chunks' records in index order, rendered here or in `workers` spawned processes."""
    if workers <= 1:
        for start, stop in bounds:
            yield _render_chunk(job, start, stop)
        return
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        yield from pool.map(_render_chunk, *zip(*[(job, s, e) for s, e in bounds], strict=True))


class ImageDataset:
    """Random access to a written dataset: `ds[i]` → (BGR image, ground truth)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        meta_path = self.path / "dataset.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{self.path} is not a complete dataset (no dataset.json)")
        self.meta: dict[str, Any] = json.loads(meta_path.read_text())
        with (self.path / "annotations.jsonl").open() as f:
            self.records: list[dict[str, Any]] = [json.loads(line) for line in f]

    def __len__(self) -> int:
        return len(self.records)

    def truth(self, i: int) -> list[PackageTruth]:
        return [truth_from_dict(p) for p in self.records[i]["packages"]]

    def image(self, i: int) -> np.ndarray:
        img = cv2.imread(str(self.path / self.records[i]["file"]), cv2.IMREAD_COLOR)
        if img is None:
            raise FileNotFoundError(self.path / self.records[i]["file"])
        return img

    def __getitem__(self, i: int) -> tuple[np.ndarray, list[PackageTruth]]:
        return self.image(i), self.truth(i)

    def __iter__(self) -> Iterator[tuple[np.ndarray, list[PackageTruth]]]:
        for i in range(len(self)):
            yield self[i]

    def frame(self, i: int) -> Frame:
        """Record `i` as a Frame (for code written against the simulator's `render_iid`)."""
        rec = self.records[i]
        return Frame(rec["camera_id"], rec["index"], rec["timestamp"], self.image(i), self.truth(i))
