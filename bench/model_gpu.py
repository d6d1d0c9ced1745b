"""GPU inference of the detector: images/s and batch-1 latency, eager vs torch.compile vs CUDA graphs.

    python -m bench.model_gpu [--quick] [--models small,base] [--batch 256]

For each config and dtype: batch-1 latency (p50/p99 over timed iterations, CUDA events around
each call) and throughput at a large batch; the fraction of the bf16 dense matrix roofline
(ROOFLINE_TFLOPS, measured ~790 on an H100/H200 here) uses the analytic FLOP count of
`model_lifecycle.flops`. Weights are random (speed does not depend on them).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch

from bench._report import write_report
from edge.model.config import get_config
from edge.model.detector import PackageDetector
from model_lifecycle.flops import detector_flops

ROOFLINE_TFLOPS = 790.0
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def _time_calls(fn: Callable[[], object], iters: int) -> np.ndarray:
    """Per-call milliseconds, each bracketed by CUDA events."""
    out = np.empty(iters)
    for i in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        out[i] = start.elapsed_time(end)
    return out


def _cuda_graph(model: torch.nn.Module, x: torch.Tensor) -> Callable[[], object]:
    """Capture one forward on a static input; replay costs one launch."""
    static_x = x.clone()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            model(static_x)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        model(static_x)
    return graph.replay


def _runner(model: torch.nn.Module, mode: str, x: torch.Tensor) -> Callable[[], object]:
    if mode == "eager":
        return lambda: model(x)
    if mode == "compile":
        compiled = torch.compile(model, dynamic=False)
        return lambda: compiled(x)
    if mode == "cudagraph":
        return _cuda_graph(model, x)
    raise ValueError(mode)


def bench_one(name: str, dtype: str, mode: str, batch: int, iters: int) -> dict[str, float]:
    cfg = get_config(name)
    model = PackageDetector(cfg).cuda().eval().to(DTYPES[dtype])
    h, w = cfg.input_size
    flops = detector_flops(cfg)
    res: dict[str, float] = {}
    with torch.inference_mode():
        for b, n in ((1, iters), (batch, max(10, iters // 10))):
            x = torch.randn(b, 3, h, w, device="cuda", dtype=DTYPES[dtype])
            fn = _runner(model, mode, x)
            for _ in range(5):
                fn()
            torch.cuda.synchronize()
            ms = _time_calls(fn, n)
            if b == 1:
                res["b1_p50_ms"] = float(np.median(ms))
                res["b1_p99_ms"] = float(np.percentile(ms, 99))
            else:
                res["img_per_s"] = b / (float(np.median(ms)) / 1e3)
                res["roofline_frac"] = res["img_per_s"] * flops / (ROOFLINE_TFLOPS * 1e12)
    del model
    torch.cuda.empty_cache()
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="base only, fewer iterations")
    ap.add_argument("--models", default="small,base")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--iters", type=int, default=200)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("bench.model_gpu: skipped, this machine has no CUDA device (its figures come from a GPU run)")
        return
    torch.backends.cuda.matmul.allow_tf32 = True
    models = ["base"] if args.quick else args.models.split(",")
    iters = 50 if args.quick else args.iters
    plan = [("fp16", "eager"), ("bf16", "eager"), ("bf16", "compile"), ("bf16", "cudagraph")]
    if not args.quick:
        plan += [("fp16", "compile"), ("fp16", "cudagraph")]
    rows, metrics = [], {}
    for name in models:
        gflop = detector_flops(get_config(name)) / 1e9
        for dtype, mode in plan:
            t0 = time.perf_counter()
            r = bench_one(name, dtype, mode, args.batch, iters)
            key = f"{name}.{dtype}.{mode}"
            metrics.update({f"{key}.{k}": round(v, 4) for k, v in r.items()})
            rows.append(
                {
                    "model": name,
                    "GFLOP/img": round(gflop, 1),
                    "dtype": dtype,
                    "mode": mode,
                    "b1 p50 ms": f"{r['b1_p50_ms']:.2f}",
                    "b1 p99 ms": f"{r['b1_p99_ms']:.2f}",
                    f"img/s @b{args.batch}": f"{r['img_per_s']:.0f}",
                    "roofline": f"{100 * r['roofline_frac']:.1f} %",
                    "wall s": f"{time.perf_counter() - t0:.0f}",
                }
            )
            print(rows[-1], flush=True)
    baseline = {
        f"{n}.roofline_img_per_s": ROOFLINE_TFLOPS * 1e12 / detector_flops(get_config(n)) for n in models
    }
    print(f"\n{torch.cuda.get_device_name()} · torch {torch.__version__} · input 384x224\n")
    write_report("model_gpu", metrics, baseline, rows)


if __name__ == "__main__":
    main()
