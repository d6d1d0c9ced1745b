"""``unlabeled_frames``: one facility-day of the frames the edges sampled, checked and listed.

The edges' frame sampler (``edge.sampling``, ``WV_FRAME_SAMPLING``) writes JPEGs to
``<frames dir>/<facility>/<camera>/<YYYY-MM-DD>/``. For a facility-day this asset reads every
camera's folder of that day, moves a file that does not decode to ``<frames dir>/_rejected/…``
(the dead-letter place; nothing downstream sees it), writes the manifest of the good ones to
``<state>/datasets/unlabeled/<facility>/<day>.json`` (atomically) and deletes the facility's day
folders older than ``WV_UNLABELED_RETENTION_DAYS``. ``backbone_adaptation`` reads the manifests.
"""

import json
import os
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg

from assets.common.partitions import daily_facility_partitions, facility_day
from assets.common.settings import PipelineSettings
from edge.sampling.settings import FrameSamplingSettings

OWNERS = ["team:ml-quality"]
REJECTED = "_rejected"


def manifest_path(state_dir: Path, facility: str, day: date) -> Path:
    return state_dir / "datasets" / "unlabeled" / facility / f"{day.isoformat()}.json"


def collect_day(root: Path, facility: str, day: date) -> tuple[dict[str, list[str]], list[str]]:
    """Decodable frames per camera (paths relative to ``root``) and the files moved aside as unreadable."""
    import cv2

    good: dict[str, list[str]] = {}
    rejected: list[str] = []
    for camera_dir in sorted(p for p in (root / facility).glob("*") if p.is_dir()):
        day_dir = camera_dir / day.isoformat()
        files = (
            sorted(p for p in day_dir.glob("*.jpg") if not p.name.startswith(".")) if day_dir.is_dir() else []
        )
        for path in files:
            rel = path.relative_to(root)
            if cv2.imread(str(path), cv2.IMREAD_COLOR) is None:
                target = root / REJECTED / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, target)
                rejected.append(str(rel))
            else:
                good.setdefault(camera_dir.name, []).append(str(rel))
    return good, rejected


def expire(root: Path, facility: str, before: date) -> list[str]:
    """Delete the facility's day folders (and rejected ones) older than ``before``; their names."""
    removed = []
    for base in (root / facility, root / REJECTED / facility):
        for day_dir in sorted(base.glob("*/*")):
            try:
                day = date.fromisoformat(day_dir.name)
            except ValueError:
                continue
            if day < before and day_dir.is_dir():
                shutil.rmtree(day_dir)
                removed.append(str(day_dir.relative_to(root)))
    return removed


@dg.asset(
    partitions_def=daily_facility_partitions,
    group_name="model_quality",
    owners=OWNERS,
    kinds={"python"},
    tags={"domain": "model_quality"},
    description=(
        "Frames the facility's edges sampled that day (WV_FRAME_SAMPLING): unreadable files moved to the "
        "rejected folder, a manifest of the rest per camera for self-supervised adaptation, and the facility's "
        "frames older than WV_UNLABELED_RETENTION_DAYS deleted."
    ),
)
def unlabeled_frames(
    context: dg.AssetExecutionContext, settings: dg.ResourceParam[PipelineSettings]
) -> dg.MaterializeResult:
    facility, day = facility_day(context)
    sampling = FrameSamplingSettings.load()
    root = sampling.frames_dir
    frames, rejected = collect_day(root, facility, day)
    removed = expire(
        root, facility, datetime.now(UTC).date() - timedelta(days=sampling.unlabeled_retention_days)
    )
    path = manifest_path(settings.state_dir, facility, day)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    payload = {"facility": facility, "day": day.isoformat(), "root": str(root.resolve()), "frames": frames}
    tmp.write_text(json.dumps(payload, indent=1), encoding="utf-8")
    os.replace(tmp, path)
    if rejected:
        context.log.warning("%d unreadable frames moved to %s", len(rejected), root / REJECTED)
    return dg.MaterializeResult(
        metadata={
            "frames": sum(len(v) for v in frames.values()),
            "frames_per_camera": dg.MetadataValue.json({k: len(v) for k, v in frames.items()}),
            "rejected": len(rejected),
            "expired_day_folders": len(removed),
            "manifest": dg.MetadataValue.path(str(path.resolve())),
        }
    )
