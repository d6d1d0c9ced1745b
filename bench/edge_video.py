"""Edge throughput on encoded video: N cameras of H.264 decoded like live streams, the whole edge service.

    python -m bench.edge_video --cameras 1,2,3,4 --cores 2                            # CPU, INT8
    python -m bench.edge_video --engine torch --device cuda --precision fp16 \\
        --cameras 1,8,16,32,64,96 --cores 16                                         # one GPU
    python -m bench.edge_video ... --cameras 64 --processes 2                       # two edges, one GPU

The clips are the simulator's scene as `wv data video` records it (`simulator.video.write_video`),
transcoded to H.264 (libx264 through PyAV, one key frame a second, as cameras send) and cached
under `.local/bench/video/`. Each camera plays one clip (8 distinct scenes, repeated) paced at its
30 FPS and looped (`realtime=1`, `restart_at_end`), policy `latest`: like an RTSP camera, the clip
is decoded by FFmpeg in the edge's decode workers (`capture.workers`, one per `--per-worker`
cameras), never rendered in the process. Events go through the real outbox (fsync'd writes) to a
transport that acknowledges at once (publishing is measured by bench.edge_outbox). The latency
budget is 100 ms, the issue's goal; the straggler fallback is off (the primary is measured).

Per row: frames offered (decoded) and processed per second, dropped by reason, end-to-end p50/p99
(capture → event durably in the outbox), mean batch, GPU utilisation (nvidia-smi, sampled), the
memory of the edge and its workers (PSS, so shared frames count once) and per camera. The
baseline, measured in the same run: the raw engine's best images/s over batch sizes on
preprocessed frames (no decode, tracking or outbox); `ratio` = processed / that maximum.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench._report import write_report
from bench.edge_pipeline import pin_cores
from edge.backends.base import Engine, EngineSpec, load_engine
from edge.camera_registry import share_of
from edge.config import build_config
from edge.model.preprocess import preprocess
from edge.publish.base import Delivery, Transport
from edge.publish.wire import Outgoing
from edge.service import EdgeService
from wv.settings import PlatformSettings

FPS = 30
SCENES = 8
CLIP_SECONDS = 20.0


class AckAll(Transport):
    """A centre that acknowledges every batch at once (the outbox write stays real)."""

    name = "ack-all"

    def send(self, events: Sequence[Outgoing], timeout_s: float) -> Delivery:
        return Delivery(acked=[e.event_id for e in events])


def record_clips(folder: Path, width: int, height: int) -> list[Path]:
    """The simulator recorded to H.264 clips (cached); one per scene seed."""
    folder.mkdir(parents=True, exist_ok=True)
    clips = []
    for seed in range(1, SCENES + 1):
        out = folder / f"scene{seed}_{width}x{height}.mp4"
        if not out.exists():
            import av

            from simulator import SimConfig
            from simulator.video import write_video

            with tempfile.TemporaryDirectory() as tmp:
                raw = Path(tmp) / "raw.mp4"
                write_video(raw, CLIP_SECONDS, seed, config=SimConfig(width=width, height=height, fps=FPS))
                partial = out.with_suffix(".part.mp4")
                with av.open(str(raw)) as src, av.open(str(partial), "w") as dst:
                    stream = dst.add_stream("libx264", rate=FPS)
                    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
                    stream.options = {"preset": "veryfast", "g": str(FPS), "bf": "0"}
                    for frame in src.decode(video=0):
                        image = frame.to_ndarray(format="bgr24")
                        for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                            dst.mux(packet)
                    for packet in stream.encode():
                        dst.mux(packet)
                partial.rename(out)
        clips.append(out)
    return clips


def engine_max(
    model: Path, spec: EngineSpec, clip: Path, batches: Sequence[int], seconds: float
) -> dict[str, float]:
    """Best images/s of the bare engine over `batches` (frames prepared once, where the engine runs)."""
    import cv2

    cap = cv2.VideoCapture(str(clip))
    frames = [cap.read()[1] for _ in range(8)]
    cap.release()
    engine = load_engine(model, spec)
    best = parity(model, spec, engine, frames)
    for b in batches:
        batch = engine.prepare([frames[i % len(frames)] for i in range(b)])  # on the GPU for torch on CUDA
        engine.infer(batch)  # warm-up (kernel selection, allocation)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds or n < 3:
            engine.infer(batch)
            n += 1
        best[f"engine_b{b}_img_s"] = b * n / (time.perf_counter() - t0)
    engine.close()
    best["engine_max_img_s"] = max(v for k, v in best.items() if k.startswith("engine_b"))
    return best


def parity(model: Path, spec: EngineSpec, engine: Engine, frames: list[np.ndarray]) -> dict[str, float]:
    """Largest output difference of the engine's own preparation (GPU for torch on CUDA) against the
    CPU path, and of CUDA graphs against eager execution (0 where they are the same thing)."""
    cpu = preprocess(frames, engine.model.input_size)
    reference = engine.infer(cpu)
    out = {"parity_prepare_max_abs": _max_diff(engine.infer(engine.prepare(frames)), reference)}
    if spec.cuda_graphs:
        eager = load_engine(model, dataclasses.replace(spec, cuda_graphs=False))
        out["parity_graphs_max_abs"] = _max_diff(eager.infer(cpu), reference)
        eager.close()
    print({k: round(v, 5) for k, v in out.items()}, flush=True)
    return out


def _max_diff(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    return max(float(np.abs(a[k] - b[k]).max()) for k in a)


class GpuSampler:
    """nvidia-smi's utilisation, sampled while a configuration runs."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._proc: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if not shutil.which("nvidia-smi"):
            return
        self._proc = subprocess.Popen(
            ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-lms", "250"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            try:
                self.samples.append(float(line.strip()))
            except ValueError:
                continue

    def stop(self) -> float:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(5)
        return float(np.mean(self.samples)) if self.samples else float("nan")


def pss_mb(pids: Sequence[int]) -> float:
    """Proportional set size of the processes (shared memory counted once across them)."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def run_config(
    clips: list[str],
    spec: EngineSpec,
    model: Path,
    cameras: int,
    per_worker: int,
    seconds: float,
    warmup: float,
    max_batch: int,
    interval: int = 1,
    max_interval: int = 1,
    post_thread: bool = True,
    zero_copy: bool = True,
    ids: Sequence[int] | None = None,
    barrier: Any = None,
    latencies: list[float] | None = None,
) -> dict[str, float]:
    """One edge service with `cameras` cameras (`cam-<i>` for i in `ids`, default 0 on) measured for
    `seconds` after `warmup`; with `barrier`, the measurement starts when every edge sharing it is
    warm; `latencies` (when given) receives every end-to-end latency of the measurement."""
    workers = math.ceil(cameras / per_worker) if per_worker else 0
    with tempfile.TemporaryDirectory() as tmp:
        cfg = build_config(
            {
                "facility": "FAC-BENCH",
                "cameras": [
                    {
                        "id": f"cam-{i}",
                        "source": clips[i % len(clips)],
                        "policy": "latest",
                        "restart_at_end": True,
                        "interval": interval,
                    }
                    for i in (range(cameras) if ids is None else ids)
                ],
                "capture": {"workers": workers, "max_interval": max_interval},
                "engine": {
                    "name": spec.name,
                    "precision": spec.precision,
                    "device": spec.device,
                    "threads": spec.threads,
                    "cuda_graphs": spec.cuda_graphs,
                    "post_thread": post_thread,
                    "zero_copy": zero_copy,
                },
                "model": {"version": str(model), "fallback": None},
                "budgets": {
                    "latency_ms": 100,
                    "inference_deadline_ms": 60,
                    "max_batch": max_batch,
                    "fallback": False,
                },
                "outbox": {"path": f"{tmp}/outbox"},
                "metrics": {"port": 0},
                "redis_url": None,
                "state_dir": tmp,
            },
            PlatformSettings.load(),
            "bench",
        )
        service = EdgeService(cfg, transport=AckAll())
        service.start()
        gpu = GpuSampler()
        try:
            time.sleep(warmup)
            if barrier is not None:
                barrier.wait(timeout=120)
            p, hub = service.pipeline, service.hub

            def read() -> int:
                return sum(
                    c.reader.counters["frames"] - c.reader.counters["skipped_interval"]
                    for c in service.cameras.values()
                )

            offered0, done0, drops0 = read(), p.counters["frames"], Counter(hub.drops)
            batches0 = service.runner.counters["batches"]
            uploads0 = Counter(frame_uploads(spec))
            p.e2e_ms.clear()
            gpu.start()
            t0 = time.monotonic()
            time.sleep(seconds)
            elapsed = time.monotonic() - t0
            util = gpu.stop()
            lat = np.array(p.e2e_ms)
            if latencies is not None:
                latencies.extend(lat.tolist())
            offered, done = read() - offered0, p.counters["frames"] - done0
            auto_interval = 1 + p.interval.extra if p.interval is not None else 1
            drops = Counter(hub.drops)
            drops.subtract(drops0)
            by_reason: Counter[str] = Counter()
            for (_cam, reason), n in drops.items():
                by_reason[reason] += n
            batches = service.runner.counters["batches"] - batches0
            uploads = Counter(frame_uploads(spec))
            uploads.subtract(uploads0)
            reg = service.metrics.registry
            stages = {}
            for stage in ("decode", "queue", "preprocess", "infer", "track", "decide", "publish"):
                total = reg.get_sample_value("wv_edge_stage_seconds_sum", {"stage": stage}) or 0.0
                count = reg.get_sample_value("wv_edge_stage_seconds_count", {"stage": stage}) or 1.0
                stages[f"stage_{stage}_ms"] = 1000 * total / count
            pids = [os.getpid()] + [
                w.process.pid for w in (service.decoders.workers if service.decoders else [])
            ]
            memory = pss_mb(pids)
        finally:
            service.shutdown(drain_timeout_s=2)
    return {
        "workers": workers,
        "offered_fps": offered / elapsed,
        "fps": done / elapsed,
        "drop_pct": 100.0 * sum(by_reason.values()) / max(offered, 1),
        "stale_pct": 100.0 * by_reason["stale"] / max(offered, 1),
        "over_budget_pct": 100.0 * by_reason["over_budget"] / max(offered, 1),
        "p50_ms": float(np.percentile(lat, 50)) if lat.size else float("nan"),
        "p99_ms": float(np.percentile(lat, 99)) if lat.size else float("nan"),
        "batch_mean": done / max(batches, 1),
        "gpu_util_pct": util,
        "memory_mb": memory,
        "post_ms_per_batch": service.controller.post_ms,
        "direct_upload_pct": 100.0 * uploads["direct"] / max(uploads["direct"] + uploads["staged"], 1),
        "batches_per_s": batches / elapsed,
        "auto_interval": auto_interval,
        **stages,
    }


def _edge_process(results: Any, barrier: Any, kwargs: dict[str, Any]) -> None:
    """A child process: one edge of a split run; sends back its row and its latencies."""
    latencies: list[float] = []
    try:
        row = run_config(**kwargs, barrier=barrier, latencies=latencies)
    except BaseException as exc:  # the parent reports it instead of waiting for ever
        barrier.abort()
        results.put((None, repr(exc)))
        raise
    results.put((row, latencies))


def run_split(processes: int, cameras: int, **kwargs: Any) -> dict[str, float]:
    """`cameras` shared out over `processes` edge processes on the same GPU, measured over the same
    seconds: the single edge's per-frame Python (tracking, decisions, events) runs on one
    interpreter, so a box with more cameras than one edge keeps up with runs one edge per group
    of cameras, each with its own outbox, as DeepStream runs one pipeline per group of streams.
    Each edge takes the cameras its share of the registry would (`share_of`, so as uneven as a
    deployment's: 64 cameras over 2 edges are 30 + 34). Rates and drops add up; p50/p99 are over
    every frame of every edge."""
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    barrier = ctx.Barrier(processes)
    shares = [[i for i in range(cameras) if share_of(f"cam-{i}", processes) == k] for k in range(processes)]
    if not all(shares):
        raise SystemExit(f"{cameras} cameras leave a share of {processes} empty: {[len(s) for s in shares]}")
    children = [
        ctx.Process(
            target=_edge_process,
            args=(results, barrier, {**kwargs, "cameras": len(ids), "ids": ids}),
            name=f"edge-{k}",
        )
        for k, ids in enumerate(shares)
    ]
    for child in children:
        child.start()
    rows, latencies = [], []
    for _ in children:
        row, lat = results.get(timeout=600)
        if row is None:
            raise RuntimeError(f"an edge process failed: {lat}")
        rows.append(row)
        latencies.extend(lat)
    for child in children:
        child.join(30)
    offered = sum(r["offered_fps"] for r in rows)
    lat = np.array(latencies)

    def weighted(key: str) -> float:
        return sum(r[key] * r["offered_fps"] for r in rows) / max(offered, 1e-9)

    combined = {
        "workers": sum(r["workers"] for r in rows),
        "offered_fps": offered,
        "fps": sum(r["fps"] for r in rows),
        "drop_pct": weighted("drop_pct"),
        "stale_pct": weighted("stale_pct"),
        "over_budget_pct": weighted("over_budget_pct"),
        "p50_ms": float(np.percentile(lat, 50)) if lat.size else float("nan"),
        "p99_ms": float(np.percentile(lat, 99)) if lat.size else float("nan"),
        "batch_mean": sum(r["fps"] for r in rows) / max(sum(r["batches_per_s"] for r in rows), 1e-9),
        "batches_per_s": sum(r["batches_per_s"] for r in rows),
        "gpu_util_pct": max(r["gpu_util_pct"] for r in rows),  # one GPU, sampled by each edge
        "memory_mb": sum(r["memory_mb"] for r in rows),
        "processes": processes,
        "largest_share": max(len(ids) for ids in shares),
    }
    for key in rows[0]:
        if key.startswith(("stage_", "post_", "direct_")):
            combined[key] = weighted(key)
    return combined


def frame_uploads(spec: EngineSpec) -> Counter[str]:
    """Frames the GPU copied straight from shared memory (direct) or through a pinned buffer."""
    if spec.name != "torch" or not spec.device.startswith("cuda"):
        return Counter()
    from edge.backends.torch_device import cuda_host_pins

    return cuda_host_pins().counters


def _variant(args: argparse.Namespace) -> str:
    """What the row ran with beyond the defaults."""
    notes = [f"interval {args.interval}"] if args.interval != 1 else []
    if args.max_interval != 1:
        notes.append(f"automatic interval up to {args.max_interval}")
    if args.one_thread:
        notes.append("one loop thread")
    if args.no_zero_copy:
        notes.append("frames copied on the CPU")
    if args.switch_interval is not None:
        notes.append(f"switch interval {args.switch_interval * 1000:g} ms")
    if args.processes > 1:
        notes.append(f"{args.processes} edge processes")
    return f" ({', '.join(notes)})" if notes else ""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--engine", default="onnxruntime")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default=None, help="default int8 (CPU) or fp16 (CUDA)")
    parser.add_argument("--cameras", default="1,2,3,4")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=6.0)
    parser.add_argument(
        "--per-worker", type=int, default=8, help="cameras per decode process (0: in-process)"
    )
    parser.add_argument("--max-batch", type=int, default=None, help="default 16 (CPU) or 256 (CUDA)")
    parser.add_argument(
        "--engine-batches", default=None, help="raw engine batch sizes; default 1,2,4 / 1..256"
    )
    parser.add_argument("--model", type=Path, default=Path("models/default"))
    parser.add_argument("--cores", type=int, default=2, help="CPU cores to pin the process to")
    parser.add_argument("--size", default="640x360", help="frame size of the clips")
    parser.add_argument("--quick", action="store_true", help="8 s per configuration")
    parser.add_argument("--cuda-graphs", action="store_true", help="engine.cuda_graphs (torch on CUDA)")
    parser.add_argument("--interval", type=int, default=1, help="infer every k-th frame of each camera")
    parser.add_argument(
        "--max-interval",
        type=int,
        default=1,
        help=(
            "capture.max_interval: under load, infer every k-th frame, k up to this "
            "(default 1: off, unlike the edge's default 3, so rows compare with earlier ones)"
        ),
    )
    parser.add_argument(
        "--one-thread",
        action="store_true",
        help="engine.post_thread: false (the inference loop tracks and writes on its own thread)",
    )
    parser.add_argument(
        "--no-zero-copy",
        action="store_true",
        help="engine.zero_copy: false (frames copied into a pinned buffer instead of read from the slots)",
    )
    parser.add_argument(
        "--switch-interval",
        type=float,
        default=None,
        help="sys.setswitchinterval of the process the edge runs in (default 0.005 s)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="share each row's cameras over this many edge processes on the same GPU (run_split)",
    )
    parser.add_argument(
        "--rendered",
        action="store_true",
        help="cameras render the simulator in the workers instead of decoding",
    )
    args = parser.parse_args()
    cores = pin_cores(args.cores)
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)
    cuda = args.device.startswith("cuda")
    precision = args.precision or ("fp16" if cuda else "int8")
    threads = None if cuda else len(cores)
    spec = EngineSpec(args.engine, precision, args.device, threads, cuda_graphs=args.cuda_graphs)
    width, height = (int(v) for v in args.size.split("x"))
    state = Path(os.environ.get("WV_STATE_DIR", ".local"))
    clips = record_clips((state / "bench" / "video").resolve(), width, height)
    sources = [f"file://{c}?realtime=1" for c in clips]
    if args.rendered:
        sources = [
            f"synthetic://seed={i}&fps={FPS}&width={width}&height={height}" for i in range(1, SCENES + 1)
        ]
    seconds = 8.0 if args.quick else args.seconds
    max_batch = args.max_batch or (256 if cuda else 16)
    batches = [int(b) for b in (args.engine_batches or ("1,8,32,64,128,256" if cuda else "1,2,4")).split(",")]
    baseline = engine_max(args.model, spec, clips[0], batches, 2.0 if cuda else 3.0)
    top = baseline["engine_max_img_s"]
    rows, metrics = [], {"switch_interval_s": sys.getswitchinterval()}
    for n in (int(c) for c in args.cameras.split(",")):
        config = {
            "clips": sources,
            "spec": spec,
            "model": args.model,
            "per_worker": args.per_worker,
            "seconds": seconds,
            "warmup": args.warmup,
            "max_batch": max_batch,
            "interval": args.interval,
            "max_interval": args.max_interval,
            "post_thread": not args.one_thread,
            "zero_copy": not args.no_zero_copy,
        }
        if args.processes > 1:
            r = run_split(args.processes, n, **config)
        else:
            r = run_config(cameras=n, **config)
        load = os.getloadavg()[0]
        r["load_1m"] = load
        metrics.update({f"{n}cam_{k}": v for k, v in r.items()})
        rows.append(
            {
                "cameras @30 FPS": f"{n}{_variant(args)}",
                "decode workers": int(r["workers"]),
                "processed of offered frames/s": f"{r['fps']:.1f} of {r['offered_fps']:.1f}",
                "dropped": f"{r['drop_pct']:.1f} % (stale {r['stale_pct']:.1f}, over budget {r['over_budget_pct']:.1f})",
                "e2e p50 ms": f"{r['p50_ms']:.1f}",
                "e2e p99 ms": f"{r['p99_ms']:.1f}",
                "mean batch": f"{r['batch_mean']:.1f}",
                "GPU util": f"{r['gpu_util_pct']:.0f} %" if cuda else "-",
                "memory MB (per camera)": f"{r['memory_mb']:.0f} ({r['memory_mb'] / n:.1f})",
                "ratio to raw engine max": f"{r['fps'] / top:.3f}",
                "load 1m": f"{load:.1f}",
            }
        )
        print(
            rows[-1],
            {k: round(v, 2) for k, v in r.items() if k.startswith(("stage_", "post_", "direct_", "auto_"))},
            flush=True,
        )
    per_batch = ", ".join(f"b{b} {baseline['engine_b' + str(b) + '_img_s']:.0f}" for b in batches)
    print(
        f"engine {spec.name} {precision} on {args.device}{' (CUDA graphs)' if args.cuda_graphs else ''}; raw engine max {top:.0f} img/s ({per_batch}); "
        f"cores pinned: {cores}; {seconds:.0f} s per row after {args.warmup:.0f} s warm-up"
    )
    write_report("edge_video", metrics, baseline, rows)


if __name__ == "__main__":
    main()
