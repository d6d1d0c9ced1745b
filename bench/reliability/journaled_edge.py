"""`wv edge run --config …` plus a journal of every event id the outbox accepted.

    python -m bench.reliability.journaled_edge --journal events.tsv edge run --config edge.yaml

The reliability tests and the soak count events end to end by ``event_id``: an event is owed to
the centre from the moment the outbox holds it. The runner is the real ``wv`` command line; the
only difference is an :class:`Outbox` that, after each durable write, appends one
line per event (``event_id  kind  anomaly  event_time_ms``) to the journal and flushes it to the
OS — a SIGKILL cannot lose a line for an event already in the outbox (a line may only be missing
for the last write, whose events then show up as extra, never as lost).

It also registers two engines: ``wv-fault-injecting``, ONNX Runtime that raises while a file named
``FAULT`` exists in its model version directory (an engine that starts failing mid-run), and
``wv-stall-injecting``, ONNX Runtime that blocks in ``infer`` while a file named ``STALL`` exists
there (an engine stuck in a call: the watchdog's case).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import numpy as np

import edge.service
from contract.proto import warehouse_vision_pb2 as pb
from edge.backends.base import EngineError, register
from edge.backends.onnxruntime import OnnxRuntimeEngine
from edge.outbox.store import Outbox
from wv.cli import main as cli_main

FAULT_MARKER = "FAULT"
STALL_MARKER = "STALL"


@register
class FaultInjectingEngine(OnnxRuntimeEngine):
    name = "wv-fault-injecting"

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        if (self.model.path / FAULT_MARKER).exists():
            raise EngineError(f"injected fault in {self.model.version}")
        return super().infer(batch)


@register
class StallInjectingEngine(OnnxRuntimeEngine):
    name = "wv-stall-injecting"

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        while (self.model.path / STALL_MARKER).exists():  # stuck, as a hung driver call would be
            time.sleep(0.05)
        return super().infer(batch)


def journal_line(payload: bytes, anomaly: bool) -> str:
    event = pb.DetectionEvent.FromString(payload)
    kind = "decision" if event.kind == pb.EVENT_KIND_DECISION else "detection"
    ts = event.event_time
    return f"{event.event_id}\t{kind}\t{int(anomaly)}\t{ts.seconds * 1000 + ts.nanos // 1_000_000}\n"


QUOTA_REASONS = ("dropped_quota", "dropped_quota_anomaly")


def drops_file(journal: Path) -> Path:
    """Where a journaled edge keeps its outbox's quota drop counters (JSON, replaced atomically)."""
    return journal.with_name(journal.name + ".drops.json")


class JournaledOutbox(Outbox):
    """The edge outbox; every accepted event is also appended to :attr:`journal`, and the quota
    drop counters, whenever a write changed them, to :func:`drops_file` (exact after any exit, even a
    SIGKILL, where a scrape of the metrics endpoint is only as fresh as its moment)."""

    journal: IO[str]

    def put(self, payloads: Sequence[tuple[bytes, bool]]) -> list[bytes]:
        dropped = [self.counters[r] for r in QUOTA_REASONS]
        keys = super().put(payloads)
        self.journal.write("".join(journal_line(p, a) for p, a in payloads))
        self.journal.flush()
        if [self.counters[r] for r in QUOTA_REASONS] != dropped:
            path = drops_file(Path(self.journal.name))
            partial = path.with_suffix(".partial")
            partial.write_text(json.dumps({r: self.counters[r] for r in QUOTA_REASONS}))
            partial.replace(path)
        return keys


def main(argv: Sequence[str] | None = None) -> None:
    """Parse ``--journal``, then run the real ``wv`` command line with the remaining arguments."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--journal", type=Path, required=True)
    args, wv_args = parser.parse_known_args(argv)
    JournaledOutbox.journal = args.journal.open("a", encoding="utf-8")
    edge.service.Outbox = JournaledOutbox  # type: ignore[misc]  # the service builds its outbox itself
    sys.argv = ["wv", *wv_args]
    cli_main()


if __name__ == "__main__":
    main()
