"""Frame sources for the edge: the synthetic conveyor, recorded video files and RTSP cameras.

`open_source(uri, camera_id)` builds one from a camera URI; `edge.sources.synthetic` renders
the training data; `edge.sources.dataset` / `edge.sources.video` write it to disk.
"""

from .base import EndOfStream, FrameSource, SourceError
from .factory import open_source

__all__ = ["EndOfStream", "FrameSource", "SourceError", "open_source"]
