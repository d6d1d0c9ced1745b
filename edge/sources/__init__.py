"""Frame sources for the edge: the synthetic conveyor, recorded video files and RTSP cameras.

`open_source(uri, camera_id)` builds one from a camera URI; `simulator` renders
the training data; `simulator.dataset` / `simulator.video` write it to disk.
"""

from edge.sources.base import EndOfStream, FrameSource, SourceError
from edge.sources.factory import open_source

__all__ = ["EndOfStream", "FrameSource", "SourceError", "open_source"]
