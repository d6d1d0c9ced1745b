"""Camera URIs → frame sources, rejecting anything malformed before the runtime starts.

synthetic://seed=1&fps=30&drift=six_weeks_later&realtime=0   (also synthetic://?seed=1…)
file:///var/lib/wv/clip.mp4?realtime=1
/var/lib/wv/clip.mp4 or ./clip.mp4                            (a bare path: the file:// source)
rtsp://user:pass@10.0.0.12:554/stream1                        (rtsps:// too)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from pydantic import ValidationError

from edge.sources.base import FrameSource
from edge.sources.capture import FileSource, RtspSource, redact
from edge.sources.simulated import SyntheticSource
from simulator import PRESETS, SimConfig


def _bool(v: str) -> bool:
    if v.lower() in ("1", "true", "yes", "on"):
        return True
    if v.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected 1/0/true/false")


def _drift(v: str) -> str:
    if v not in PRESETS:
        raise ValueError(f"expected one of {sorted(PRESETS)}")
    return v


_SYNTHETIC: dict[str, Callable[[str], Any]] = {
    "seed": int,
    "fps": float,
    "drift": _drift,
    "realtime": _bool,
    "speed": float,
    "frames": int,
    "start_time": float,
    "width": int,
    "height": int,
    "belt_speed": float,
    "arrival_rate": float,
    "misplaced": float,
    "n_skus": int,
}
_FILE: dict[str, Callable[[str], Any]] = {"realtime": _bool, "start_time": float}
_SIM_FIELDS = {"fps", "width", "height", "belt_speed", "arrival_rate", "n_skus"}


def open_source(uri: str, camera_id: str, *, realtime: bool | None = None) -> FrameSource:
    """Build the source for `uri` (not yet opened; `with` or `.open()` connects it).

    `realtime` overrides the URI's pacing. Raises ValueError naming the problem for an unknown
    scheme, an unknown parameter or a bad value.
    """
    if _is_path(uri):
        return _file(Path(uri).expanduser().resolve().as_uri(), camera_id, realtime)
    scheme = uri.split(":", 1)[0].lower() if ":" in uri else ""
    if scheme == "synthetic":
        return _synthetic(uri, camera_id, realtime)
    if scheme == "file":
        return _file(uri, camera_id, realtime)
    if scheme in ("rtsp", "rtsps"):
        if not urlsplit(uri).hostname:
            raise ValueError(f"{redact(uri)}: RTSP URI needs a host, e.g. rtsp://10.0.0.12:554/stream1")
        return RtspSource(uri, camera_id)
    raise ValueError(
        f"unsupported camera URI {redact(uri)!r}: scheme must be synthetic://, file:// or rtsp(s)://"
        " (or a file path: /abs/clip.mp4, ./clip.mp4)"
    )


def _is_path(uri: str) -> bool:
    """A bare file path: no scheme, and a folder or a file suffix (``camera-7`` stays an error)."""
    return "://" not in uri and (uri.startswith(("/", "./", "../", "~")) or bool(Path(uri).suffix))


def _params(uri: str, query: str, allowed: dict[str, Callable[[str], Any]]) -> dict[str, Any]:
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise ValueError(f"{uri}: malformed parameters {query!r} (expected key=value&key=value)") from None
    out: dict[str, Any] = {}
    for key, raw in pairs:
        if key not in allowed:
            raise ValueError(f"{uri}: unknown parameter {key!r}; allowed: {sorted(allowed)}")
        try:
            out[key] = allowed[key](raw)
        except ValueError as e:
            raise ValueError(f"{uri}: bad value {raw!r} for {key!r}: {e}") from None
    return out


def _synthetic(uri: str, camera_id: str, realtime: bool | None) -> SyntheticSource:
    query = uri.split(":", 1)[1].removeprefix("//").removeprefix("?")
    p = _params(uri, query, _SYNTHETIC)
    sim = {k: p[k] for k in _SIM_FIELDS if k in p}
    if "misplaced" in p:
        sim["misplaced_fraction"] = p["misplaced"]
    try:
        config = SimConfig(**sim)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
        raise ValueError(f"{uri}: {problems}") from None
    for key in ("speed", "frames"):
        if key in p and p[key] <= 0:
            raise ValueError(f"{uri}: {key} must be > 0")
    return SyntheticSource(
        camera_id,
        config=config,
        seed=p.get("seed", 0),
        drift=p.get("drift"),
        realtime=p.get("realtime", True) if realtime is None else realtime,
        speed=p.get("speed", 1.0),
        frames=p.get("frames"),
        start_time=p.get("start_time"),
        name=uri,
    )


def _file(uri: str, camera_id: str, realtime: bool | None) -> FileSource:
    parts = urlsplit(uri)
    if parts.netloc not in ("", "localhost"):
        raise ValueError(f"{uri}: file URIs name a local path: file:///abs/path.mp4")
    if not parts.path:
        raise ValueError(f"{uri}: missing path; expected file:///abs/path.mp4")
    p = _params(uri, parts.query, _FILE)
    return FileSource(
        Path(unquote(parts.path)),
        camera_id,
        realtime=p.get("realtime", False) if realtime is None else realtime,
        start_time=p.get("start_time"),
    )
