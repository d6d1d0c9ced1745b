"""The words edge and centre share: conditions, stages, event kinds and the edge's anomaly kinds.

One definition each, in contract order. The proto enums carry the same lists on the wire
(``CONDITION_OK`` = 1 …); a test holds the two together.
"""

from __future__ import annotations

from typing import Final

CONDITIONS: Final[tuple[str, ...]] = ("ok", "crushed", "torn", "wet", "open")
"""Package conditions: the order of the model's condition head and of the proto enum (offset 1)."""

PACKAGE_TYPES: Final[tuple[str, ...]] = ("box", "polybag", "envelope")

STAGES: Final[tuple[str, ...]] = (
    "decode_ms",
    "preprocess_ms",
    "queue_ms",
    "infer_ms",
    "track_ms",
    "decide_ms",
    "publish_ms",
    "end_to_end_ms",
)
"""Per-stage timings every event carries (``StageTimings`` fields, ``package_detections`` columns)."""

EVENT_KINDS: Final[tuple[str, ...]] = ("detection", "decision")
"""A sampled per-frame detection, or the one decision of a package track."""

EDGE_ANOMALY_KINDS: Final[tuple[str, ...]] = ("damaged", "misplaced", "low_confidence", "unknown_appearance")
"""Flags the edge raises on a decision; the centre's rules add kinds of their own."""
