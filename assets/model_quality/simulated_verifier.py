"""The simulator as the annotator: the demo's verifier answers labeling tasks from the ground truth.

People answer verification and hard-example tasks in Label Studio or Prodigy. In the demo (the
``labeling`` resource's ``verifier = "ground-truth"``) the simulator answers instead: the condition
of each task's package comes from the frame rendered for its crop (by package id, else by box) and
from the truth JSONL files the demo's edges wrote; the answers are submitted through Label Studio's
API (or, with no server, written as a Label Studio export) and imported like a person's. Nothing
here runs for real cameras.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from contract.frames import Box, Frame
from quality.labeling import LabelTask, ground_truth_answers, read_truth

MATCH_IOU = 0.5
"""A task's box and a simulator box overlapping this much are the same package."""


class SimulatedVerifier:
    """Collects the truth of rendered task frames, then answers the tasks."""

    def __init__(self, truth_dir: Path) -> None:
        self.truth_dir = truth_dir
        self.rendered: dict[str, str] = {}
        """package_id → condition seen on the frames rendered for crops (never in the task files)."""

    def observe(self, package_id: str, bbox: tuple[float, float, float, float], frame: Frame) -> None:
        """Remember the package's true condition on a frame rendered for its task."""
        if (condition := truth_condition(frame, package_id, bbox)) is not None:
            self.rendered[package_id] = condition

    def truth(self) -> tuple[dict[str, str], list[str]]:
        """package_id → true condition (truth files, then rendered frames); problems with truth files."""
        files = sorted(self.truth_dir.rglob("*.jsonl")) if self.truth_dir.is_dir() else []
        truth, errors = read_truth(files)
        return {**truth, **self.rendered}, [str(e) for e in errors]

    def answer(self, tasks: Sequence[LabelTask], answer_file: Path) -> tuple[int, list[str]]:
        """Write the answers to `answer_file`; returns (answered, problems with truth files)."""
        truth, errors = self.truth()
        return ground_truth_answers(tasks, truth, answer_file), errors


def truth_condition(frame: Frame, package_id: str, bbox: tuple[float, float, float, float]) -> str | None:
    """The simulator's condition of the package: by id (the edge adopts simulator ids), else by box."""
    for item in frame.truth:
        if item.package_id == package_id:
            return item.condition
    box = Box(*bbox)
    best = max(frame.truth, key=lambda item: item.box.iou(box), default=None)
    return best.condition if best is not None and best.box.iou(box) >= MATCH_IOU else None
