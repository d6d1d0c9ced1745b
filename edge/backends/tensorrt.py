"""TensorRT engine: a serialised engine (plan) from the model store, built by the edge itself
before it loads a version (`edge.hotswap`, `plan_store`) or ahead of time by `wv model build-engine`.

The plan is looked up by key (`tensorrt_plan`: model content, precision, GPU model, TensorRT
version), so a promoted version, another GPU or a TensorRT upgrade never loads a stale engine
(an unkeyed `model.<precision>.engine` from before keys is never loaded: nothing says what built it).
Batches larger than the engine's optimisation profile run in chunks; outputs of any dtype the
engine declares (fp16 included) come back as float32.

UNVERIFIED HERE: TensorRT cannot be installed in this project's environments, so this module has
never run against a real engine. It is written against TensorRT 10's public Python API
(`Runtime.deserialize_cuda_engine`, I/O tensors by name, `set_input_shape`,
`set_tensor_address`, `execute_async_v3`) and keeps its logic thin; device buffers are torch CUDA
tensors. Without the `tensorrt` package, loading raises EngineUnavailable with what to install.
"""

from __future__ import annotations

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
from edge.backends.plan_store import find_plan
from edge.backends.tensorrt_build import require_tensorrt, tensorrt_target
from edge.backends.tensorrt_plan import chunks, host_dtype


@register
class TensorRTEngine(Engine):
    name = "tensorrt"
    precisions = ("fp16", "int8")

    def __init__(self, model: ModelFiles, spec: EngineSpec) -> None:
        super().__init__(model, spec)
        trt = require_tensorrt()
        import torch

        if not torch.cuda.is_available():
            raise EngineUnavailable("the tensorrt engine needs a CUDA device")
        self._trt, self._torch = trt, torch
        self._device = torch.device(spec.device if spec.device.startswith("cuda") else "cuda")
        path = find_plan(model, spec.precision, tensorrt_target(spec.device))
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
