"""TensorRT engine: a serialised `model.<fp16|int8>.engine` (built by `wv model build-engine`).

UNVERIFIED HERE: TensorRT cannot be installed in this project's environments, so this module has
never run against a real engine. It is written against TensorRT 10's public Python API
(`Runtime.deserialize_cuda_engine`, I/O tensors by name, `set_input_shape`,
`set_tensor_address`, `execute_async_v3`) and keeps its logic thin; device buffers are torch CUDA
tensors. Without the `tensorrt` package, loading raises EngineUnavailable with what to install.
"""

from __future__ import annotations

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
        path = model.file(
            f"model.{spec.precision}.engine", f"build it with `wv model build-engine {model.path}`"
        )
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

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        torch, ctx = self._torch, self._context
        with torch.cuda.stream(self._stream):
            x = torch.from_numpy(np.ascontiguousarray(batch)).to(self._device, non_blocking=True)
            ctx.set_input_shape(INPUT_NAME, tuple(x.shape))
            ctx.set_tensor_address(INPUT_NAME, x.data_ptr())
            outputs = {}
            for name in OUTPUT_NAMES:
                shape = tuple(ctx.get_tensor_shape(name))
                out = torch.empty(shape, dtype=torch.float32, device=self._device)
                ctx.set_tensor_address(name, out.data_ptr())
                outputs[name] = out
            if not ctx.execute_async_v3(self._stream.cuda_stream):
                raise RuntimeError("TensorRT execute_async_v3 failed")
            host = {k: v.cpu().numpy() for k, v in outputs.items()}
        self._stream.synchronize()
        return host

    def close(self) -> None:
        self._context = None
        self._engine = None
