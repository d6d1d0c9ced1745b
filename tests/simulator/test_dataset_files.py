"""Datasets and videos written to disk read back as the frames the simulator rendered."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.sources import open_source
from simulator import ConveyorSimulator, SimConfig
from simulator.dataset import ImageDataset, write_dataset
from simulator.records import sidecar_path
from simulator.video import write_video


def _smooth_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference after a 5x5 box blur: lossy codecs drop the sensor noise."""
    return float(np.abs(cv2.blur(a, (5, 5)).astype(int) - cv2.blur(b, (5, 5)).astype(int)).mean())


def test_dataset_round_trip(tmp_path: Path, small: SimConfig) -> None:
    summary = write_dataset(tmp_path / "ds", 6, seed=31, config=small, drift="lighting", camera_id="cam-x")
    ds = ImageDataset(tmp_path / "ds")
    sim = ConveyorSimulator(small, seed=31, camera_id="cam-x", drift="lighting")
    assert len(ds) == 6 and ds.meta["seed"] == 31 and ds.meta["drift"]["name"] == "lighting"
    assert ds.meta["counts"]["packages"] == summary.packages == sum(len(t) for _, t in ds)
    for i, (image, truth) in enumerate(ds):
        expected = sim.render_iid(i)
        assert truth == expected.truth
        assert image.shape == (small.height, small.width, 3)
        assert _smooth_diff(image, expected.image) < 3  # JPEG loss only
    frame = ds.frame(2)
    assert frame.index == 2 and frame.camera_id == "cam-x"
    line = json.loads((tmp_path / "ds" / "annotations.jsonl").read_text().splitlines()[0])
    assert set(line) == {"file", "width", "height", "camera_id", "index", "timestamp", "packages"}
    assert set(line["packages"][0]) == {
        "box", "package_id", "sku", "package_type", "condition", "zone", "expected_zone"
    }  # fmt: skip


def test_parallel_generation_equals_serial(tmp_path: Path, small: SimConfig) -> None:
    write_dataset(tmp_path / "one", 8, seed=32, config=small, workers=1)
    write_dataset(tmp_path / "two", 8, seed=32, config=small, workers=2)
    for name in ("annotations.jsonl", "dataset.json"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    for image in sorted((tmp_path / "one" / "images").iterdir()):
        assert image.read_bytes() == (tmp_path / "two" / "images" / image.name).read_bytes()


def test_sequence_dataset_keeps_package_ids_across_frames(tmp_path: Path, small: SimConfig) -> None:
    write_dataset(tmp_path / "seq", 5, seed=33, config=small, mode="sequence", image_format="png")
    ds = ImageDataset(tmp_path / "seq")
    ids = [{t.package_id for t in ds.truth(i)} for i in range(len(ds))]
    assert ids[0] & ids[-1]
    assert ds.records[0]["file"].endswith(".png")


@pytest.mark.parametrize("suffix", [".mp4", ".avi"])
def test_video_round_trip_through_file_source(tmp_path: Path, small: SimConfig, suffix: str) -> None:
    path = tmp_path / f"clip{suffix}"
    n = write_video(path, 1.0, seed=34, config=small, camera_id="cam-v")
    assert n == 30 and sidecar_path(path).is_file()
    sim = ConveyorSimulator(small, seed=34, camera_id="cam-v")
    with open_source(path.resolve().as_uri(), "cam-v") as source:
        frames = list(source)
    assert len(frames) == n
    assert all(f.image.shape == (small.height, small.width, 3) for f in frames)
    expected = sim.render(17)
    assert frames[17].truth == expected.truth and frames[17].timestamp == expected.timestamp
    assert _smooth_diff(frames[17].image, expected.image) < 6


def test_video_without_sidecar_still_plays(tmp_path: Path, small: SimConfig) -> None:
    path = tmp_path / "bare.avi"
    write_video(path, 0.2, seed=35, config=small)
    sidecar_path(path).unlink()
    frames = list(open_source(f"file://{path}?start_time=100", "cam"))
    assert len(frames) == 6 and all(f.truth == [] for f in frames)
    assert frames[3].timestamp == pytest.approx(100 + 3 / 30)
