"""ONNX Runtime engine (CPU by default): FP32 `model.onnx` or INT8 `model.int8.onnx`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.backends.base import (
    INPUT_NAME,
    OUTPUT_NAMES,
    Engine,
    EngineSpec,
    ModelFiles,
    ModelLoadError,
    register,
)


@register
class OnnxRuntimeEngine(Engine):
    name = "onnxruntime"
    precisions = ("fp32", "int8")

    def __init__(self, model: ModelFiles, spec: EngineSpec, file: Path | None = None) -> None:
        super().__init__(model, spec)
        import onnxruntime as ort

        path = file or model.onnx(spec.precision)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        if spec.threads:
            opts.intra_op_num_threads = spec.threads
            opts.inter_op_num_threads = 1
        # Camera readers, the tracker and the outbox share these few cores: by default idle ORT
        # workers sleep rather than spin, so they do not steal the CPU the rest of the pipeline needs.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spec.spin else "0")
        providers = ["CPUExecutionProvider"]
        if spec.device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self._session = ort.InferenceSession(str(path), opts, providers=providers)
        except Exception as exc:  # ORT raises its own Fail/InvalidProtobuf types for bad files
            raise ModelLoadError(f"{path}: ONNX Runtime cannot load it ({exc})") from None

    @classmethod
    def for_file(cls, path: Path | str, input_size: tuple[int, int], spec: EngineSpec) -> OnnxRuntimeEngine:
        """An engine over a loose ONNX file (an export being checked, a benchmark's graph)."""
        path = Path(path)
        return cls(ModelFiles.unsaved(path.stem, input_size), spec, file=path)

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        outputs = self._session.run(list(OUTPUT_NAMES), {INPUT_NAME: batch})
        return dict(zip(OUTPUT_NAMES, outputs, strict=True))

    def close(self) -> None:
        self._session = None
