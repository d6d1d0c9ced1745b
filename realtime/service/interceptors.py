"""Server interceptors: bearer-token authentication and Prometheus timing by method and code.

Authentication runs before any handler, so a call without the right token is answered
``UNAUTHENTICATED`` and nothing is read or written. The token is compared in constant time and
never logged. The health service is exempt so load balancers and probes need no secret.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from realtime import metrics

log = logging.getLogger(__name__)

HEALTH_PREFIX = "/grpc.health.v1.Health/"

Behavior = Callable[..., Any]


def _rebuild(
    handler: grpc.RpcMethodHandler, wrap: Callable[[Behavior, bool], Behavior]
) -> grpc.RpcMethodHandler:
    """The same handler with its behaviour wrapped; ``wrap(behavior, streams_response)``."""
    kinds = (
        ("unary_unary", grpc.unary_unary_rpc_method_handler, False),
        ("unary_stream", grpc.unary_stream_rpc_method_handler, True),
        ("stream_unary", grpc.stream_unary_rpc_method_handler, False),
        ("stream_stream", grpc.stream_stream_rpc_method_handler, True),
    )
    for attr, factory, streams in kinds:
        behavior = getattr(handler, attr)
        if behavior is not None:
            return factory(
                wrap(behavior, streams),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
    return handler


class TokenAuthInterceptor(grpc.ServerInterceptor):
    """Requires ``authorization: Bearer <token>`` metadata on every call but health checks."""

    def __init__(self, token: str, exempt_prefixes: tuple[str, ...] = (HEALTH_PREFIX,)) -> None:
        if not token:
            raise ValueError("an empty token would let everyone in")
        self._expected = f"Bearer {token}".encode()
        self._exempt = exempt_prefixes

    def _authorized(self, details: grpc.HandlerCallDetails) -> bool:
        for key, value in details.invocation_metadata or ():
            if key == "authorization":
                given = value.encode() if isinstance(value, str) else value
                return hmac.compare_digest(given, self._expected)
        return False

    def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None], details: Any
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(details)
        if handler is None or details.method.startswith(self._exempt) or self._authorized(details):
            return handler

        def deny(behavior: Behavior, streams: bool) -> Behavior:
            def rejected(request: Any, context: grpc.ServicerContext) -> Any:
                context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid bearer token")

            return rejected

        log.info("rejected unauthenticated call to %s", details.method)
        return _rebuild(handler, deny)


class MetricsInterceptor(grpc.ServerInterceptor):
    """Observes ``wv_grpc_server_handling_seconds{method, code}`` for every call."""

    def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None], details: Any
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(details)
        if handler is None:
            return None
        method = details.method

        def observe(started: float, context: grpc.ServicerContext, failed: bool) -> None:
            code = context.code() if hasattr(context, "code") else None
            if code is None:
                code = grpc.StatusCode.UNKNOWN if failed else grpc.StatusCode.OK
            name = code.name if isinstance(code, grpc.StatusCode) else str(code)
            metrics.GRPC_SECONDS.labels(method, name).observe(time.perf_counter() - started)

        def timed(behavior: Behavior, streams: bool) -> Behavior:
            if streams:

                def streaming(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                    started = time.perf_counter()
                    failed = True
                    try:
                        yield from behavior(request, context)
                        failed = False
                    finally:
                        observe(started, context, failed)

                return streaming

            def unary(request: Any, context: grpc.ServicerContext) -> Any:
                started = time.perf_counter()
                failed = True
                try:
                    response = behavior(request, context)
                    failed = False
                    return response
                finally:
                    observe(started, context, failed)

            return unary

        return _rebuild(handler, timed)
