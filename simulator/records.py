"""JSON form of per-frame ground truth, shared by dataset annotations and video sidecars."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from contract.frames import Box, Frame, PackageTruth


def truth_to_dict(t: PackageTruth) -> dict[str, Any]:
    return {
        "box": [t.box.x1, t.box.y1, t.box.x2, t.box.y2],
        "package_id": t.package_id,
        "sku": t.sku,
        "package_type": t.package_type,
        "condition": t.condition,
        "zone": t.zone,
        "expected_zone": t.expected_zone,
    }


def truth_from_dict(d: dict[str, Any]) -> PackageTruth:
    return PackageTruth(
        package_id=d["package_id"],
        sku=d["sku"],
        package_type=d["package_type"],
        condition=d["condition"],
        box=Box(*(float(v) for v in d["box"])),
        zone=d["zone"],
        expected_zone=d["expected_zone"],
    )


def frame_record(frame: Frame, file: str | None = None) -> dict[str, Any]:
    """One annotations.jsonl / sidecar line for a frame (pixels excluded)."""
    h, w = frame.image.shape[:2]
    record: dict[str, Any] = {"file": file} if file is not None else {}
    record.update(
        width=w,
        height=h,
        camera_id=frame.camera_id,
        index=frame.index,
        timestamp=frame.timestamp,
        packages=[truth_to_dict(t) for t in frame.truth],
    )
    return record


def sidecar_path(video: Path) -> Path:
    """Where a video's ground truth lives: `clip.mp4` → `clip.truth.jsonl`."""
    return video.with_suffix(".truth.jsonl")
