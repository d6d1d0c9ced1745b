"""Late primary results: a batch the fallback answered, answered again when the primary is done.

A batch the straggler fallback answered while the primary's call still runs (`Outcome.late`) is
emitted at once: its events say `fallback`, and each camera's decider records those frames as
provisional. Between batches the inference loop settles the calls that have finished, oldest
first: the primary's detections are decoded, and each decider puts them in place of the
fallback's evidence in tracks not decided yet (so a decision made after the primary answered
rests on the primary's evidence) and emits primary-made detection events that supersede the
fallback's sampled ones (`supersedes`; the centre marks the replaced rows). The tracker keeps the
associations the fallback's boxes made: re-associating would renumber tracks already reported.
A primary call that fails, or is still running at shutdown, leaves the fallback's answer as it
is. One primary call runs at a time (`StragglerRunner`), so only a batch or two wait here.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import CancelledError, Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, replace

import numpy as np

from contract.proto import warehouse_vision_pb2 as pb
from edge.decisions.decider import Decider
from edge.decisions.events import FrameContext
from edge.hotswap.manager import Decoder, LoadedModel

LATE_WAIT_AT_END_S = 1.0
"""How long the last batches' primary may still take when the edge stops (then it is given up)."""

Written = tuple[list[pb.DetectionEvent], FrameContext, float, float]
"""What the pipeline writes for one frame: (events, context, captured_at, decided_at)."""


@dataclass
class LateFrame:
    ctx: FrameContext
    """The frame's context as the fallback's events had it."""
    size: tuple[int, int]
    captured_at: float


@dataclass
class LateBatch:
    future: Future[tuple[dict[str, np.ndarray], float]]
    primary: LoadedModel
    frames: list[LateFrame]


class LateResults:
    """The fallback-answered batches whose primary is still running, in batch order."""

    def __init__(self, decode: Decoder, counters: Counter[str]) -> None:
        """``counters`` (the pipeline's) gets batches_superseded, events_superseding, late_lost."""
        self._decode = decode
        self.counters = counters
        self._pending: deque[LateBatch] = deque()

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, batch: LateBatch) -> None:
        self._pending.append(batch)

    def settle(self, decider: Callable[[str], Decider | None], wait_s: float = 0.0) -> list[Written]:
        """Apply every primary result that has arrived (waiting up to `wait_s` for the rest);
        returns the superseding events to write. ``decider`` finds a camera's (None: retired)."""
        written: list[Written] = []
        deadline = time.monotonic() + wait_s
        while self._pending:
            batch = self._pending[0]
            try:
                raw, ms = batch.future.result(timeout=max(0.0, deadline - time.monotonic()))
            except FutureTimeout:
                break
            except (CancelledError, Exception):  # the runner counted the failure
                self._pending.popleft()
                self._give_up(batch, decider)
                continue
            self._pending.popleft()
            written.extend(self._apply(batch, raw, ms, decider))
        return written

    def abandon(self, decider: Callable[[str], Decider | None]) -> None:
        """Give up on every primary call still running: the fallback's answers stay."""
        while self._pending:
            self._give_up(self._pending.popleft(), decider)

    def _apply(
        self,
        batch: LateBatch,
        raw: dict[str, np.ndarray],
        ms: float,
        decider: Callable[[str], Decider | None],
    ) -> list[Written]:
        sizes = [f.size for f in batch.frames]
        detections = self._decode(raw, sizes, batch.primary.files)
        model = batch.primary.info()
        written: list[Written] = []
        for frame, dets in zip(batch.frames, detections, strict=True):
            d = decider(frame.ctx.camera_id)
            if d is None:
                continue
            started = time.monotonic()
            events = d.supersede(frame.ctx.frame_index, dets, model, ms)
            decided_at = time.monotonic()
            if events:
                ctx = replace(frame.ctx, model=model, timings={"decide_ms": (decided_at - started) * 1000})
                written.append((events, ctx, frame.captured_at, decided_at))
                self.counters["events_superseding"] += len(events)
        self.counters["batches_superseded"] += 1
        return written

    def _give_up(self, batch: LateBatch, decider: Callable[[str], Decider | None]) -> None:
        self.counters["late_lost"] += 1
        for frame in batch.frames:
            if (d := decider(frame.ctx.camera_id)) is not None:
                d.forget(frame.ctx.frame_index)
