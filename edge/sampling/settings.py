"""Settings of the edge's frame sampler and of how long the centre keeps the frames."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from foundation.settings import StateSettings


class FrameSamplingSettings(StateSettings):
    """Unlabeled frames for self-supervised adaptation. Frames are camera pixels: they may show
    people, so sampling is off unless switched on, keeps few frames, and they are deleted after
    ``unlabeled_retention_days``."""

    frame_sampling: bool = Field(
        False,
        description=(
            "The edge keeps a rate-limited sample of each camera's frames (JPEG, with facility, camera and "
            "capture time in the path) for self-supervised adaptation; off in production unless the site's "
            "privacy review allows it, on in the demo."
        ),
    )
    frame_sample_interval_s: float = Field(
        60.0, gt=0, description="At most one sampled frame per camera per this many seconds of capture time."
    )
    frame_sample_max_per_day: int = Field(
        200, ge=1, description="At most this many sampled frames per camera and (UTC) capture day."
    )
    frame_sample_dir: Path | None = Field(
        None,
        description="Where sampled frames go; default `<model store>/unlabeled` (shared with the centre).",
    )
    frame_sample_jpeg_quality: int = Field(85, ge=10, le=100, description="JPEG quality of sampled frames.")
    unlabeled_retention_days: int = Field(
        14, ge=1, description="The centre deletes sampled frames this many days after their capture day."
    )

    @property
    def frames_dir(self) -> Path:
        return self.frame_sample_dir or self.models_dir / "unlabeled"
