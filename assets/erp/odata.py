"""OData V2 ``$batch`` bodies: build a multipart request, parse the multipart response.

Every operation goes in its own change set, so one refused record rolls back only itself; the
response then holds exactly one HTTP response per operation, in order (a change set answers
either with its operations' responses or, when it failed, with one error response).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

_CRLF = "\r\n"
_BLANK = re.compile(rb"\r?\n\r?\n")
_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)


@dataclass(frozen=True)
class BatchRequest:
    """One operation: ``method`` on ``path`` (relative to the service root) with an optional JSON body."""

    method: str
    path: str
    body: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class BatchResponse:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def json(self) -> Any:
        return json.loads(self.body) if self.body.strip() else None

    def error_message(self) -> str:
        """The OData error text (``error.message.value``), else the start of the body."""
        try:
            error = (self.json() or {})["error"]
            message = error.get("message")
            text = message.get("value") if isinstance(message, dict) else message
            return f"{error.get('code', '')}: {text}".strip(": ")
        except (ValueError, KeyError, TypeError, AttributeError):
            return self.body[:200].decode("utf-8", "replace")


def build(requests: Sequence[BatchRequest]) -> tuple[str, bytes]:
    """``(content type, body)`` of a ``$batch`` with one change set per request."""
    batch = f"batch_{uuid.uuid4().hex}"
    lines: list[str] = []
    for index, request in enumerate(requests, start=1):
        changeset = f"changeset_{uuid.uuid4().hex}"
        payload = json.dumps(request.body, separators=(",", ":")) if request.body is not None else ""
        lines += [
            f"--{batch}",
            f"Content-Type: multipart/mixed; boundary={changeset}",
            "",
            f"--{changeset}",
            "Content-Type: application/http",
            "Content-Transfer-Encoding: binary",
            f"Content-ID: {index}",
            "",
            f"{request.method} {request.path} HTTP/1.1",
            "Content-Type: application/json",
            "Accept: application/json",
            f"Content-Length: {len(payload.encode())}",
            "",
            payload,
            f"--{changeset}--",
            "",
        ]
    lines += [f"--{batch}--", ""]
    return f"multipart/mixed; boundary={batch}", _CRLF.join(lines).encode()


def boundary_of(content_type: str) -> str:
    match = _BOUNDARY.search(content_type)
    if not match:
        raise ValueError(f"no multipart boundary in {content_type!r}")
    return match.group(1)


def split_parts(body: bytes, boundary: str) -> list[tuple[dict[str, str], bytes]]:
    """The ``(headers, content)`` of each part of a multipart body."""
    delimiter = b"--" + boundary.encode()
    parts = []
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break
        chunk = chunk.removeprefix(b"\r\n").removeprefix(b"\n").removesuffix(b"\r\n").removesuffix(b"\n")
        head, content = _split_head(chunk)
        parts.append((head, content))
    return parts


def _split_head(chunk: bytes) -> tuple[dict[str, str], bytes]:
    match = _BLANK.search(chunk)
    head, content = (chunk[: match.start()], chunk[match.end() :]) if match else (chunk, b"")
    headers = {}
    for line in head.decode("latin-1").splitlines():
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return headers, content


def _http_response(content: bytes) -> BatchResponse:
    status_line, _, rest = content.partition(b"\n")
    fields = status_line.decode("latin-1").split()
    if len(fields) < 2 or not fields[1].isdigit():
        raise ValueError(f"not an HTTP response line: {status_line[:80]!r}")
    headers, body = _split_head(b"\r\n" + rest) if rest.strip() else ({}, b"")
    return BatchResponse(int(fields[1]), headers, body)


def parse(content_type: str, body: bytes) -> list[BatchResponse]:
    """One response per change set (or per query operation), in request order."""
    responses: list[BatchResponse] = []
    for headers, content in split_parts(body, boundary_of(content_type)):
        kind = headers.get("content-type", "")
        if kind.lower().startswith("multipart/mixed"):
            inner = split_parts(content, boundary_of(kind))
            responses.extend(_http_response(part) for _, part in inner[:1])
        else:
            responses.append(_http_response(content))
    return responses
