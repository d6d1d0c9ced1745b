"""Late primary results that never come: a failed or cancelled primary call, or one still running
when the edge stops, leaves the fallback's answer and forgets the provisional frames."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import Future
from pathlib import Path

import numpy as np

from contract.frames import Box, Detection, Frame
from edge.backends.base import ModelFiles
from edge.batching.late import LateBatch, LateFrame, LateResults
from edge.config import DecisionConfig
from edge.decisions.decider import Decider
from edge.decisions.events import FrameContext, ModelInfo
from edge.decisions.zones import ZoneMap
from edge.hotswap.manager import LoadedModel
from edge.pipeline import decode_for
from edge.tracking.iou import IouTracker

FALLBACK = ModelInfo("fallback", "onnxruntime", "fp32", fallback=True, provisional=True)
PRIMARY = ModelInfo("v1", "onnxruntime", "int8")


def detection() -> Detection:
    return Detection(
        Box(10, 10, 60, 60), 0.9, np.array([0.9, 0.1, 0, 0, 0], np.float32), np.ones(4, np.float32)
    )


def provisional_frame(decider: Decider, tracker: IouTracker, i: int) -> LateFrame:
    """Frame `i` answered by the fallback with one package, its primary result still to come."""
    ctx = FrameContext("FAC-1", "cam-1", i, 1_700_000_000 + i / 30, FALLBACK, {})
    step = tracker.update(i, ctx.timestamp, [detection()])
    decider.observe(ctx, step.matches, Frame("cam-1", i, ctx.timestamp, np.zeros((4, 4, 3))))
    return LateFrame(ctx, (120, 160), ctx.timestamp)


def test_a_failed_or_abandoned_primary_call_forgets_its_frames_and_is_counted(fallback_model: Path):
    config = DecisionConfig(hard_example_band=(0.65, 0.85), detection_sample_rate=1.0)
    decider = Decider(config, ZoneMap([]), {}, None)
    tracker = IouTracker("cam", min_hits=1)
    counters: Counter[str] = Counter()
    late = LateResults(decode_for, counters)
    primary = LoadedModel(ModelFiles.read(fallback_model), engine=None)  # type: ignore[arg-type]  # never used when given up
    failed: Future = Future()
    failed.set_exception(RuntimeError("primary died"))
    running: Future = Future()
    late.add(LateBatch(failed, primary, [provisional_frame(decider, tracker, 0)]))
    late.add(LateBatch(running, primary, [provisional_frame(decider, tracker, 1)]))
    provisional_frame(decider, tracker, 2)  # a frame whose primary answer is still expected

    assert late.settle(lambda _camera: decider, wait_s=0.05) == []
    assert counters["late_lost"] == 1 and len(late) == 1  # the running one waits on
    late.abandon(lambda _camera: decider)
    assert counters["late_lost"] == 2 and len(late) == 0
    # nothing is held for frames whose primary answer will never come; the other frame still waits
    assert [len(decider.supersede(i, [detection()], PRIMARY, 1.0)) for i in (0, 1, 2)] == [0, 0, 1]
