"""TensorRT engine: a serialised engine from the model store (built by `wv model build-engine`).

The engine file is looked up by key (`tensorrt_plan`: model content, precision, GPU model,
TensorRT version), so a promoted version, another GPU or a TensorRT upgrade never loads a stale
engine; the unkeyed `model.<fp16|int8>.engine` is the fallback for engines built before keys.
Batches larger than the engine's optimisation profile run in chunks; outputs of any dtype the
engine declares (fp16 included) come back as float32.

UNVERIFIED HERE: TensorRT cannot be installed in this project's environments, so this module has
never run against a real engine. It is written against TensorRT 10's public Python API
(`Runtime.deserialize_cuda_engine`, I/O tensors by name, `set_input_shape`,
`set_tensor_address`, `execute_async_v3`) and keeps its logic thin; device buffers are torch CUDA
tensors. Without the `tensorrt` package, loading raises EngineUnavailable with what to install.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edge.backends.base import (
    INPUT_NAME,
    OUTPUT_NAMES,
    Engine,
    EngineSpec,
    EngineUnavailable,
    ModelFiles,
    ModelLoadError,
    register,
)
from edge.backends.tensorrt_plan import (
    ENGINES_DIR,
    chunks,
    engine_prefix,
    host_dtype,
    model_digest,
    pick_engine,
)
from edge.model.version import ONNX_FILE


def find_engine(model: ModelFiles, precision: str, gpu: str, trt_version: str) -> Path:
    """The model store's engine for this model, precision, GPU and TensorRT version (the one with the
    largest batch profile), else the unkeyed `model.<precision>.engine`; ModelLoadError names the key."""
    if (model.path / ONNX_FILE).is_file():
        prefix = engine_prefix(model_digest(model.path, ONNX_FILE), precision, gpu, trt_version)
        keyed = pick_engine(model.path, prefix)
        if keyed is not None:
            return keyed
    else:
        prefix = f"(no {ONNX_FILE} to key by)"
    legacy = model.path / f"model.{precision}.engine"
    if legacy.is_file():
        return legacy
    raise ModelLoadError(
        f"{model.path}: no TensorRT engine for this model, GPU ({gpu}) and TensorRT {trt_version}: "
        f"looked for {ENGINES_DIR}/{prefix}-b*.engine; build it with `wv model build-engine {model.path}`"
    )


def _require_tensorrt() -> Any:
    try:
        import tensorrt
    except ImportError:
        raise EngineUnavailable(
            "the tensorrt engine needs NVIDIA TensorRT >= 10 with its Python bindings on a CUDA host "
            "(JetPack on Jetson, or the tensorrt wheel matching the CUDA driver); "
            "use engine onnxruntime (INT8) or torch meanwhile"
        ) from None
    return tensorrt


@register
class TensorRTEngine(Engine):
    name = "tensorrt"
    precisions = ("fp16", "int8")

    def __init__(self, model: ModelFiles, spec: EngineSpec) -> None:
        super().__init__(model, spec)
        trt = _require_tensorrt()
        import torch

        if not torch.cuda.is_available():
            raise EngineUnavailable("the tensorrt engine needs a CUDA device")
        self._trt, self._torch = trt, torch
        self._device = torch.device(spec.device if spec.device.startswith("cuda") else "cuda")
        path = find_engine(model, spec.precision, torch.cuda.get_device_name(self._device), trt.__version__)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if self._engine is None:
            raise ModelLoadError(
                f"{path}: TensorRT cannot deserialize it (corrupt, or built for another GPU/version)"
            )
        self._context = self._engine.create_execution_context()
        names = {self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)}
        missing = {INPUT_NAME, *OUTPUT_NAMES} - names
        if missing:
            raise ModelLoadError(f"{path}: engine lacks tensors {sorted(missing)}")
        self._stream = torch.cuda.Stream(device=self._device)
        self._profile_max = int(self._engine.get_tensor_profile_shape(INPUT_NAME, 0)[2][0])
        self._out_dtypes = {
            name: torch.from_numpy(np.empty(0, host_dtype(self._engine.get_tensor_dtype(name).name))).dtype
            for name in OUTPUT_NAMES
        }

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        parts = [self._infer_chunk(batch[part]) for part in chunks(len(batch), self._profile_max)]
        return {k: np.concatenate([p[k] for p in parts]).astype(np.float32, copy=False) for k in OUTPUT_NAMES}

    def _infer_chunk(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        torch, ctx = self._torch, self._context
        with torch.cuda.stream(self._stream):
            x = torch.from_numpy(np.ascontiguousarray(batch)).to(self._device, non_blocking=True)
            ctx.set_input_shape(INPUT_NAME, tuple(x.shape))
            ctx.set_tensor_address(INPUT_NAME, x.data_ptr())
            outputs = {}
            for name in OUTPUT_NAMES:
                shape = tuple(ctx.get_tensor_shape(name))
                out = torch.empty(shape, dtype=self._out_dtypes[name], device=self._device)
                ctx.set_tensor_address(name, out.data_ptr())
                outputs[name] = out
            if not ctx.execute_async_v3(self._stream.cuda_stream):
                raise RuntimeError("TensorRT execute_async_v3 failed")
            host = {k: v.float().cpu().numpy() for k, v in outputs.items()}
        self._stream.synchronize()
        return host

    def close(self) -> None:
        self._context = None
        self._engine = None
