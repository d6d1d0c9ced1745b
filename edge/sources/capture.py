"""Sources backed by OpenCV's VideoCapture: recorded files and RTSP cameras."""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import cv2

from contract.frames import Frame, PackageTruth
from edge.sources.base import EndOfStream, FrameSource, Pacer, SourceError
from simulator.records import sidecar_path, truth_from_dict


class FileSource(FrameSource):
    """A video file; ground truth and timestamps come from its sidecar JSONL when one exists."""

    def __init__(
        self, path: Path, camera_id: str, *, realtime: bool = False, start_time: float | None = None
    ) -> None:
        super().__init__(f"file://{path}", camera_id)
        self.path = path
        self.realtime = realtime
        self.start_time = start_time
        self._cap: cv2.VideoCapture | None = None
        self._truth: dict[int, tuple[float, list[PackageTruth]]] = {}
        self._index = 0
        self._t0 = 0.0
        self._fps = 30.0
        self._pacer: Pacer | None = None

    def _open(self) -> None:
        if not self.path.is_file():
            raise SourceError(f"{self.name}: no such video file")
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            raise SourceError(f"{self.name}: OpenCV cannot decode this file")
        self._cap = cap
        self._fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
        self._truth = _read_sidecar(sidecar_path(self.path))
        self._index = 0
        self._t0 = time.time() if self.start_time is None else self.start_time
        self._pacer = Pacer(self._fps) if self.realtime else None

    def _read(self) -> Frame:
        assert self._cap is not None
        ok, image = self._cap.read()
        if not ok:
            raise EndOfStream(f"{self.name}: end of file after {self._index} frames")
        index = self._index
        self._index += 1
        if self._pacer is not None:
            if index == 0 and self.start_time is None:
                self._t0 = time.time()  # the pacer's clock starts now: timestamps are its due times
            self._pacer.wait(index)
        timestamp, truth = self._truth.get(index, (self._t0 + index / self._fps, []))
        return Frame(self.camera_id, index, timestamp, image, truth)

    def _close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


def _read_sidecar(path: Path) -> dict[int, tuple[float, list[PackageTruth]]]:
    if not path.is_file():
        return {}
    out = {}
    with path.open() as f:
        for line in f:
            rec = json.loads(line)
            out[int(rec["index"])] = (float(rec["timestamp"]), [truth_from_dict(p) for p in rec["packages"]])
    return out


class RtspSource(FrameSource):
    """A network camera through FFmpeg; a failed open or read raises SourceError (no retries here)."""

    def __init__(self, uri: str, camera_id: str, *, timeout_s: float = 10.0) -> None:
        super().__init__(redact(uri), camera_id)
        self.uri = uri
        self.timeout_ms = int(timeout_s * 1000)
        self._cap: cv2.VideoCapture | None = None
        self._index = 0

    def _open(self) -> None:
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            self.timeout_ms,
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            self.timeout_ms,
        ]
        cap = cv2.VideoCapture(self.uri, cv2.CAP_FFMPEG, params)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"{self.name}: cannot connect (unreachable, refused or not a video stream)")
        self._cap = cap
        self._index = 0

    def _read(self) -> Frame:
        assert self._cap is not None
        ok, image = self._cap.read()
        if not ok or image is None:
            raise SourceError(f"{self.name}: read failed after {self._index} frames (stream lost)")
        index = self._index
        self._index += 1
        return Frame(self.camera_id, index, time.time(), image)

    def _close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


def redact(uri: str) -> str:
    """The URI with any password replaced, for logs and names."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
