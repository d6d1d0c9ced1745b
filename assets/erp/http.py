"""HTTP plumbing shared by the SAP and Salesforce adapters: URL policy, OAuth tokens, status triage."""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from assets.erp.base import ErpConfigError, RetryableError

TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def checked_url(url: str | None, variable: str) -> str:
    """``url`` if it is HTTPS (plain HTTP only on loopback, for local simulators); else a config error."""
    if not url:
        raise ErpConfigError(f"{variable} is not set")
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url.rstrip("/")
    if parts.scheme == "http" and parts.hostname in _LOOPBACK:
        return url.rstrip("/")
    raise ErpConfigError(f"{variable}: expected an https:// URL (http:// only on loopback), got {url!r}")


def retry_after(response: httpx.Response) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), if any."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def send(client: httpx.Client, request: httpx.Request) -> httpx.Response:
    """Send, turning network failures into :class:`RetryableError` (the dispatcher backs off)."""
    try:
        return client.send(request)
    except httpx.TransportError as exc:
        raise RetryableError(f"{type(exc).__name__} talking to {request.url.host}") from None


def raise_transient(response: httpx.Response, what: str) -> None:
    """Raise :class:`RetryableError` (with Retry-After) when ``response`` is a transient failure."""
    if response.status_code in TRANSIENT_STATUSES:
        raise RetryableError(f"{what}: HTTP {response.status_code}", retry_after(response))


@dataclass
class ClientCredentials:
    """OAuth 2.0 client-credentials grant with a cached token, refreshed before expiry or on demand.

    ``basic_client_auth`` sends the client id and secret as HTTP Basic (SAP BTP / XSUAA);
    otherwise they travel in the form body (Salesforce).
    """

    token_url: str
    client_id: str
    client_secret: str = field(repr=False)
    basic_client_auth: bool = False
    _token: str | None = field(default=None, repr=False)
    _expires_at: float = 0.0
    response: dict[str, Any] = field(default_factory=dict, repr=False)
    """The last token response (Salesforce adds ``instance_url``)."""

    def token(self, client: httpx.Client) -> str:
        if self._token and time.monotonic() < self._expires_at - 30:
            return self._token
        form = {"grant_type": "client_credentials"}
        headers = {"Accept": "application/json"}
        if self.basic_client_auth:
            pair = f"{self.client_id}:{self.client_secret}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        else:
            form |= {"client_id": self.client_id, "client_secret": self.client_secret}
        response = send(client, client.build_request("POST", self.token_url, data=form, headers=headers))
        raise_transient(response, "OAuth token")
        if response.status_code != 200:
            raise ErpConfigError(
                f"OAuth token request to {urlsplit(self.token_url).netloc} refused: "
                f"HTTP {response.status_code}"
            )
        try:
            self.response = response.json()
            self._token = str(self.response["access_token"])
        except (ValueError, KeyError):
            raise ErpConfigError("OAuth token response carries no access_token") from None
        self._expires_at = time.monotonic() + float(self.response.get("expires_in") or 3600)
        return self._token

    @property
    def current(self) -> str | None:
        """The cached token, if any (for redaction)."""
        return self._token

    def invalidate(self) -> None:
        self._token = None
