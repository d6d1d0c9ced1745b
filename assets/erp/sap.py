"""SAP adapter: OData V2 JSON over HTTPS, CSRF-token handshake, basic or OAuth auth, ``$batch``.

The customer's SAP team exposes a Gateway service (``WV_SAP_BASE_URL`` is its root) with two
entity sets: damage claims keyed by ``ExternalId`` and discrepancy lines keyed by
``(ReportId, ZoneId)``. Protocol, as SAP Gateway implements it:

1. ``GET <root>/`` with ``x-csrf-token: Fetch`` returns a token bound to the session cookies the
   same response sets; every modifying request sends the token and the cookies back. A ``403``
   answering ``x-csrf-token: Required`` means the token expired: fetch a new one and resend once.
2. Auth is HTTP Basic (``WV_SAP_USERNAME``/``WV_SAP_PASSWORD``) or an OAuth client-credentials
   bearer token (``WV_SAP_OAUTH_TOKEN_URL``, ``WV_SAP_CLIENT_ID``, ``WV_SAP_CLIENT_SECRET``).
3. Records are created with ``POST <set>`` inside one ``$batch`` (one change set per record).
   OData V2 has no upsert, so idempotency is create-then-update: a record whose key already
   exists answers ``409``, and a second ``$batch`` sends ``MERGE <set>(<key>)`` with the same body.
   A retry therefore never creates a second record.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import quote

import httpx

from assets.erp import odata
from assets.erp.base import (
    BatchRejected,
    Delivered,
    ErpAdapter,
    ErpConfigError,
    OutboxMessage,
    Outcome,
    Poison,
    Retry,
    redact,
)
from assets.erp.http import TRANSIENT_STATUSES, ClientCredentials, raise_transient, send


def odata_date(value: str) -> str:
    """``/Date(<ms since epoch>)/``: Edm.DateTime in OData V2 JSON, from an ISO date or timestamp."""
    if len(value) == 10:
        moment = datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC)
    else:
        moment = datetime.fromisoformat(value)
    return f"/Date({round(moment.timestamp() * 1000)})/"


def _key(**parts: str) -> str:
    """An OData key predicate: ``(A='x',B='y')`` with quotes doubled and URL-escaped."""
    return (
        "("
        + ",".join(f"{k}='{quote(str(v).replace(chr(39), chr(39) * 2), safe='')}'" for k, v in parts.items())
        + ")"
    )


@dataclass(frozen=True)
class EntityWrite:
    entity_set: str
    key: str
    body: dict[str, Any]


class SapAdapter(ErpAdapter):
    """Damage claims and discrepancy lines into an SAP Gateway OData V2 service."""

    name = "sap"

    def __init__(
        self,
        *,
        base_url: str,
        claim_set: str,
        discrepancy_set: str,
        username: str | None = None,
        password: str | None = None,
        oauth: ClientCredentials | None = None,
        batch_size: int = 50,
        timeout_s: float = 30.0,
    ) -> None:
        if oauth is None and not (username and password):
            raise ErpConfigError(
                "SAP needs WV_SAP_USERNAME and WV_SAP_PASSWORD, or WV_SAP_OAUTH_TOKEN_URL, "
                "WV_SAP_CLIENT_ID and WV_SAP_CLIENT_SECRET"
            )
        super().__init__(secrets=(password or "", oauth.client_secret if oauth else ""))
        self.root = base_url.rstrip("/")
        self.claim_set = claim_set
        self.discrepancy_set = discrepancy_set
        self.max_batch = batch_size
        basic = httpx.BasicAuth(username, password) if oauth is None and username and password else None
        self._oauth = oauth
        self._csrf: str | None = None
        # Basic credentials ride on the client; cookies (the SAP session) persist in its jar.
        self._client = httpx.Client(timeout=timeout_s, follow_redirects=False, auth=basic)

    # -- payloads ------------------------------------------------------------------------------
    def entity_writes(self, message: OutboxMessage) -> list[EntityWrite]:
        """The SAP entities of one message (KeyError/ValueError: the payload is unusable)."""
        p = message.payload
        if message.kind == "damage_claim":
            body = {
                "ExternalId": message.idempotency_key,
                "FacilityId": p["facility_id"],
                "BusinessDate": odata_date(p["business_date"]),
                "PackageId": p["package_id"],
                "Sku": p["sku"],
                "Condition": p["condition"],
                "Confidence": f"{float(p['condition_confidence']):.4f}",
                "DetectedAt": odata_date(p["detected_at"]),
                "CameraId": p["camera_id"],
                "Zone": p["zone"],
                "EventId": p["event_id"],
                "ModelVersion": p["model_version"],
            }
            return [EntityWrite(self.claim_set, _key(ExternalId=message.idempotency_key), body)]
        writes = []
        for line in p["lines"]:
            body = {
                "ReportId": message.idempotency_key,
                "ZoneId": line["zone_id"],
                "FacilityId": p["facility_id"],
                "BusinessDate": odata_date(p["business_date"]),
                "Expected": int(line["expected"]),
                "Seen": int(line["seen"]),
                "Difference": int(line["discrepancy"]),
            }
            writes.append(
                EntityWrite(
                    self.discrepancy_set, _key(ReportId=message.idempotency_key, ZoneId=line["zone_id"]), body
                )
            )
        return writes

    # -- protocol ------------------------------------------------------------------------------
    def _auth_headers(self) -> dict[str, str]:
        if self._oauth is not None:
            return {"Authorization": f"Bearer {self._oauth.token(self._client)}"}
        return {}

    def _refused(self, response: httpx.Response, what: str) -> ErpConfigError:
        return ErpConfigError(
            f"SAP refused {what} (HTTP {response.status_code}); check WV_SAP_USERNAME/WV_SAP_PASSWORD "
            "or the WV_SAP_OAUTH_* settings"
        )

    def _fetch_csrf(self) -> str:
        request = self._client.build_request(
            "GET",
            self.root + "/",
            headers={"x-csrf-token": "Fetch", "Accept": "application/json", **self._auth_headers()},
        )
        response = send(self._client, request)
        raise_transient(response, "SAP CSRF token fetch")
        if response.status_code in (401, 403):
            raise self._refused(response, "the CSRF token fetch")
        token = response.headers.get("x-csrf-token")
        if response.status_code != 200 or not token or token.lower() == "required":
            raise ErpConfigError(
                f"SAP service root WV_SAP_BASE_URL answered HTTP {response.status_code} without a CSRF token"
            )
        self._csrf = token
        return token

    def _batch(self, requests: Sequence[odata.BatchRequest]) -> list[odata.BatchResponse]:
        content_type, body = odata.build(requests)
        for attempt in range(3):
            token = self._csrf or self._fetch_csrf()
            request = self._client.build_request(
                "POST",
                f"{self.root}/$batch",
                content=body,
                headers={
                    "Content-Type": content_type,
                    "Accept": "multipart/mixed",
                    "x-csrf-token": token,
                    **self._auth_headers(),
                },
            )
            response = send(self._client, request)
            if response.status_code == 403 and response.headers.get("x-csrf-token", "").lower() == "required":
                self._csrf = None  # expired session: fetch a new token (and cookies) and resend
                continue
            if response.status_code == 401:
                if self._oauth is not None and attempt == 0:
                    self._oauth.invalidate()
                    self._csrf = None
                    continue
                raise self._refused(response, "the $batch request")
            raise_transient(response, "SAP $batch")
            if response.status_code not in (200, 202):
                error = odata.BatchResponse(response.status_code, {}, response.content).error_message()
                raise BatchRejected(f"SAP $batch refused: HTTP {response.status_code} {self.redact(error)}")
            try:
                parsed = odata.parse(response.headers.get("content-type", ""), response.content)
            except ValueError as exc:
                raise BatchRejected(f"SAP $batch answer unreadable: {exc}") from None
            if len(parsed) != len(requests):
                raise BatchRejected(f"SAP $batch answered {len(parsed)} parts for {len(requests)} operations")
            return parsed
        raise ErpConfigError("SAP keeps refusing the CSRF token; check the service's session handling")

    def _outcome(self, response: odata.BatchResponse) -> Outcome | None:
        """None when the write succeeded; otherwise why not."""
        if response.status in (200, 201, 204):
            return None
        error = f"HTTP {response.status} {self.redact(response.error_message())}"
        if response.status in TRANSIENT_STATUSES:
            after = response.headers.get("retry-after", "")
            return Retry(error, float(after) if after.isdigit() else None)
        return Poison(error)

    def deliver(self, messages: Sequence[OutboxMessage]) -> list[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(messages)
        writes: list[tuple[int, EntityWrite]] = []
        for i, message in enumerate(messages):
            try:
                writes += [(i, w) for w in self.entity_writes(message)]
            except (KeyError, ValueError, TypeError) as exc:
                outcomes[i] = Poison(f"payload unusable for SAP: {type(exc).__name__} {exc}")
        created = {i: True for i, _ in writes}
        posted = (
            self._batch([odata.BatchRequest("POST", w.entity_set, w.body) for _, w in writes])
            if writes
            else []
        )
        conflicts = []
        for (i, write), response in zip(writes, posted, strict=True):
            if response.status == 409:
                conflicts.append((i, write))
                created[i] = False
            elif (problem := self._outcome(response)) is not None and outcomes[i] is None:
                outcomes[i] = problem
        conflicts = [(i, w) for i, w in conflicts if outcomes[i] is None]
        merged = (
            self._batch([odata.BatchRequest("MERGE", w.entity_set + w.key, w.body) for _, w in conflicts])
            if conflicts
            else []
        )
        for (i, _), response in zip(conflicts, merged, strict=True):
            if (problem := self._outcome(response)) is not None and outcomes[i] is None:
                outcomes[i] = problem
        return [
            outcome
            if outcome is not None
            else Delivered(external_id=messages[i].idempotency_key, acknowledged=True, created=created.get(i))
            for i, outcome in enumerate(outcomes)
        ]

    def redact(self, text: str) -> str:
        token = self._oauth.current if self._oauth is not None else None
        return redact(text, (*self.secrets, token or "", self._csrf or ""))

    def close(self) -> None:
        self._client.close()
