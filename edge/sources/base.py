"""The frame-source contract the edge runtime reads cameras through.

A source is built closed, opened explicitly (or by `with` / the first read), delivers `Frame`s
from `read()` and raises `SourceError` when it cannot: `EndOfStream` for a finite source that is
done, plain `SourceError` for failures the runtime may retry (reconnect policy lives above this).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from types import TracebackType

from contract.frames import Frame


class SourceError(RuntimeError):
    """The source could not open or could not deliver the next frame."""


class EndOfStream(SourceError):
    """A finite source (file, bounded simulation) has no more frames."""


class FrameSource(ABC):
    """One camera's frames. Subclasses implement `_open`, `_read` and `_close`."""

    def __init__(self, name: str, camera_id: str) -> None:
        self.name = name
        """Printable identity of the source (credentials removed)."""
        self.camera_id = camera_id
        self._open_now = False

    @property
    def is_open(self) -> bool:
        return self._open_now

    def open(self) -> None:
        """Connect / start; idempotent. Raises SourceError when the source is unreachable."""
        if not self._open_now:
            self._open()
            self._open_now = True

    def read(self) -> Frame:
        """The next frame (opening first if needed)."""
        self.open()
        return self._read()

    def close(self) -> None:
        """Release the device or file; idempotent, and the source may be opened again."""
        if self._open_now:
            self._open_now = False
            self._close()

    def __iter__(self) -> Iterator[Frame]:
        """Frames until the end of a finite source; failures propagate as SourceError."""
        while True:
            try:
                frame = self.read()
            except EndOfStream:
                return
            yield frame

    def __enter__(self) -> FrameSource:
        self.open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, camera_id={self.camera_id!r})"

    @abstractmethod
    def _open(self) -> None: ...

    @abstractmethod
    def _read(self) -> Frame: ...

    @abstractmethod
    def _close(self) -> None: ...


class Pacer:
    """Holds a recorded or simulated stream to its frame rate, as a live camera would deliver it."""

    def __init__(self, fps: float, speed: float = 1.0) -> None:
        self.period = 1.0 / (fps * speed)
        self._start: float | None = None

    def wait(self, index: int) -> None:
        """Sleep until frame `index` is due (the first call starts the clock)."""
        now = time.monotonic()
        if self._start is None:
            self._start = now - index * self.period
        delay = self._start + index * self.period - now
        if delay > 0:
            time.sleep(delay)
