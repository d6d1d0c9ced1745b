"""TensorRT's logic without TensorRT: an engine is found only for its own model, GPU and TensorRT
version, batches past the profile are cut to it, and fp16 outputs are understood."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge.backends.base import ModelFiles, ModelLoadError
from edge.backends.plan_store import BuildTarget, find_plan
from edge.backends.tensorrt_plan import chunks, engine_path, engine_prefix, host_dtype, model_digest

H100, TRT = "NVIDIA H100 80GB HBM3", "10.9.0"


def find_engine(model: ModelFiles, precision: str, gpu: str, trt: str) -> Path:
    return find_plan(model, precision, BuildTarget(gpu, trt))


def version(tmp_path: Path, graph: bytes) -> ModelFiles:
    path = tmp_path / "v7"
    path.mkdir(exist_ok=True)
    config = {"model": {"input_size": [224, 384]}, "score_threshold": 0.3, "iou_threshold": 0.5}
    (path / "config.json").write_text(json.dumps(config))
    (path / "model.onnx").write_bytes(graph)
    return ModelFiles.read(path)


def build(model: ModelFiles, gpu: str, trt: str, max_batch: int) -> Path:
    """What a build on that GPU stores in the model store (the bytes do not matter here)."""
    prefix = engine_prefix(model_digest(model.path, "model.onnx"), "fp16", gpu, trt)
    path = engine_path(model.path, prefix, max_batch)
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(b"engine")
    return path


def test_the_engine_of_this_model_gpu_and_tensorrt_is_found_and_no_other(tmp_path: Path):
    model = version(tmp_path, b"graph v7")
    build(model, H100, TRT, 32)
    largest = build(model, H100, TRT, 64)
    build(model, "NVIDIA L4", TRT, 256)
    build(model, H100, "10.3.0", 256)
    assert find_engine(model, "fp16", H100, TRT) == largest
    with pytest.raises(ModelLoadError, match=r"NVIDIA A100.*TensorRT 10\.9\.0.*build-engine"):
        find_engine(model, "fp16", "NVIDIA A100-SXM4-40GB", TRT)
    with pytest.raises(ModelLoadError):
        find_engine(model, "int8", H100, TRT)


def test_a_retrained_model_under_the_same_name_never_loads_the_old_engine(tmp_path: Path):
    build(version(tmp_path, b"graph v7"), H100, TRT, 64)
    retrained = version(tmp_path, b"graph v7, fine-tuned")
    with pytest.raises(ModelLoadError):
        find_engine(retrained, "fp16", H100, TRT)
    (retrained.path / "model.fp16.engine").write_bytes(b"engine")  # unkeyed: nothing says what built it
    with pytest.raises(ModelLoadError, match="build-engine"):
        find_engine(retrained, "fp16", H100, TRT)


def test_batches_past_the_profile_run_in_chunks_and_outputs_keep_their_dtype():
    assert chunks(70, 32) == [slice(0, 32), slice(32, 64), slice(64, 70)]
    assert chunks(8, 32) == [slice(0, 8)] and chunks(0, 32) == []
    with pytest.raises(ValueError):
        chunks(8, 0)
    assert host_dtype("HALF") is np.float16 and host_dtype("FLOAT") is np.float32
    with pytest.raises(ValueError, match="FP8"):
        host_dtype("FP8")
