"""ONNX export of the detector (opset 17, dynamic batch) and torch-vs-ONNX parity.

Graph contract (the same for ONNX Runtime and the TensorRT builder):

- input  `images`      float32 (batch, 3, H, W), from `preprocess.preprocess` (H, W in config.json);
- output `objectness`  float32 (batch, 1, H/16, W/16), logits;
- output `boxes`       float32 (batch, 4, H/16, W/16), normalised x1, y1, x2, y2 per cell;
- output `condition`   float32 (batch, 5, H/16, W/16), logits over `contract.frames.CONDITIONS`;
- output `embedding`   float32 (batch, E, H/16, W/16), pooled per box in `postprocess.decode`.

The exporter is torch's TorchScript-based one (`dynamo=False`): it needs no onnxscript and
turns `scaled_dot_product_attention` into plain MatMul/Softmax nodes that ORT fuses and quantizes.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from contract.frames import Frame
from edge.backends import EngineSpec, load_engine
from edge.backends.onnxruntime import OnnxRuntimeEngine
from edge.backends.torch import TorchEngine
from edge.model.detector import PackageDetector
from edge.model.postprocess import INPUT_NAME, OUTPUT_NAMES

OPSET = 17


class _TupleOutputs(nn.Module):
    """ONNX outputs are positional: fix their order to OUTPUT_NAMES."""

    def __init__(self, model: PackageDetector) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        out = self.model(images)
        return tuple(out[name] for name in OUTPUT_NAMES)


def export_onnx(model: PackageDetector, path: Path | str, opset: int = OPSET) -> Path:
    """Write an FP32 ONNX graph with a dynamic batch axis and check it."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.float().cpu().eval()
    h, w = model.cfg.input_size
    dummy = torch.randn(2, 3, h, w)
    axes = {name: {0: "batch"} for name in (INPUT_NAME, *OUTPUT_NAMES)}
    # The traced shapes are static except the batch, so the tracer's shape-to-int warnings are moot.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            _TupleOutputs(model),
            (dummy,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_axes=axes,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    onnx.checker.check_model(str(path))
    return path


def max_abs_diff(model: PackageDetector, onnx_path: Path | str, batch: np.ndarray) -> dict[str, float]:
    """Largest |torch - ONNX Runtime| per output on one batch (FP32 parity of the export)."""
    ref = TorchEngine.for_module(model).infer(batch)
    got = OnnxRuntimeEngine.for_file(
        onnx_path, model.cfg.input_size, EngineSpec("onnxruntime", "fp32")
    ).infer(batch)
    return {k: float(np.abs(ref[k] - got[k]).max()) for k in OUTPUT_NAMES}


def export_version(
    version_dir: Path | str,
    calibration_frames: int = 64,
    parity_frames: int = 0,
    record: bool = True,
    calibration: Sequence[np.ndarray] | None = None,
    parity_set: Sequence[Frame] | None = None,
) -> dict[str, Any]:
    """Build a version's `model.onnx` and `model.int8.onnx` (what the edge runs) from its weights.

    INT8 is calibrated on `calibration_frames` frames of `sources.CALIBRATION_SEED`. The report
    holds the file sizes and the torch-vs-ONNX difference; with `parity_frames` it adds the INT8
    vs FP32 parity on that many held-out frames and, with `record`, stores it as `parity` in
    metrics.json (a build of a committed version checks parity without rewriting its card).
    A model trained on other data passes its own `calibration` images (BGR frames) and `parity_set`
    (labelled frames, e.g. its validation side) instead of the simulator's.
    """
    from edge.model.preprocess import preprocess
    from edge.model.version import load_detector, read_version, write_metrics
    from model_lifecycle.evaluate import parity
    from model_lifecycle.quantize import FrameCalibrationReader, quantize_int8
    from model_lifecycle.sources import calibration_images, heldout_frames

    version = read_version(version_dir)
    model = load_detector(version.path)
    export_onnx(model, version.onnx_path)
    calib = list(calibration) if calibration is not None else calibration_images(calibration_frames)
    diffs = max_abs_diff(model, version.onnx_path, preprocess(calib[:4], version.input_size))
    quantize_int8(
        version.onnx_path, version.int8_onnx_path, FrameCalibrationReader(calib, version.input_size)
    )
    sizes = (version.onnx_path.stat().st_size, version.int8_onnx_path.stat().st_size)
    report: dict[str, Any] = {
        "calibration_frames": len(calib),
        "fp32_mb": round(sizes[0] / 1e6, 2),
        "int8_mb": round(sizes[1] / 1e6, 2),
        "torch_vs_onnx_max_abs_diff": {k: float(np.format_float_scientific(v, 2)) for k, v in diffs.items()},
    }
    if parity_frames or parity_set is not None:
        fp32 = load_engine(version.path, EngineSpec("onnxruntime", "fp32"), warmup=False)
        int8 = load_engine(version.path, EngineSpec("onnxruntime", "int8"), warmup=False)
        frames = list(parity_set) if parity_set is not None else heldout_frames(parity_frames)
        report.update(parity(fp32, int8, frames, version.score_threshold, sizes).as_dict())
        if record:
            write_metrics(version.path, "parity", report)
    return report
