"""Camera URIs: the three schemes open, and anything malformed is refused with a clear message."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from edge.sources import EndOfStream, SourceError, open_source


def test_synthetic_source_delivers_a_bounded_scene_with_truth() -> None:
    source = open_source("synthetic://seed=5&frames=4&realtime=0&width=320&height=180&start_time=50", "cam-s")
    frames = list(source)
    assert [f.index for f in frames] == [0, 1, 2, 3]
    assert frames[0].timestamp == 50.0 and frames[0].image.shape == (180, 320, 3)
    assert any(f.truth for f in frames)
    with pytest.raises(EndOfStream):
        source.read()
    source.close()
    assert [f.index for f in open_source("synthetic://?seed=5&frames=2&realtime=0", "cam-s")] == [0, 1]


def test_synthetic_source_paces_like_a_camera() -> None:
    source = open_source("synthetic://frames=6&fps=50&width=320&height=180", "cam")
    t0 = time.monotonic()
    list(source)
    assert time.monotonic() - t0 >= 5 / 50 * 0.9
    fast = open_source("synthetic://frames=6&fps=50&speed=10&width=320&height=180", "cam")
    t0 = time.monotonic()
    list(fast)
    assert time.monotonic() - t0 < 5 / 50


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("http://cam/stream", "scheme must be"),
        ("camera-7", "scheme must be"),
        ("synthetic://seed=x", "bad value 'x' for 'seed'"),
        ("synthetic://seed=1&colour=red", "unknown parameter 'colour'"),
        ("synthetic://drift=next_year", "six_weeks_later"),
        ("synthetic://width=10", "width"),
        ("synthetic://realtime=maybe", "realtime"),
        ("synthetic://frames=0", "frames must be > 0"),
        ("synthetic://seed", "malformed parameters"),
        ("file://host/clip.mp4", "local path"),
        ("file:///clip.mp4?loop=1", "unknown parameter 'loop'"),
        ("rtsp:///stream", "needs a host"),
    ],
)
def test_bad_uris_are_rejected_clearly(uri: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        open_source(uri, "cam")


def test_missing_file_and_unreachable_camera_raise_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no such video file"):
        open_source(f"file://{tmp_path}/none.mp4", "cam").open()
    with pytest.raises(SourceError, match="no such video file"):
        open_source(str(tmp_path / "none.mp4"), "cam").open()
    rtsp = open_source("rtsp://admin:secret@127.0.0.1:1/stream", "cam")
    assert "secret" not in rtsp.name and "secret" not in repr(rtsp)
    with pytest.raises(SourceError, match="cannot connect"):
        rtsp.open()
    assert not rtsp.is_open


def test_a_bare_file_path_is_a_file_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import cv2
    import numpy as np

    clip = tmp_path / "clip.avi"
    out = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 30, (64, 48))
    for i in range(3):
        out.write(np.full((48, 64, 3), i * 40, np.uint8))
    out.release()
    monkeypatch.chdir(tmp_path)
    for uri in (str(clip), "./clip.avi", "clip.avi"):
        with open_source(uri, "cam") as source:
            assert len(list(source)) == 3, uri
