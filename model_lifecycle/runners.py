"""Minimal engine calls used by evaluation, export parity and the benchmarks.

A runner maps a preprocessed float32 batch to the dense maps (`postprocess.OUTPUT_NAMES`). The
edge service has its own backends in `edge/backends/`; these exist so `wv model eval/export` can
compare engines on exactly the same frames without the service.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from edge.model.postprocess import INPUT_NAME, OUTPUT_NAMES

Runner = Callable[[np.ndarray], dict[str, np.ndarray]]


def torch_runner(model: object, device: str = "cpu") -> Runner:
    import torch

    model = model.to(device).eval()  # type: ignore[attr-defined]

    @torch.inference_mode()
    def run(batch: np.ndarray) -> dict[str, np.ndarray]:
        out = model(torch.from_numpy(batch).to(device))  # type: ignore[operator]
        return {k: out[k].float().cpu().numpy() for k in OUTPUT_NAMES}

    return run


def ort_session(path: Path | str, threads: int | None = None) -> object:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def onnx_runner(path: Path | str, threads: int | None = None) -> Runner:
    sess = ort_session(path, threads)

    def run(batch: np.ndarray) -> dict[str, np.ndarray]:
        outs = sess.run(list(OUTPUT_NAMES), {INPUT_NAME: batch})  # type: ignore[attr-defined]
        return dict(zip(OUTPUT_NAMES, outs, strict=True))

    return run
