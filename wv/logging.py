"""Structured logging for every ``wv`` process: JSON lines or console text (``WV_LOG_FORMAT``).

Secrets never reach a log line: passwords inside URLs, bearer tokens and the values of every
secret setting (``SecretStr`` fields) are masked after formatting, whatever logger wrote them.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from pydantic import SecretStr

from wv.settings import Settings

MASK = "***"
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)(?P<secret>[^@\s]+)(?P<at>@)")
_BEARER = re.compile(r"(?i)(?P<head>bearer\s+)(?P<secret>[A-Za-z0-9._~+/=-]+)")
_PASSWORD_PARAM = re.compile(r"(?i)(?P<head>\bpassword=)(?P<secret>[^\s&]+)")
# Attributes every LogRecord has; anything else came from ``extra=`` and is logged as a field.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


def secret_values(settings: Settings) -> list[str]:
    """The values of all secret settings that are set (to be masked wherever they appear)."""
    values = []
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr) and value.get_secret_value():
            values.append(value.get_secret_value())
    return values


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with URL passwords, bearer tokens, ``password=`` values and ``secrets`` masked."""
    for pattern in (_URL_PASSWORD, _BEARER, _PASSWORD_PARAM):
        text = pattern.sub(lambda m: m["head"] + MASK + (m.groupdict().get("at") or ""), text)
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 4:  # masking "a" everywhere would hide more than the secret
            text = text.replace(secret, MASK)
    return text


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


def configure_logging(settings: Settings) -> None:
    """Route the root logger to stderr in the configured format and level (idempotent)."""
    secrets = secret_values(settings)
    formatter: logging.Formatter = (
        JsonFormatter(secrets) if settings.log_format == "json" else ConsoleFormatter(secrets)
    )
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_wv", False)]:
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    handler._wv = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    for noisy in ("kafka", "urllib3", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
