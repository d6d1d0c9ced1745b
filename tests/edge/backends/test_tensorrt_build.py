"""Everything around the TensorRT build that can run without TensorRT."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from contract.frames import Frame
from edge.backends.base import ModelFiles
from edge.backends.plan_store import BuildOptions, EngineBuildError, builder_for, ensure_plan
from edge.backends.tensorrt_build import (
    CalibrationBatches,
    TensorRTUnavailable,
    build_engine,
    make_entropy_calibrator,
    profile_shapes,
    require_tensorrt,
)
from model_lifecycle.sources import SimulatedFrames

HAS_TRT = importlib.util.find_spec("tensorrt") is not None
SMALL_INPUT = (128, 224)


@pytest.fixture(scope="module")
def sim_frames() -> list[Frame]:
    frames = SimulatedFrames(seed=123)
    return [frames(i) for i in range(8)]


@pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed here")
def test_missing_tensorrt_gives_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TensorRTUnavailable, match="TensorRT is not installed"):
        require_tensorrt()
    with pytest.raises(TensorRTUnavailable):
        build_engine(tmp_path / "m.onnx", tmp_path / "m.engine", SMALL_INPUT, BuildOptions())


@pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed here")
def test_an_edge_without_tensorrt_refuses_to_build_a_plan_and_says_why(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(
        '{"model": {"input_size": [128, 224]}, "score_threshold": 0.3, "iou_threshold": 0.5}'
    )
    (tmp_path / "model.onnx").write_bytes(b"graph")
    builder = builder_for("tensorrt")
    assert builder is not None and builder_for("onnxruntime") is None
    with pytest.raises(EngineBuildError, match="TensorRT is not installed"):
        ensure_plan(ModelFiles.read(tmp_path), "fp16", "cuda", 16, builder)
    assert not (tmp_path / "engines").exists()


def test_profile_shapes_cover_the_batch_range() -> None:
    assert profile_shapes((224, 384), (1, 8, 32)) == {
        "images": ((1, 3, 224, 384), (8, 3, 224, 384), (32, 3, 224, 384))
    }
    with pytest.raises(ValueError):
        profile_shapes((224, 384), (8, 4, 32))


def test_calibration_batches_are_full_preprocessed_batches(sim_frames: list[Frame]) -> None:
    batches = CalibrationBatches([f.image for f in sim_frames[:7]], SMALL_INPUT, 3)
    got = list(batches)
    assert len(batches) == len(got) == 2  # the tail frame is dropped
    assert all(
        b.shape == (3, 3, *SMALL_INPUT) and b.dtype == np.float32 and b.flags.c_contiguous for b in got
    )
    with pytest.raises(ValueError):
        CalibrationBatches([f.image for f in sim_frames[:2]], SMALL_INPUT, 3)


def test_entropy_calibrator_protocol_and_cache(tmp_path: Path, sim_frames: list[Frame]) -> None:
    """The calibrator against a stand-in for the tensorrt module (only its base class is used)."""

    class Base:
        def __init__(self) -> None:
            pass

    trt = SimpleNamespace(IInt8EntropyCalibrator2=Base)
    seen: list[np.ndarray] = []

    def to_host_pointer(batch: np.ndarray) -> tuple[int, np.ndarray]:
        seen.append(batch)
        return batch.ctypes.data, batch

    batches = CalibrationBatches([f.image for f in sim_frames[:4]], SMALL_INPUT, 2)
    cache = tmp_path / "calib.cache"
    calib = make_entropy_calibrator(trt, batches, cache, to_host_pointer)
    assert calib.get_batch_size() == 2
    ptrs = [calib.get_batch(["images"]) for _ in range(3)]
    assert ptrs[0] == [seen[0].ctypes.data] and ptrs[1] == [seen[1].ctypes.data] and ptrs[2] is None
    assert calib.read_calibration_cache() is None
    calib.write_calibration_cache(b"table")
    assert make_entropy_calibrator(trt, batches, cache, to_host_pointer).read_calibration_cache() == b"table"
