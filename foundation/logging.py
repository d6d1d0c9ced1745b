"""Structured logging for every ``wv`` process: JSON lines or console text (``WV_LOG_FORMAT``).

Secrets never reach a log line: passwords inside URLs, bearer tokens and the values of every
secret setting (``SecretStr`` fields) are masked after formatting, whatever logger wrote them.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from foundation.redaction import redact

# Attributes every LogRecord has; anything else came from ``extra=`` and is logged as a field.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


class _Redacting(logging.Formatter):
    def __init__(self, secrets: Iterable[str], fmt: str | None = None) -> None:
        super().__init__(fmt)
        self.secrets = list(secrets)

    def format(self, record: logging.LogRecord) -> str:
        return redact(self.render(record), self.secrets)

    def render(self, record: logging.LogRecord) -> str:
        return super().format(record)


class JsonFormatter(_Redacting):
    """One JSON object per line: time, level, logger, message, ``extra=`` fields, exception."""

    def render(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class ConsoleFormatter(_Redacting):
    """``time level logger: message key=value ...`` for people at a terminal."""

    def render(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S.%f")[:-3]
        fields = " ".join(f"{k}={v}" for k, v in vars(record).items() if k not in _STANDARD)
        line = f"{when} {record.levelname:<7} {record.name}: {record.getMessage()}"
        line += f" {fields}" if fields else ""
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure_logging(level: str, fmt: str, secrets: Iterable[str] = ()) -> None:
    """Route the root logger to stderr in format `fmt` (json or console) at `level` (idempotent)."""
    formatter: logging.Formatter = JsonFormatter(secrets) if fmt == "json" else ConsoleFormatter(secrets)
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_wv", False)]:
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    handler._wv = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("kafka", "urllib3", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
