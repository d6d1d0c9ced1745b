"""Run an engine over frames and score it: `wv model eval` and the INT8 parity of `wv model export`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from contract.frames import Detection, Frame
from edge.backends import Engine
from edge.model.postprocess import decode
from edge.model.preprocess import preprocess
from model_lifecycle.metrics import EvalReport, evaluate_detections, match

SCORE_FLOOR = 0.05
"""Detections down to this score enter the precision/recall curve of mAP."""


def detect(
    engine: Engine,
    frames: Sequence[Frame],
    batch_size: int = 16,
    score_floor: float = SCORE_FLOOR,
    iou_threshold: float = 0.5,
) -> list[list[Detection]]:
    """Every detection down to `score_floor` on each frame, through the edge's own engine API."""
    out: list[list[Detection]] = []
    for i in range(0, len(frames), batch_size):
        chunk = frames[i : i + batch_size]
        raw = engine.infer(preprocess([f.image for f in chunk], engine.model.input_size))
        out.extend(decode(raw, [f.image.shape[:2] for f in chunk], score_floor, iou_threshold))
    return out


def evaluate(
    engine: Engine,
    frames: Sequence[Frame],
    score_threshold: float,
    iou_threshold: float = 0.5,
    batch_size: int = 16,
) -> EvalReport:
    return score(engine, frames, score_threshold, iou_threshold, batch_size)[0]


def score(
    engine: Engine,
    frames: Sequence[Frame],
    score_threshold: float,
    iou_threshold: float = 0.5,
    batch_size: int = 16,
) -> tuple[EvalReport, list[list[Detection]]]:
    """The report and the detections it was computed from (for `datasets.coco.results`).

    `frames` may be a lazy sequence (`sources.DirectoryFrames`): images are read one batch at a
    time, and its `truths()` gives the labels without reading them again."""
    dets = detect(engine, frames, batch_size, iou_threshold=iou_threshold)
    truths_fn = getattr(frames, "truths", None)
    truths = truths_fn() if callable(truths_fn) else [f.truth for f in frames]
    return evaluate_detections(dets, truths, score_threshold), dets


@dataclass
class ParityReport:
    """INT8 vs FP32 on the same held-out frames."""

    frames: int
    fp32_map50: float
    int8_map50: float
    map_drop_points: float
    fp32_condition_accuracy: float
    int8_condition_accuracy: float
    condition_agreement: float
    """Share of FP32 detections (at the operating threshold) matched by an INT8 detection with
    the same arg-max condition (unmatched ones count as disagreements)."""
    fp32_bytes: int
    int8_bytes: int

    @property
    def size_ratio(self) -> float:
        return self.fp32_bytes / max(self.int8_bytes, 1)

    def passed(self, min_agreement: float = 0.96, max_drop_points: float = 1.0) -> bool:
        return self.condition_agreement >= min_agreement and self.map_drop_points <= max_drop_points

    def as_dict(self) -> dict[str, float | int | bool]:
        return {
            "frames": self.frames,
            "fp32_map50": round(self.fp32_map50, 4),
            "int8_map50": round(self.int8_map50, 4),
            "map_drop_points": round(self.map_drop_points, 2),
            "fp32_condition_accuracy": round(self.fp32_condition_accuracy, 4),
            "int8_condition_accuracy": round(self.int8_condition_accuracy, 4),
            "condition_agreement": round(self.condition_agreement, 4),
            "fp32_mb": round(self.fp32_bytes / 1e6, 2),
            "int8_mb": round(self.int8_bytes / 1e6, 2),
            "size_ratio": round(self.size_ratio, 2),
            "passed": self.passed(),
        }


def condition_agreement(
    reference: Sequence[Sequence[Detection]], candidate: Sequence[Sequence[Detection]], score_threshold: float
) -> float:
    agree = total = 0
    for ref, cand in zip(reference, candidate, strict=True):
        ref = [d for d in ref if d.score >= score_threshold]
        cand = [d for d in cand if d.score >= score_threshold]
        total += len(ref)
        for r, j in zip(ref, match(ref, cand), strict=True):
            agree += j >= 0 and r.condition == cand[j].condition
    return agree / max(total, 1)


def parity(
    fp32: Engine,
    int8: Engine,
    frames: Sequence[Frame],
    score_threshold: float,
    sizes: tuple[int, int],
) -> ParityReport:
    d32 = detect(fp32, frames)
    d8 = detect(int8, frames)
    truths = [f.truth for f in frames]
    r32 = evaluate_detections(d32, truths, score_threshold)
    r8 = evaluate_detections(d8, truths, score_threshold)
    return ParityReport(
        frames=len(frames),
        fp32_map50=r32.map50,
        int8_map50=r8.map50,
        map_drop_points=float(np.round((r32.map50 - r8.map50) * 100, 4)),
        fp32_condition_accuracy=r32.condition_accuracy,
        int8_condition_accuracy=r8.condition_accuracy,
        condition_agreement=condition_agreement(d32, d8, score_threshold),
        fp32_bytes=sizes[0],
        int8_bytes=sizes[1],
    )
