"""A client channel to ``WarehouseVisionService`` that sends the bearer token on every call and
gives every unary call a deadline.

Works on plaintext channels too (gRPC call credentials require TLS), which is what local
development and the tests use; with ``root_certificates`` the channel is TLS, and with a client
key and certificate as well, mTLS. A unary call whose caller passes no ``timeout`` gets
``call_timeout_s`` (``WV_GRPC_CALL_TIMEOUT_S``): without one a call to a centre that hangs would
wait for ever. Streams keep what the caller passes (they are long-lived by design).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from contract.proto import warehouse_vision_pb2_grpc as pb_grpc
from realtime.settings import CentreSettings


class _BearerToken(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    def __init__(self, token: str) -> None:
        self._header = ("authorization", f"Bearer {token}")

    def _details(self, details: Any) -> Any:
        metadata = [*(details.metadata or ()), self._header]
        return details._replace(metadata=metadata)

    def _call(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    intercept_unary_unary = _call
    intercept_unary_stream = _call
    intercept_stream_unary = _call
    intercept_stream_stream = _call


class _DefaultDeadline(grpc.UnaryUnaryClientInterceptor):
    def __init__(self, timeout_s: float) -> None:
        self._timeout_s = timeout_s

    def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        if details.timeout is None:
            details = details._replace(timeout=self._timeout_s)
        return continuation(details, request)


def channel(
    address: str,
    token: str | None,
    *,
    root_certificates: bytes | None = None,
    private_key: bytes | None = None,
    certificate_chain: bytes | None = None,
    max_message_bytes: int = 16 * 1024 * 1024,
    call_timeout_s: float = CentreSettings.model_fields["grpc_call_timeout_s"].default,
) -> grpc.Channel:
    """A channel to ``address``; with ``token`` every call carries ``authorization: Bearer``, and
    a unary call without a ``timeout`` gets ``call_timeout_s``."""
    options = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
    ]
    if root_certificates is None:
        base = grpc.insecure_channel(address, options=options)
    else:
        credentials = grpc.ssl_channel_credentials(root_certificates, private_key, certificate_chain)
        base = grpc.secure_channel(address, credentials, options=options)
    interceptors = [_DefaultDeadline(call_timeout_s), *([_BearerToken(token)] if token else [])]
    return grpc.intercept_channel(base, *interceptors)


def stub(channel: grpc.Channel) -> pb_grpc.WarehouseVisionServiceStub:
    return pb_grpc.WarehouseVisionServiceStub(channel)
