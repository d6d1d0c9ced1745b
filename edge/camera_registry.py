"""Cameras from the centre's camera registry (``cameras_from: registry``), followed live.

The edge is installed without a database driver, so it reads the registry through the centre's
gRPC service (``ListCameras`` at ``transport.grpc_address``, with the edge's token and TLS files)
every ``camera_registry.poll_s``. The facility's enabled cameras — with the settings of the
file's camera of the same id, when the file lists one — go through the same path as a changed
``edge.yaml`` (``EdgeService.apply_cameras``): added, re-pointed and stopped without a restart,
each stopped camera's decisions written and its counts kept. A registry that cannot be read
(centre down, timeout, refused token, unknown facility) changes nothing: the cameras keep running
as they are, the outage is logged once and counted (``wv_edge_camera_registry_*``). A registered
camera that cannot be run (no source anywhere, a source the edge does not understand) is left out
with a log line and counted; the others are applied.

Several edges may split a facility's cameras (``camera_registry.shares``, several edge processes
on one GPU box): each takes only the cameras whose share (`share_of`) is its ``share_index``. The
share is a rendezvous hash of the camera id alone, the same in every process and release, so
every camera is run by exactly one share, registering or removing a camera moves no other camera,
and going from n to n + 1 shares moves only the cameras the new share takes (about 1 in n + 1).
The price is balance: shares are equal only on average (64 cameras over 2 shares: 32 ± 4), so
size each share with room to spare; ``wv_edge_camera_registry_other_shares`` shows the rest.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from prometheus_client.core import Metric
from pydantic import ValidationError

from contract.proto import warehouse_vision_pb2 as pb
from edge.config import CameraConfig, EdgeConfig
from edge.metrics import counter, gauge
from edge.publish.grpc import describe, open_channel

log = logging.getLogger(__name__)

LIST_CAMERAS = "/warehouse_vision.v1.WarehouseVisionService/ListCameras"


def share_of(camera_id: str, shares: int) -> int:
    """The share (0 to shares - 1) that runs `camera_id`: the highest of a keyed BLAKE2b per share
    (rendezvous hashing; never Python's per-process salted `hash`)."""

    def weight(share: int) -> bytes:
        return hashlib.blake2b(camera_id.encode(), digest_size=8, key=share.to_bytes(4, "big")).digest()

    return max(range(shares), key=weight)


class RegistryUnavailable(RuntimeError):
    """The registry could not be read; the message says why (never the token)."""


class RegistryClient:
    """Reads this edge's share of one facility's registered cameras from the centre."""

    def __init__(self, config: EdgeConfig, token: str | None) -> None:
        t = config.transport
        self.address = t.grpc_address
        self._tls = (t.grpc_tls_ca, t.grpc_tls_cert, t.grpc_tls_key)
        self._timeout_s = config.camera_registry.timeout_s
        self._metadata = [("authorization", f"Bearer {token}")] if token else []
        self._channel: Any = None
        self.shares = config.camera_registry.shares
        self.share_index = config.camera_registry.share_index
        self.other_shares = 0
        """Enabled registered cameras of the last read that belong to the other shares."""

    def takes(self, camera_id: str) -> bool:
        """`camera_id` belongs to this edge's share."""
        return self.shares == 1 or share_of(camera_id, self.shares) == self.share_index

    def cameras(self, facility: str) -> list[pb.RegisteredCamera]:
        try:
            if self._channel is None:
                self._channel = open_channel(self.address, *self._tls)
            call = self._channel.unary_unary(
                LIST_CAMERAS,
                request_serializer=pb.CameraListRequest.SerializeToString,
                response_deserializer=pb.CameraList.FromString,
            )
            reply = call(
                pb.CameraListRequest(facility_id=facility), timeout=self._timeout_s, metadata=self._metadata
            )
        except Exception as exc:  # grpc.RpcError, a TLS file gone: all mean "not now"
            raise RegistryUnavailable(f"camera registry at {self.address}: {describe(exc)}") from None
        mine = [c for c in reply.cameras if self.takes(c.camera_id)]
        self.other_shares = sum(c.enabled for c in reply.cameras) - sum(c.enabled for c in mine)
        return mine

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None


def registry_cameras(
    registered: Iterable[pb.RegisteredCamera], listed: Sequence[CameraConfig]
) -> tuple[list[CameraConfig], list[str]]:
    """The cameras to run (enabled ones, each with the file's settings for its id and the
    registry's source, else the file's) and a line per registered camera that cannot be run."""
    settings = {c.id: c for c in listed}
    cameras, problems = [], []
    for camera in registered:
        if not camera.enabled:
            continue
        base = settings.get(camera.camera_id)
        data = base.model_dump() if base is not None else {"id": camera.camera_id}
        data["source"] = camera.source_uri or data.get("source", "")
        if not data["source"]:
            problems.append(
                f"{camera.camera_id}: no source registered (`wv db cameras add ... --source URI`)"
            )
            continue
        try:
            cameras.append(CameraConfig.model_validate(data))
        except ValidationError as exc:
            reasons = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'camera'}: {e['msg']}" for e in exc.errors()
            )
            problems.append(f"{camera.camera_id}: {reasons}")
    return cameras, problems


