"""Edge pipeline latency and throughput: live cameras at 30 FPS through the whole edge service.

    python -m bench.edge_pipeline [--quick]                                   # CPU, ONNX Runtime, INT8 + FP32
    python -m bench.edge_pipeline --engine torch --device cuda --precisions fp16 --cameras 1,2,3,8
    python -m bench.edge_pipeline --quick --precisions int8 --cameras 2 --slow-primary 0:0,0.05:300,0.2:300

Each run starts `EdgeService` with N synthetic cameras paced at 30 FPS (policy `latest`, as live
cameras), the default model, the configured broker (unique topics) and no Redis, pinned to 2 CPU
cores. After a warm-up it records every processed frame's end-to-end latency (capture → event
durably in the outbox) and counts frames offered, processed and dropped. Rendering the synthetic
cameras runs in the same process and costs CPU like decoding real streams would. The baseline is
the raw engine: p50 of one batch-of-1 inference on the same model, measured in the same run.

`--slow-primary SHARE:DELAY_MS[,…]` adds, per camera count and pair, a row whose primary engine
sleeps DELAY_MS on a random SHARE of its calls (`bench.fixtures.slow_primary`, an injected
straggler; `0:0` for none) with the shipped `models/fallback` as the fallback: the share of
batches the fallback answered, the share of those the primary's late result superseded afterwards,
the share of batches whose answer is the primary's in the end, and the latency of what was
emitted first.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from bench._report import write_report
from bench.fixtures.slow_primary import SlowPrimary
from edge.backends.base import EngineSpec, load_engine
from edge.config import build_config
from edge.model.preprocess import preprocess
from edge.service import EdgeService
from edge.sources.factory import open_source
from wv.settings import PlatformSettings

FPS = 30


def pin_cores(n: int) -> list[int]:
    cores = sorted(os.sched_getaffinity(0))[:n]
    os.sched_setaffinity(0, cores)
    return cores


def engine_baseline(model: Path, spec: EngineSpec, reps: int) -> float:
    """p50 ms of one raw batch-of-1 inference (no capture, decode, tracking or outbox)."""
    engine = load_engine(model, spec)
    with open_source("synthetic://seed=1&realtime=0", "bench") as source:
        batch = preprocess([source.read().image], engine.model.input_size)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        engine.infer(batch)
        times.append((time.perf_counter() - t0) * 1000)
    engine.close()
    return statistics.median(times)


def run_pipeline(
    model: Path,
    spec: EngineSpec,
    cameras: int,
    seconds: float,
    warmup: float,
    fallback: Path | None,
    slow: tuple[float, float] | None = None,
) -> dict[str, float]:
    """One row; ``slow`` = (share of calls, seconds) makes the primary an injected straggler."""
    settings = PlatformSettings.load()
    if slow is not None:
        SlowPrimary.share, SlowPrimary.delay_s = slow
    with tempfile.TemporaryDirectory() as tmp:
        cfg = build_config(
            {
                "facility": "FAC-BENCH",
                "cameras": [
                    {"id": f"cam-{i}", "source": f"synthetic://seed={i + 1}&fps={FPS}"}
                    for i in range(cameras)
                ],
                "engine": {
                    "name": SlowPrimary.name if slow else spec.name,
                    "precision": spec.precision,
                    "device": spec.device,
                    "threads": spec.threads,
                    "spin": spec.spin,
                },
                "capture": {"max_interval": 1},  # every frame inferred, as in the recorded rows
                "model": {"version": str(model), "fallback": str(fallback) if fallback else None},
                "transport": {"topic_prefix": f"bench.{uuid.uuid4().hex[:8]}."},
                "outbox": {"path": f"{tmp}/outbox"},
                "metrics": {"port": 0},
                "redis_url": None,
                "state_dir": tmp,
            },
            settings,
            "bench",
        )
        service = EdgeService(cfg)
        service.start()
        try:
            time.sleep(warmup)
            p = service.pipeline
            offered0 = sum(c.reader.counters["frames"] for c in service.cameras.values())
            done0, drops0 = p.counters["frames"], sum(service.hub.drops.values())
            batches0, fallback0 = (
                service.runner.counters["batches"],
                service.runner.counters["fallback_emitted"],
            )
            superseded0 = p.counters["batches_superseded"]
            p.e2e_ms.clear()
            t0 = time.monotonic()
            time.sleep(seconds)
            elapsed = time.monotonic() - t0
            lat = np.array(p.e2e_ms)
            offered = sum(c.reader.counters["frames"] for c in service.cameras.values()) - offered0
            done = p.counters["frames"] - done0
            dropped = sum(service.hub.drops.values()) - drops0
            batches = service.runner.counters["batches"] - batches0
            fallbacks = service.runner.counters["fallback_emitted"] - fallback0
            superseded = p.counters["batches_superseded"] - superseded0
            reg = service.metrics.registry
            infer_sum = reg.get_sample_value("wv_edge_stage_seconds_sum", {"stage": "infer"}) or 0.0
            infer_n = reg.get_sample_value("wv_edge_stage_seconds_count", {"stage": "infer"}) or 1.0
        finally:
            service.shutdown(drain_timeout_s=2)
    return {
        "p50_ms": float(np.percentile(lat, 50)) if lat.size else float("nan"),
        "p99_ms": float(np.percentile(lat, 99)) if lat.size else float("nan"),
        "fps": done / elapsed,
        "offered_fps": offered / elapsed,
        "drop_pct": 100.0 * dropped / max(offered, 1),
        "batch_mean": done / max(batches, 1),
        "infer_ms_per_frame": 1000 * infer_sum / infer_n,
        "fallback_pct": 100.0 * fallbacks / max(batches, 1),
        "superseded_pct": 100.0 * superseded / fallbacks if fallbacks else 0.0,
        "primary_final_pct": 100.0 * (batches - fallbacks + superseded) / max(batches, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="8 s per configuration (< 1 min per precision)")
    parser.add_argument("--engine", default="onnxruntime")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--precisions", default=None, help="comma-separated; default int8,fp32 (CPU) or fp16 (CUDA)"
    )
    parser.add_argument("--cameras", default="1,2,3")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--model", type=Path, default=Path("models/default"))
    parser.add_argument("--fallback", type=Path, default=None, help="straggler fallback model version dir")
    parser.add_argument("--cores", type=int, default=2, help="CPU cores to pin the process to")
    parser.add_argument("--spin", action="store_true", help="ONNX Runtime workers spin (engine.spin)")
    parser.add_argument(
        "--slow-primary",
        default=None,
        metavar="SHARE:DELAY_MS[,...]",
        help="also run each camera count with a primary that sleeps DELAY_MS on SHARE of its calls "
        "(CPU engines; fallback: --fallback, else models/fallback)",
    )
    args = parser.parse_args()
    slow = [_slow(pair) for pair in args.slow_primary.split(",")] if args.slow_primary else []
    fallback_of_slow = args.fallback or Path("models/fallback")
    cores = pin_cores(args.cores)
    seconds = 8.0 if args.quick else args.seconds
    precisions = (args.precisions or ("fp16" if args.device.startswith("cuda") else "int8,fp32")).split(",")
    rows, metrics, baseline = [], {}, {}
    for precision in precisions:
        threads = len(cores) if args.device == "cpu" else None
        spec = EngineSpec(args.engine, precision, args.device, threads, args.spin)
        raw = engine_baseline(args.model, spec, 20 if args.quick else 100)
        baseline[f"{precision}_engine_batch1_p50_ms"] = raw
        counts = [int(c) for c in args.cameras.split(",")]
        runs: list[tuple[int, tuple[float, float] | None]] = [(n, None) for n in counts]
        runs += [(n, s) for s in slow for n in counts]
        for n, straggler in runs:
            fallback = fallback_of_slow if straggler else args.fallback
            r = run_pipeline(args.model, spec, n, seconds, 3.0, fallback, straggler)
            key = f"{precision}_{n}cam" + (
                f"_slow{straggler[0]:g}x{straggler[1] * 1000:g}ms" if straggler else ""
            )
            metrics.update({f"{key}_{k}": v for k, v in r.items()})
            injected = _injected(straggler)
            rows.append(
                {
                    "engine": f"{args.engine} {precision} ({args.device}{', spin' if args.spin else ''}{injected})",
                    "cameras @30 FPS": n,
                    "e2e p50 ms": f"{r['p50_ms']:.1f}",
                    "e2e p99 ms": f"{r['p99_ms']:.1f}",
                    "processed frames/s": f"{r['fps']:.1f} of {r['offered_fps']:.1f}",
                    "dropped (latest)": f"{r['drop_pct']:.1f} %",
                    "mean batch": f"{r['batch_mean']:.2f}",
                    "infer ms/batch": f"{r['infer_ms_per_frame']:.1f}",
                    "raw engine p50 ms (b=1)": f"{raw:.1f}",
                    "fallback": f"{r['fallback_pct']:.1f} %",
                    "superseded": f"{r['superseded_pct']:.0f} %" if r["fallback_pct"] else "–",
                    "primary's in the end": f"{r['primary_final_pct']:.0f} %",
                }
            )
    load = os.getloadavg()[0]
    print(f"cores pinned: {cores}; 1-min load average at the end: {load:.2f}; {seconds:.0f} s per row")
    metrics["load_average_1m"] = load
    write_report("edge_pipeline", metrics, baseline, rows)


def _injected(straggler: tuple[float, float] | None) -> str:
    if straggler is None:
        return ""
    share, delay_s = straggler
    if share == 0:
        return ", fallback on, no injected stall"
    return f", fallback on, primary slow on {share:.0%} × {delay_s * 1000:.0f} ms"


def _slow(value: str) -> tuple[float, float]:
    """``SHARE:DELAY_MS`` → (share, seconds)."""
    try:
        share, delay_ms = (float(v) for v in value.split(":"))
    except ValueError:
        raise SystemExit(f"--slow-primary {value!r}: expected SHARE:DELAY_MS, e.g. 0.2:300") from None
    if not 0 <= share <= 1 or delay_ms < 0:
        raise SystemExit(
            f"--slow-primary {value!r}: SHARE in [0, 1], DELAY_MS >= 0 (0:0: the fallback, no stall)"
        )
    return share, delay_ms / 1000


if __name__ == "__main__":
    main()
