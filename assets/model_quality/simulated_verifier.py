"""The simulator as the annotator: the demo's verifier answers labeling tasks from the ground truth.

People answer verification and hard-example tasks in Label Studio or Prodigy. In the demo (the
``labeling`` resource's ``verifier = "ground-truth"``) the simulator answers instead: the condition
of each task's package comes from the frame rendered for its crop (by package id, else by box; for a
package that frame no longer lists, from the frames just before it, by id) and from the truth JSONL
files the demo's edges wrote; the answers are submitted through Label Studio's
API (or, with no server, written as a Label Studio export) and imported like a person's. Nothing
here runs for real cameras.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from contract.frames import Box, Frame
from quality.labeling import LabelTask, ground_truth_answers, read_truth

if TYPE_CHECKING:
    from assets.model_quality.crops import SyntheticCamera

MATCH_IOU = 0.5
"""A task's box and a simulator box overlapping this much are the same package."""
LOOKBACK_S = 1.0
"""How far before a task's frame the package is looked for when that frame's truth lacks it. The edge
decides a track on its last observation, so a decision's frame often shows its package leaving the
view, less than ``simulator.MIN_VISIBLE`` of it inside, and the simulator's truth no longer lists it
(about half of the demo's decisions): the frames before show it whole (a package crosses the view in
about 3 s)."""


class SimulatedVerifier:
    """Collects the truth of rendered task frames, then answers the tasks."""

    def __init__(self, truth_dir: Path) -> None:
        self.truth_dir = truth_dir
        self.rendered: dict[str, str] = {}
        """package_id → condition seen on the frames rendered for crops (never in the task files)."""

    def observe(
        self,
        package_id: str,
        bbox: tuple[float, float, float, float],
        frame: Frame,
        camera: SyntheticCamera | None = None,
    ) -> None:
        """Remember the package's true condition on a frame rendered for its task: by id (the edge adopts
        simulator ids), on that frame or, when it lacks the package, on the camera's frames of the
        ``LOOKBACK_S`` before; else by box on that frame."""
        condition = condition_by_id(frame, package_id)
        if condition is None and camera is not None:
            back = max(1, round(LOOKBACK_S * camera.fps))
            for index in range(frame.index - 1, max(-1, frame.index - back - 1), -1):
                if (condition := condition_by_id(camera.render(index), package_id)) is not None:
                    break
        if condition is None:
            condition = condition_by_box(frame, bbox)
        if condition is not None:
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


def condition_by_id(frame: Frame, package_id: str) -> str | None:
    """The package's condition in the frame's truth, if the frame lists it."""
    return next((item.condition for item in frame.truth if item.package_id == package_id), None)


def condition_by_box(frame: Frame, bbox: tuple[float, float, float, float]) -> str | None:
    """The condition of the package whose truth box overlaps ``bbox`` at least ``MATCH_IOU``, if one does."""
    box = Box(*bbox)
    best = max(frame.truth, key=lambda item: item.box.iou(box), default=None)
    return best.condition if best is not None and best.box.iou(box) >= MATCH_IOU else None
