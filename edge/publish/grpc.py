"""gRPC transport: one long-lived `StreamDetectionEvents` stream; each `DetectionBatch` waits for
its `InferenceAck`, which the centre sends only after the durable write.

The bearer token (``WV_GRPC_TOKEN``) goes in the `authorization` metadata; with a CA bundle the
channel uses TLS, and with a client certificate and key it presents them (mTLS; without a CA
bundle the system's roots verify the centre). The key is read when the channel opens and kept only
inside gRPC's credentials. Any stream error or timeout tears the stream down (cancelling the
call, which stops the centre retrying the abandoned batch); the next send opens a new one.

Each stream carries a deadline (``transport.grpc_stream_deadline_s``). A send that finds less than
its ``timeout_s`` left on the stream first closes it (half-close: the centre ends the call cleanly,
every earlier batch being acknowledged already) and opens a new one, so no batch is in flight when a
deadline passes, and a load balancer gets to place long-lived streams afresh every few minutes.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from contract.proto import warehouse_vision_pb2 as pb
from edge.publish.base import Delivery, Transport, TransportError
from edge.publish.wire import Outgoing, batch_bytes

_END = object()
STREAM_METHOD = "/warehouse_vision.v1.WarehouseVisionService/StreamDetectionEvents"


def _as_is(request: bytes) -> bytes:
    return request


class GrpcTransport(Transport):
    name = "grpc"

    def __init__(
        self,
        address: str,
        token: str | None = None,
        tls_ca: Path | None = None,
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
        stream_deadline_s: float = 300.0,
    ) -> None:
        if (tls_cert is None) != (tls_key is None):
            raise ValueError("a client certificate needs its key, and a key its certificate")
        self.address = address
        self.token = token
        self.tls_ca = tls_ca
        self.tls_cert = tls_cert
        self.tls_key = tls_key
        self.stream_deadline_s = stream_deadline_s
        self._channel: Any = None
        self._call: Any = None
        self._expires = 0.0
        """When the open stream's deadline passes (monotonic)."""
        self._requests: queue.Queue[object] = queue.Queue()
        self._acks: queue.Queue[object] = queue.Queue()

    def _open(self) -> None:
        if self._call is not None:
            return
        if self._channel is None:
            self._channel = open_channel(self.address, self.tls_ca, self.tls_cert, self.tls_key)
        self._requests, self._acks = queue.Queue(), queue.Queue()
        metadata = [("authorization", f"Bearer {self.token}")] if self.token else []
        requests = self._requests

        def outgoing() -> Iterator[bytes]:
            while (item := requests.get()) is not _END:
                yield item  # type: ignore[misc]

        # The batches are already serialised (edge.publish.wire): the stub's serializer is skipped.
        stream = self._channel.stream_stream(
            STREAM_METHOD, request_serializer=_as_is, response_deserializer=pb.InferenceAck.FromString
        )
        self._call = stream(outgoing(), metadata=metadata, timeout=self.stream_deadline_s)
        self._expires = time.monotonic() + self.stream_deadline_s
        threading.Thread(target=self._read_acks, args=(self._call, self._acks), daemon=True).start()
        self.connects += 1

    @staticmethod
    def _read_acks(call: Any, acks: queue.Queue[object]) -> None:
        try:
            for ack in call:
                acks.put(ack)
        except Exception as exc:  # the stream failed: hand the error to the waiting sender
            acks.put(exc)
        else:
            acks.put(TransportError("the centre closed the stream"))

    def send(self, events: Sequence[Outgoing], timeout_s: float) -> Delivery:
        if self._call is not None and self._expires - time.monotonic() < timeout_s:
            self._finish()  # this batch might still be waiting for its ack when the deadline passes
        self._open()
        batch_id = str(uuid.uuid4())
        self._requests.put(batch_bytes(batch_id, events))
        try:
            while True:
                item = self._acks.get(timeout=timeout_s)
                if isinstance(item, Exception):
                    raise TransportError(f"gRPC stream to {self.address} failed: {describe(item)}")
                if isinstance(item, pb.InferenceAck) and item.batch_id == batch_id:
                    return Delivery(
                        acked=list(item.acknowledged_event_ids),
                        rejected={r.event_id: r.reason for r in item.rejected},
                    )
        except queue.Empty:
            self._reset()
            raise TransportError(f"no acknowledgement from {self.address} within {timeout_s:.1f}s") from None
        except TransportError:
            self._reset()
            raise

    def _finish(self) -> None:
        """Close the stream cleanly: no more batches, and the centre ends the call with OK."""
        self._call = None
        self._requests.put(_END)

    def _reset(self) -> None:
        """Abandon the stream: cancelling tells the centre to stop working on the last batch."""
        call = self._call
        self._finish()
        if call is not None:
            call.cancel()

    def close(self) -> None:
        self._reset()
        if self._channel is not None:
            self._channel.close()
            self._channel = None


def open_channel(address: str, tls_ca: Path | None, tls_cert: Path | None, tls_key: Path | None) -> Any:
    """A channel to the centre: TLS with a CA bundle or a client certificate (mTLS), else plaintext."""
    import grpc

    if tls_ca is None and tls_cert is None:
        return grpc.insecure_channel(address)
    try:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=tls_ca.read_bytes() if tls_ca else None,
            private_key=tls_key.read_bytes() if tls_key else None,
            certificate_chain=tls_cert.read_bytes() if tls_cert else None,
        )
    except OSError as exc:  # a file went away after start-up: retried like any transport failure
        raise TransportError(f"cannot read TLS file {exc.filename}: {exc.strerror}") from None
    return grpc.secure_channel(address, credentials)


def describe(exc: Exception) -> str:
    code = getattr(exc, "code", None)
    details = getattr(exc, "details", None)
    if callable(code) and callable(details):
        return f"{code().name}: {details()}"
    return str(exc)
