"""CPU inference latency of the detector: torch FP32 vs ONNX Runtime FP32 vs ONNX Runtime INT8 (QDQ).

    python -m bench.model_cpu [--quick] [--threads 2] [--configs tiny,small,base] [--batches 1,8,32]

Each cell runs warm-up calls, then timed calls until `--min-iters` and `--seconds` are both
reached (at most `--max-iters`); p50/p99 are per call, ms/img is p50 over the batch. The edge
target is 2 cameras x 30 FPS on 2 cores: 16.7 ms per frame at most, so ms/img must sit well
below it. Weights are random (latency does not depend on them); INT8 is calibrated on
simulator frames exactly like `wv model export`.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import torch

from bench._report import write_report
from edge.backends import EngineSpec
from edge.backends.onnxruntime import OnnxRuntimeEngine
from edge.backends.torch import TorchEngine
from edge.model.config import get_config
from edge.model.detector import PackageDetector
from edge.model.preprocess import preprocess
from model_lifecycle.export import export_onnx
from model_lifecycle.flops import detector_flops
from model_lifecycle.quantize import FrameCalibrationReader, quantize_int8
from model_lifecycle.sources import calibration_images

FRAME_BUDGET_MS = 1000 / 60


def time_calls(fn: Callable[[], object], min_iters: int, max_iters: int, seconds: float) -> np.ndarray:
    for _ in range(2):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_iters and (len(times) < min_iters or time.perf_counter() - start < seconds):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return np.asarray(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny only, batches 1 and 8")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--configs", default="tiny,small,base")
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--input-size", default=None, help="HxW override, e.g. 192x320")
    ap.add_argument("--min-iters", type=int, default=5)
    ap.add_argument("--max-iters", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    logging.getLogger().setLevel(logging.WARNING)
    configs = ["tiny"] if args.quick else args.configs.split(",")
    batches = [1, 8] if args.quick else [int(b) for b in args.batches.split(",")]
    seconds = 2.0 if args.quick else args.seconds
    torch.set_num_threads(args.threads)
    calib = calibration_images(16)
    rows: list[dict[str, object]] = []
    metrics: dict[str, float] = {}
    baseline: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in configs:
            cfg = get_config(name)
            if args.input_size:
                cfg = cfg.with_input_size(*(int(v) for v in args.input_size.lower().split("x")))
            torch.manual_seed(0)
            model = PackageDetector(cfg).eval()
            fp32 = export_onnx(model, Path(tmp) / f"{name}.onnx")
            int8 = quantize_int8(
                fp32, Path(tmp) / f"{name}.int8.onnx", FrameCalibrationReader(calib, cfg.input_size)
            )
            # The edge's own engines; ORT workers spin here, as a box running inference alone would.
            ort = EngineSpec("onnxruntime", "fp32", threads=args.threads, spin=True)
            engines = {
                "torch fp32": TorchEngine.for_module(model).infer,
                "ORT fp32": OnnxRuntimeEngine.for_file(fp32, cfg.input_size, ort).infer,
                "ORT int8": OnnxRuntimeEngine.for_file(
                    int8, cfg.input_size, replace(ort, precision="int8")
                ).infer,
            }
            for b in batches:
                x = preprocess((calib * (b // len(calib) + 1))[:b], cfg.input_size)
                for engine, run in engines.items():
                    ms = time_calls(partial(run, x), args.min_iters, args.max_iters, seconds)
                    p50, p99 = float(np.median(ms)), float(np.percentile(ms, 99))
                    key = f"{name}.{engine.replace(' ', '_')}.b{b}"
                    metrics |= {f"{key}.p50_ms": round(p50, 2), f"{key}.p99_ms": round(p99, 2)}
                    metrics[f"{key}.ms_per_img"] = round(p50 / b, 2)
                    if engine == "torch fp32":
                        baseline[f"{name}.b{b}.torch_fp32_p50_ms"] = round(p50, 2)
                    rows.append(
                        {
                            "model": name,
                            "GFLOP/img": round(detector_flops(cfg) / 1e9, 1),
                            "engine": engine,
                            "batch": b,
                            "p50 ms": f"{p50:.1f}",
                            "p99 ms": f"{p99:.1f}",
                            "ms/img": f"{p50 / b:.1f}",
                            "vs torch": f"{baseline[f'{name}.b{b}.torch_fp32_p50_ms'] / p50:.2f}x",
                            "iters": len(ms),
                        }
                    )
                    print(rows[-1], flush=True)
    size = args.input_size or "{}x{}".format(*get_config(configs[0]).input_size)
    print(f"\n{args.threads} threads · input HxW {size} · edge budget {FRAME_BUDGET_MS:.1f} ms/frame\n")
    write_report(
        "model_cpu" if not args.input_size else f"model_cpu_{args.input_size}", metrics, baseline, rows
    )


if __name__ == "__main__":
    main()
