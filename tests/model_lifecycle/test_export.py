"""ONNX export parity with torch, INT8 static quantization and its parity report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch

from contract.frames import Frame
from edge.backends import EngineSpec
from edge.backends.onnxruntime import OnnxRuntimeEngine
from edge.model.config import get_config
from edge.model.detector import PackageDetector
from edge.model.postprocess import INPUT_NAME, OUTPUT_NAMES
from edge.model.preprocess import preprocess
from model_lifecycle.evaluate import parity
from model_lifecycle.export import export_onnx, max_abs_diff
from model_lifecycle.quantize import FrameCalibrationReader, activation_matmuls, quantize_int8

from .conftest import SMALL_INPUT


def test_onnx_matches_torch_at_any_batch(tmp_path: Path, sim_frames: list[Frame]) -> None:
    torch.manual_seed(0)
    model = PackageDetector(get_config("fallback").with_input_size(*SMALL_INPUT)).eval()
    path = export_onnx(model, tmp_path / "model.onnx")
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == [INPUT_NAME]
    assert [o.name for o in graph.output] == list(OUTPUT_NAMES)
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    for n in (1, 3):
        diffs = max_abs_diff(model, path, preprocess([f.image for f in sim_frames[:n]], SMALL_INPUT))
        assert max(diffs.values()) < 1e-4, diffs


def test_int8_quantization_of_tiny_and_the_parity_report(tmp_path: Path, sim_frames: list[Frame]) -> None:
    torch.manual_seed(0)
    model = PackageDetector(get_config("tiny").with_input_size(*SMALL_INPUT)).eval()
    fp32 = export_onnx(model, tmp_path / "model.onnx")
    calib = [f.image for f in sim_frames[:4]]
    int8 = quantize_int8(fp32, tmp_path / "model.int8.onnx", FrameCalibrationReader(calib, SMALL_INPUT, 2))
    ops = {n.op_type for n in onnx.load(str(int8)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert len(activation_matmuls(fp32)) == 2 * 12  # Q·Kᵀ and A·V per block stay float
    sizes = (fp32.stat().st_size, int8.stat().st_size)
    engine_fp32 = OnnxRuntimeEngine.for_file(fp32, SMALL_INPUT, EngineSpec("onnxruntime", "fp32"))
    engine_int8 = OnnxRuntimeEngine.for_file(int8, SMALL_INPUT, EngineSpec("onnxruntime", "int8"))
    report = parity(engine_fp32, engine_int8, sim_frames[4:], 0.3, sizes).as_dict()
    assert set(report) == {
        "frames", "fp32_map50", "int8_map50", "map_drop_points", "fp32_condition_accuracy",
        "int8_condition_accuracy", "condition_agreement", "fp32_mb", "int8_mb", "size_ratio", "passed",
    }  # fmt: skip
    assert report["frames"] == 4 and report["size_ratio"] > 2.5
    assert 0.0 <= report["condition_agreement"] <= 1.0
    out = engine_int8.infer(preprocess(calib[:1], SMALL_INPUT))
    assert all(np.isfinite(v).all() for v in out.values())
