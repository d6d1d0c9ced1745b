"""Bad camera input on a running edge: an undecodable file, a truncated one, one with corrupt
frames, a wrong (tiny) resolution, videos that end, and an RTSP camera that drops every
connection. Each is reported clearly and counted; none stops the service or the good camera,
whose events all reach the database once.

The centre's side of bad input (malformed, oversized, wrong-schema, far-future messages, unknown
facilities) is dead-lettered with its reason by the ingest worker: tests/realtime/ingest covers
each kind, and tests/fuzz/test_event_decoder.py fuzzes the decoder.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import cv2
import numpy as np
import psycopg
import pytest

from bench.reliability.faults import VanishingServer
from bench.reliability.pipeline import wait_stored
from simulator import SimConfig
from simulator.video import write_video

FACILITY = "FAC-003"


def _videos(directory: Path) -> dict[str, Path]:
    """garbage (not a video), truncated, corrupt (frames overwritten mid-file), tiny (32x24)."""
    directory.mkdir()
    clip = directory / "clip.avi"
    write_video(clip, 2.0, 3, config=SimConfig(fps=10))
    raw = clip.read_bytes()
    files = {name: directory / f"{name}.avi" for name in ("truncated", "corrupt", "tiny")}
    files["garbage"] = directory / "garbage.mp4"
    files["garbage"].write_bytes(os.urandom(20_000))
    files["truncated"].write_bytes(raw[: len(raw) * 4 // 10])
    damaged = bytearray(raw)
    for offset in range(len(raw) // 3, len(raw) * 2 // 3, 997):
        damaged[offset : offset + 50] = os.urandom(50)
    files["corrupt"].write_bytes(bytes(damaged))
    writer = cv2.VideoWriter(str(files["tiny"]), cv2.VideoWriter.fourcc(*"MJPG"), 10, (32, 24))
    for _ in range(20):
        writer.write(np.random.default_rng(0).integers(0, 255, (24, 32, 3), dtype=np.uint8))
    writer.release()
    return files


@pytest.mark.timeout(150)
def test_bad_sources_are_reported_and_counted_while_the_good_camera_keeps_delivering(
    pipeline, broker, endpoints_for, database_url, tmp_path
):
    files = _videos(tmp_path / "videos")
    endpoints = endpoints_for(broker)
    pipeline.ingest(endpoints)
    with VanishingServer() as camera:
        sources = {
            "cam-good": "synthetic://seed=23&fps=8",
            **{f"cam-{name}": f"file://{path}?realtime=1" for name, path in files.items()},
            "cam-rtsp": f"rtsp://admin:hunter2@127.0.0.1:{camera.port}/stream1",
        }
        edge = pipeline.edge(FACILITY, endpoints, cameras=list(sources.values()))
        ids = {cam: f"cam-{i + 1}" for i, cam in enumerate(sources)}  # EdgeNode numbers the cameras
        pipeline.start(wait_events=40)
        time.sleep(4)  # several reconnect rounds of the broken cameras
        metrics = edge.metrics()
        assert edge.process.alive and camera.dropped >= 1

    def counted(name: str, camera: str) -> float:
        return sum(v for (n, ls), v in metrics.items() if n == name and ("camera", ids[camera]) in ls)

    assert counted("wv_edge_source_errors_total", "cam-garbage") >= 2  # retried with backoff
    assert counted("wv_edge_source_errors_total", "cam-rtsp") >= 1
    # The decodable part of each damaged file is read; whether those few frames are processed
    # or dropped as over budget depends on how busy inference is, so count the capture.
    for cam in ("cam-tiny", "cam-truncated", "cam-corrupt"):
        assert counted("wv_edge_frames_captured_total", cam) > 0, cam
    assert counted("wv_edge_frames_total", "cam-good") > 0
    assert edge.process.stop() == 0
    log = edge.process.log_text()
    assert f"camera {ids['cam-garbage']}: file://{files['garbage']}: OpenCV cannot decode this file" in log
    assert f"camera {ids['cam-rtsp']}: rtsp://admin:***@127.0.0.1" in log and "cannot connect" in log
    assert "hunter2" not in log
    for cam in ("cam-tiny", "cam-truncated", "cam-corrupt"):
        assert f"camera {ids[cam]}: source ended" in log, cam

    ledger = wait_stored(pipeline.journals, database_url, [FACILITY], 60)
    assert not ledger.lost and ledger.duplicated == 0 and not ledger.extra, ledger.summary()
    assert ledger.dead_letters == 0  # whatever the frames, the edge sent only valid events
    with psycopg.connect(database_url) as conn:
        cameras = {r[0] for r in conn.execute("SELECT DISTINCT camera_id FROM package_detections")}
    assert ids["cam-good"] in cameras
