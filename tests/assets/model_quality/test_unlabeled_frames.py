"""``unlabeled_frames`` lists a facility-day of the edges' sampled frames, sets unreadable files
aside and deletes frames past the retention period."""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from assets.model_quality.unlabeled_frames import unlabeled_frames
from contract.frames import Frame
from edge.sampling.sampler import FrameSampler
from orchestration.settings import OrchestrationSettings


def test_a_facility_day_of_sampled_frames_becomes_a_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "state"
    monkeypatch.setenv("WV_STATE_DIR", str(state))
    monkeypatch.delenv("WV_MODEL_STORE", raising=False)
    monkeypatch.setenv("WV_UNLABELED_RETENTION_DAYS", "14")
    root = state / "models" / "unlabeled"
    day = datetime.now(UTC).date() - timedelta(days=1)
    old = day - timedelta(days=30)
    sampler = FrameSampler("FAC-001", root, interval_s=1.0, max_per_day=100)
    for d in (day, old):
        t0 = datetime(d.year, d.month, d.day, 9, tzinfo=UTC).timestamp()
        for i in range(3):
            for camera in ("cam-1", "cam-2"):
                image = np.full((36, 64, 3), 40 * i, np.uint8)
                sampler.offer(Frame(camera_id=camera, index=i, timestamp=t0 + i, image=image))
    sampler.close()
    broken = root / "FAC-001" / "cam-2" / day.isoformat() / "091500.000000-7.jpg"
    broken.write_bytes(b"not a jpeg")

    result = dg.materialize(
        [unlabeled_frames],
        partition_key=dg.MultiPartitionKey({"date": day.isoformat(), "facility": "FAC-001"}),
        resources={"settings": OrchestrationSettings.load(state_dir=state)},
    )

    metadata = result.asset_materializations_for_node("unlabeled_frames")[0].metadata
    assert metadata["frames"].value == 6 and metadata["rejected"].value == 1
    assert metadata["expired_day_folders"].value == 2
    manifest = json.loads((state / "datasets" / "unlabeled" / "FAC-001" / f"{day}.json").read_text())
    assert {k: len(v) for k, v in manifest["frames"].items()} == {"cam-1": 3, "cam-2": 3}
    assert all((Path(manifest["root"]) / f).is_file() for v in manifest["frames"].values() for f in v)
    assert (
        root / "_rejected" / "FAC-001" / "cam-2" / day.isoformat() / broken.name
    ).read_bytes() == b"not a jpeg"
    assert not (root / "FAC-001" / "cam-1" / old.isoformat()).exists()
