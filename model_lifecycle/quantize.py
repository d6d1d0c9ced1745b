"""INT8 ONNX by ONNX Runtime static quantization (QDQ), calibrated on held-out frames.

Weights are per-channel signed INT8, activations unsigned INT8 (U8S8: the fast path of ORT's
VNNI kernels on x86). Only MatMuls with constant weights (the linear layers) and convolutions are
quantized: the attention products Q·K and A·V have no constant operand and stay in float, which
is what keeps condition agreement with FP32 high. Calibration uses percentile ranges because ViT
activations have rare large outliers that would waste a min/max range.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from edge.model.postprocess import INPUT_NAME
from edge.model.preprocess import preprocess


class FrameCalibrationReader(CalibrationDataReader):
    """Feeds preprocessed calibration frames to the quantizer in fixed-size batches."""

    def __init__(
        self, frames: Sequence[np.ndarray], input_size: tuple[int, int], batch_size: int = 8
    ) -> None:
        if not frames:
            raise ValueError("calibration needs at least one frame")
        self.frames = frames
        self.input_size = input_size
        self.batch_size = batch_size
        self._iter: Iterator[dict[str, np.ndarray]] | None = None

    def batches(self) -> Iterator[dict[str, np.ndarray]]:
        for i in range(0, len(self.frames), self.batch_size):
            yield {INPUT_NAME: preprocess(self.frames[i : i + self.batch_size], self.input_size)}

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._iter is None:
            self._iter = self.batches()
        return next(self._iter, None)

    def rewind(self) -> None:
        self._iter = None


def activation_matmuls(path: Path | str) -> list[str]:
    """MatMul nodes without a constant operand (attention Q·K and A·V): kept in float.

    ORT's `MatMulConstBOnly` option does this for the QOperator format only, not for QDQ."""
    graph = onnx.load(str(path)).graph
    consts = {i.name for i in graph.initializer}
    consts |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    return [n.name for n in graph.node if n.op_type == "MatMul" and not consts.intersection(n.input)]


def quantize_int8(
    fp32_path: Path | str,
    int8_path: Path | str,
    reader: CalibrationDataReader,
    method: CalibrationMethod = CalibrationMethod.Percentile,
) -> Path:
    """FP32 ONNX -> INT8 QDQ ONNX (shape inference + graph optimisation first, as ORT recommends)."""
    int8_path = Path(int8_path)
    with tempfile.TemporaryDirectory() as tmp:
        prepped = Path(tmp) / "prepped.onnx"
        quant_pre_process(str(fp32_path), str(prepped), skip_symbolic_shape=False)
        quantize_static(
            str(prepped),
            str(int8_path),
            reader,
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul", "Conv", "Gemm"],
            nodes_to_exclude=activation_matmuls(prepped),
            calibrate_method=method,
            extra_options={"CalibPercentile": 99.999},
        )
    return int8_path
