"""A synthetic camera streamed in several sessions renders each event's frame from its own session."""

from datetime import UTC, datetime

import numpy as np
import pytest

from assets.model_quality.crops import parse_synthetic_uri
from edge.sources.factory import open_source

DAY1 = datetime(2025, 3, 10, 9, tzinfo=UTC).timestamp()
DAY2 = datetime(2025, 3, 11, 9, tzinfo=UTC).timestamp()
FIRST = f"synthetic://seed=1&fps=10&width=320&height=180&start_time={DAY1:.0f}"
SECOND = f"synthetic://seed=2&fps=10&width=320&height=180&drift=six_weeks_later&start_time={DAY2:.0f}"


def _direct(uri: str, index: int) -> object:
    source = open_source(uri, "cam-1", realtime=False)
    with source:
        for _ in range(index):
            source.read()
        return source.read()


@pytest.mark.timeout(60)
def test_each_session_renders_the_frames_it_streamed() -> None:
    camera = parse_synthetic_uri("cam-1", f"{SECOND} {FIRST}")
    assert camera is not None

    for uri, start in ((FIRST, DAY1), (SECOND, DAY2)):
        when = datetime.fromtimestamp(start + 1.2, UTC)
        rendered = camera.render(camera.frame_index(when))
        streamed = _direct(uri, 12)
        assert np.array_equal(rendered.image, streamed.image)
        assert [t.package_id for t in rendered.truth] == [t.package_id for t in streamed.truth]


def test_a_session_without_start_time_is_named() -> None:
    with pytest.raises(ValueError, match="needs a start_time"):
        parse_synthetic_uri("cam-1", f"{FIRST} synthetic://seed=3&fps=10")


def test_one_uri_behaves_as_before() -> None:
    camera = parse_synthetic_uri("cam-1", FIRST)
    assert camera is not None and camera.sessions == ()
    assert parse_synthetic_uri("cam-1", "rtsp://10.0.0.1/stream") is None
    assert parse_synthetic_uri("cam-1", "synthetic://seed=1") is None
