"""PyTorch engine (the reference): CPU fp32/bf16, CUDA fp32/fp16/bf16 from `weights.pt`.

On CUDA, frames are preprocessed on the GPU (`torch_device.DevicePreprocess`, straight from the
decode workers' shared memory when `engine.zero_copy` locked it) and, with
``engine.cuda_graphs``, each batch runs as a CUDA graph replay of its size bucket.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edge.backends.base import (
    OUTPUT_NAMES,
    Engine,
    EngineSpec,
    EngineUnavailable,
    ModelFiles,
    ModelLoadError,
    register,
)
from edge.backends.torch_device import DevicePreprocess, GraphRunner, cuda_host_pins
from edge.model.version import WEIGHTS_FILE


@register
class TorchEngine(Engine):
    name = "torch"
    precisions = ("fp32", "fp16", "bf16")

    def __init__(self, model: ModelFiles, spec: EngineSpec, module: Any = None) -> None:
        super().__init__(model, spec)
        import torch

        from edge.model.version import load_detector

        if spec.device.startswith("cuda") and not torch.cuda.is_available():
            raise EngineUnavailable(f"device {spec.device!r} requested but CUDA is not available")
        if spec.precision == "fp16" and not spec.device.startswith("cuda"):
            raise EngineUnavailable("fp16 needs a CUDA device; use fp32 or bf16 on CPU")
        if spec.threads and spec.device == "cpu":
            torch.set_num_threads(spec.threads)
        self._torch = torch
        self._device = torch.device(spec.device)
        self._dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[spec.precision]
        if module is None:
            try:
                model.file(WEIGHTS_FILE, "the version has no torch weights")
                module = load_detector(model.path, "cpu")
            except ModelLoadError:
                raise
            except Exception as exc:  # corrupt pickle/zip, wrong keys or shapes
                raise ModelLoadError(f"{model.path}: cannot load torch weights ({exc})") from None
        self._net: Any = module.to(self._device, self._dtype).eval()
        cuda = self._device.type == "cuda"
        self._prepare = (
            DevicePreprocess(torch, self._device, self._dtype, model.input_size, cuda_host_pins())
            if cuda
            else None
        )
        self._graphs = GraphRunner(self._capture, spec.max_graph_batch) if cuda and spec.cuda_graphs else None
        self._pool: Any = None

    @classmethod
    def for_module(cls, module: Any, spec: EngineSpec | None = None) -> TorchEngine:
        """An engine over an in-memory detector (one being trained or fine-tuned), moved to `spec.device`."""
        files = ModelFiles.unsaved("in-memory", tuple(module.cfg.input_size))
        return cls(files, spec or EngineSpec("torch", "fp32"), module=module)

    def prepare(self, images: Sequence[np.ndarray]) -> Any:
        if self._prepare is None:
            return super().prepare(images)
        with self._torch.inference_mode():
            return self._prepare(images)

    def infer(self, batch: Any) -> dict[str, np.ndarray]:
        torch = self._torch
        with torch.inference_mode():
            x = batch if isinstance(batch, torch.Tensor) else torch.from_numpy(batch)
            x = x.to(self._device, self._dtype, non_blocking=True)
            if self._graphs is None:
                out = self._net(x)
                return {k: out[k].float().cpu().numpy() for k in OUTPUT_NAMES}
            chunks = self._graphs(x)
            return {k: torch.cat([c[k] for c in chunks]).float().cpu().numpy() for k in OUTPUT_NAMES}

    def _capture(self, bucket: int) -> tuple[Any, Any]:
        """A CUDA graph of one forward at batch `bucket` (warmed up on a side stream first)."""
        torch = self._torch
        h, w = self.model.input_size
        static = torch.zeros((bucket, 3, h, w), dtype=self._dtype, device=self._device)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                self._net(static)
        torch.cuda.current_stream().wait_stream(side)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool, capture_error_mode="thread_local"):
            out = self._net(static)
        outputs = {k: out[k] for k in OUTPUT_NAMES}

        def replay() -> dict[str, Any]:
            graph.replay()
            return outputs

        return static, replay

    def close(self) -> None:
        self._net = None
        if self._device.type == "cuda":
            self._torch.cuda.empty_cache()
