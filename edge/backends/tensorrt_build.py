"""TensorRT plan builder (FP16 / INT8) for the exported ONNX graph: the edge's builder plugin
(``plan_store``), used when a promoted version has no plan for the edge's GPU yet, and by
``wv model build-engine``.

Written against TensorRT's public Python API (8.6 / 10.x: `Builder`, `OnnxParser`,
`IBuilderConfig`, `IInt8EntropyCalibrator2`, optimisation profiles). UNVERIFIED HERE: no TensorRT
package can be installed in this project's environments, so the build itself has never run; the
parts around it (calibration batches, profile shapes, the calibrator's protocol, the import gate,
where plans are stored and when they are built) are tested. INT8 calibration reads the same
held-out frames as the ONNX Runtime INT8 model; an edge has no such frames, so it builds FP16 plans
only and INT8 plans come from `wv model build-engine --precision int8` on the same GPU model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from edge.backends.base import EngineUnavailable
from edge.backends.plan_store import BuildOptions, BuildTarget, PlanBuilder, register_builder
from edge.model.postprocess import INPUT_NAME
from edge.model.preprocess import preprocess


class TensorRTUnavailable(EngineUnavailable):
    """TensorRT's Python package is missing; the ONNX Runtime or torch backends still work."""


def require_tensorrt() -> ModuleType:
    try:
        import tensorrt
    except ImportError as exc:
        raise TensorRTUnavailable(
            "TensorRT is not installed: building engines needs NVIDIA TensorRT >= 8.6 with its Python "
            "bindings on a CUDA host (e.g. `pip install tensorrt` on x86 with a matching CUDA, or "
            "JetPack on Jetson). Use the ONNX Runtime INT8 model (`model.int8.onnx`) meanwhile."
        ) from exc
    return tensorrt


def profile_shapes(
    input_size: tuple[int, int], batch_sizes: tuple[int, int, int]
) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """min/opt/max input shapes of the one optimisation profile, keyed by input name."""
    lo, opt, hi = batch_sizes
    if not 1 <= lo <= opt <= hi:
        raise ValueError(f"batch sizes must satisfy 1 <= min <= opt <= max, got {batch_sizes}")
    h, w = input_size
    return {INPUT_NAME: ((lo, 3, h, w), (opt, 3, h, w), (hi, 3, h, w))}


class CalibrationBatches:
    """Preprocessed calibration frames in full batches (TensorRT wants a constant batch size;
    the incomplete tail batch is dropped)."""

    def __init__(self, frames: Sequence[np.ndarray], input_size: tuple[int, int], batch_size: int) -> None:
        if len(frames) < batch_size:
            raise ValueError(f"{len(frames)} calibration frames is less than one batch of {batch_size}")
        self.frames = frames
        self.input_size = input_size
        self.batch_size = batch_size

    def __len__(self) -> int:
        return len(self.frames) // self.batch_size

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            chunk = self.frames[i * self.batch_size : (i + 1) * self.batch_size]
            yield np.ascontiguousarray(preprocess(chunk, self.input_size))


def cuda_pointer_from_torch() -> Callable[[np.ndarray], tuple[int, Any]]:
    """Copy a host batch to CUDA memory through torch; returns (device pointer, owner to keep alive)."""
    import torch

    def to_device(batch: np.ndarray) -> tuple[int, Any]:
        t = torch.from_numpy(batch).cuda()
        return t.data_ptr(), t

    return to_device


def make_entropy_calibrator(
    trt: ModuleType,
    batches: CalibrationBatches,
    cache_path: Path | str,
    to_device: Callable[[np.ndarray], tuple[int, Any]] | None = None,
) -> Any:
    """An `IInt8EntropyCalibrator2` over `batches`, caching its table at `cache_path`."""
    copy = to_device or cuda_pointer_from_torch()
    cache = Path(cache_path)

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            super().__init__()
            self._it = iter(batches)
            self._owner: Any = None

        def get_batch_size(self) -> int:
            return batches.batch_size

        def get_batch(self, names: list[str]) -> list[int] | None:
            batch = next(self._it, None)
            if batch is None:
                return None
            ptr, self._owner = copy(batch)
            return [ptr]

        def read_calibration_cache(self) -> bytes | None:
            return cache.read_bytes() if cache.exists() else None

        def write_calibration_cache(self, table: bytes) -> None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_bytes(bytes(table))

    return EntropyCalibrator()


def build_engine(
    onnx_path: Path | str,
    engine_path: Path | str,
    input_size: tuple[int, int],
    options: BuildOptions,
    calibration_frames: Sequence[np.ndarray] | None = None,
) -> Path:
    """Parse the ONNX graph, build a serialised engine with one batch profile, write it."""
    trt = require_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):  # implicit in TensorRT 10
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_bytes)
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in profile_shapes(input_size, options.batch_sizes).items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    config.set_flag(trt.BuilderFlag.FP16)
    if options.precision == "int8":
        if not calibration_frames:
            raise ValueError("INT8 engines need calibration frames")
        config.set_flag(trt.BuilderFlag.INT8)
        config.set_calibration_profile(profile)
        batches = CalibrationBatches(calibration_frames, input_size, options.calibration_batch)
        config.int8_calibrator = make_entropy_calibrator(
            trt, batches, Path(engine_path).with_suffix(".calib.cache")
        )
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError("TensorRT failed to build the engine (see its log above)")
    engine_path = Path(engine_path)
    engine_path.write_bytes(bytes(serialized))
    return engine_path


def tensorrt_target(device: str) -> BuildTarget:
    """The GPU model of `device` (cuda or cuda:N) and the installed TensorRT version: a plan's key."""
    trt = require_tensorrt()
    import torch

    if not torch.cuda.is_available():
        raise TensorRTUnavailable("TensorRT plans need a CUDA device; none is visible")
    index = torch.device(device if device.startswith("cuda") else "cuda")
    return BuildTarget(torch.cuda.get_device_name(index), str(trt.__version__))


@register_builder
class TensorRTBuilder(PlanBuilder):
    engine = "tensorrt"

    def target(self, device: str) -> BuildTarget:
        return tensorrt_target(device)

    def build(
        self,
        onnx: Path,
        dest: Path,
        input_size: tuple[int, int],
        options: BuildOptions,
        calibration: Sequence[np.ndarray] | None = None,
    ) -> None:
        if options.precision == "int8" and not calibration:
            raise ValueError(
                "an INT8 plan needs calibration frames, which an edge does not have: build it with "
                "`wv model build-engine --precision int8` on this GPU model, or run engine.precision fp16"
            )
        build_engine(onnx, dest, input_size, options, calibration)
