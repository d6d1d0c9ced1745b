"""PyTorch engine (the reference): CPU fp32/bf16, CUDA fp32/fp16/bf16 from `weights.pt`."""

from __future__ import annotations

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

    @classmethod
    def for_module(cls, module: Any, spec: EngineSpec | None = None) -> TorchEngine:
        """An engine over an in-memory detector (one being trained or fine-tuned), moved to `spec.device`."""
        files = ModelFiles.unsaved("in-memory", tuple(module.cfg.input_size))
        return cls(files, spec or EngineSpec("torch", "fp32"), module=module)

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        torch = self._torch
        with torch.inference_mode():
            x = torch.from_numpy(batch).to(self._device, non_blocking=True).to(self._dtype)
            out = self._net(x)
            return {k: out[k].float().cpu().numpy() for k in OUTPUT_NAMES}

    def close(self) -> None:
        self._net = None
        if self._device.type == "cuda":
            self._torch.cuda.empty_cache()