class RegistryWatcher:
    """Polls the registry and hands each answer to `apply`; keeps the counts for the metrics."""

    def __init__(
        self,
        facility: str,
        client: RegistryClient,
        listed: Sequence[CameraConfig],
        apply: Callable[[list[CameraConfig]], object],
        poll_s: float,
    ) -> None:
        self.facility = facility
        self.client = client
        self.listed = list(listed)
        self.apply = apply
        self.poll_s = poll_s
        self.reads: Counter[str] = Counter()
        self.up = False
        self.last_read: float | None = None
        """time.monotonic() of the last successful read."""
        self.unrunnable: list[str] = []

    def read(self) -> list[CameraConfig] | None:
        """The cameras the registry names now, or None when it cannot be read (logged, counted)."""
        try:
            registered = self.client.cameras(self.facility)
        except RegistryUnavailable as exc:
            self.reads["failed"] += 1
            if self.up or self.reads["failed"] == 1:
                log.error("%s; cameras stay as they are", exc)
            self.up = False
            return None
        if not self.up and self.reads["failed"]:
            log.info("camera registry readable again")
        self.reads["ok"] += 1
        self.up, self.last_read = True, time.monotonic()
        cameras, problems = registry_cameras(registered, self.listed)
        if problems != self.unrunnable:
            for line in problems:
                log.error("registered camera left out: %s", line)
        self.unrunnable = problems
        return cameras

    def initial(self) -> list[CameraConfig]:
        """The cameras to start with: the registry's, or the file's while it cannot be read."""
        cameras = self.read()
        if cameras is None:
            listed = [c for c in self.listed if self.client.takes(c.id)]
            log.warning(
                "starting with the %d camera(s) of this share listed in the file until the registry answers",
                len(listed),
            )
            return listed
        return cameras

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self.poll_s):
            cameras = self.read()
            if cameras is not None:
                try:
                    self.apply(cameras)
                except Exception:  # never let one bad answer end the watcher
                    log.exception("applying the registry's cameras failed; cameras stay as they are")
        self.client.close()

    def collect(self) -> Iterable[Metric]:
        yield counter(
            "wv_edge_camera_registry_reads",
            "Reads of the centre's camera registry, by outcome (ok, failed).",
            ["outcome"],
            {(k,): v for k, v in self.reads.items()},
        )
        yield gauge("wv_edge_camera_registry_up", "1 while the last registry read succeeded.", float(self.up))
        yield gauge(
            "wv_edge_camera_registry_age_seconds",
            "Seconds since the registry was last read successfully.",
            None if self.last_read is None else time.monotonic() - self.last_read,
        )
        yield gauge(
            "wv_edge_camera_registry_other_shares",
            "Registered cameras of the facility left to the other edges sharing it (camera_registry.shares).",
            float(self.client.other_shares),
        )
        yield gauge(
            "wv_edge_camera_registry_unrunnable",
            "Enabled registered cameras this edge cannot run (no or bad source).",
            float(len(self.unrunnable)),
        )
