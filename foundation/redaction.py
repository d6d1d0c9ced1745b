"""Masking secrets in text: URL passwords, bearer tokens, ``password=`` values and secret settings.

Used by the log formatters, by configuration errors (a bad URL may carry a password) and by every
command that prints a service URL.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from pydantic import BaseModel, SecretStr

MASK = "***"
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)(?P<secret>[^@\s]+)(?P<at>@)")
_BEARER = re.compile(r"(?i)(?P<head>bearer\s+)(?P<secret>[A-Za-z0-9._~+/=-]+)")
_PASSWORD_PARAM = re.compile(r"(?i)(?P<head>\bpassword=)(?P<secret>[^\s&]+)")


def secret_values(settings: BaseModel) -> list[str]:
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


def display_url(url: str) -> str:
    """The URL with any password masked, for output and logs."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return url
