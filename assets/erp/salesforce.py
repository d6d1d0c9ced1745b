"""Salesforce adapter: OAuth client-credentials token, then an upsert of one ``Case`` per message.

``PATCH /services/data/<version>/sobjects/Case/WV_External_Id__c/<key>`` creates the case
(``201``) or updates the one already carrying that external id (``200``, or ``204`` on old API
versions), so re-sending a message never opens a second case. The org needs the custom Case
fields ``WV_External_Id__c`` (text, External ID, unique), ``WV_Facility__c`` (text) and
``WV_Business_Date__c`` (date); the README lists them. ``401 INVALID_SESSION_ID`` refreshes the
token once; ``429``/``503`` and ``403 REQUEST_LIMIT_EXCEEDED`` are retried with backoff; any other
refusal (``400`` validation, ``300`` duplicate external ids, ``404``) parks the message.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import httpx

from assets.erp.base import (
    Delivered,
    ErpAdapter,
    ErpConfigError,
    OutboxMessage,
    Outcome,
    Poison,
    Retry,
    redact,
)
from assets.erp.http import TRANSIENT_STATUSES, ClientCredentials, checked_url, retry_after, send

EXTERNAL_ID_FIELD = "WV_External_Id__c"
ORIGIN = "Warehouse Vision"


def case_fields(message: OutboxMessage) -> dict[str, Any]:
    """The Case of one message (KeyError: the payload is unusable). The external id is in the URL only."""
    p = message.payload
    common = {"Origin": ORIGIN, "WV_Facility__c": p["facility_id"], "WV_Business_Date__c": p["business_date"]}
    if message.kind == "damage_claim":
        return common | {
            "Type": "Damage Claim",
            "Priority": "High" if p["condition"] in ("crushed", "open") else "Medium",
            "Subject": f"Damaged package {p['package_id']} ({p['condition']}) at {p['facility_id']}"[:255],
            "Description": (
                f"Package {p['package_id']} (SKU {p['sku']}) was judged {p['condition']} with confidence "
                f"{p['condition_confidence']} by model {p['model_version']} on camera {p['camera_id']} "
                f"in zone {p['zone']} at {p['detected_at']}. Evidence event: {p['event_id']}."
            ),
        }
    lines = "\n".join(
        f"{line['zone_id']}: expected {line['expected']}, seen {line['seen']}, "
        f"difference {line['discrepancy']:+d}"
        for line in p["lines"]
    )
    return common | {
        "Type": "Inventory Discrepancy",
        "Priority": "Medium",
        "Subject": (
            f"Inventory discrepancy {p['facility_id']} {p['business_date']}: "
            f"seen {p['seen_packages']} vs expected {p['expected_packages']}"
        )[:255],
        "Description": f"Packages per zone ({p['timezone']} day {p['business_date']}):\n{lines}",
    }


def _errors(response: httpx.Response) -> tuple[str, str]:
    """(errorCode, message) of a Salesforce error body ``[{"errorCode", "message"}]``."""
    try:
        body = response.json()
        first = body[0] if isinstance(body, list) else body
        return str(first.get("errorCode", "")), str(first.get("message", ""))
    except (ValueError, IndexError, AttributeError, KeyError):
        return "", response.text[:200]


class SalesforceAdapter(ErpAdapter):
    """Cases in a Salesforce org through the REST API."""

    name = "salesforce"

    def __init__(
        self,
        *,
        oauth: ClientCredentials,
        instance_url: str | None = None,
        api_version: str = "v60.0",
        batch_size: int = 50,
        timeout_s: float = 30.0,
    ) -> None:
        super().__init__(secrets=(oauth.client_secret,))
        self._oauth = oauth
        self._instance_url = instance_url
        self.api_version = api_version
        self.max_batch = batch_size
        self._client = httpx.Client(timeout=timeout_s, follow_redirects=False)

    def _base(self) -> tuple[str, str]:
        token = self._oauth.token(self._client)
        url = self._instance_url or self._oauth.response.get("instance_url")
        base = checked_url(url, "WV_SALESFORCE_INSTANCE_URL")
        return f"{base}/services/data/{self.api_version}/sobjects/Case/{EXTERNAL_ID_FIELD}/", token

    def _upsert(self, message: OutboxMessage, fields: dict[str, Any]) -> httpx.Response:
        for attempt in range(2):
            base, token = self._base()
            request = self._client.build_request(
                "PATCH",
                base + quote(message.idempotency_key, safe=""),
                json=fields,
                headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            )
            response = send(self._client, request)
            if response.status_code == 401 and attempt == 0:
                self._oauth.invalidate()  # INVALID_SESSION_ID: the token expired or was revoked
                continue
            return response
        raise ErpConfigError(
            "Salesforce refuses fresh tokens (HTTP 401); check WV_SALESFORCE_CLIENT_ID, "
            "WV_SALESFORCE_CLIENT_SECRET and the connected app's run-as user"
        )

    def deliver(self, messages: Sequence[OutboxMessage]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for index, message in enumerate(messages):
            try:
                fields = case_fields(message)
            except (KeyError, TypeError, ValueError) as exc:
                outcomes.append(Poison(f"payload unusable for a Case: {type(exc).__name__} {exc}"))
                continue
            response = self._upsert(message, fields)
            status = response.status_code
            if status in (200, 201):
                body = response.json()
                outcomes.append(
                    Delivered(external_id=body.get("id"), created=bool(body.get("created", status == 201)))
                )
                continue
            if status == 204:
                outcomes.append(Delivered(external_id=None, created=False))
                continue
            code, text = _errors(response)
            error = " ".join(part for part in (f"HTTP {status}", code, self.redact(text)) if part)
            if status in TRANSIENT_STATUSES or code == "REQUEST_LIMIT_EXCEEDED":
                # Throttled or down: stop here; this and the rest wait for the backoff.
                wait = retry_after(response)
                outcomes += [Retry(error, wait) for _ in messages[index:]]
                break
            outcomes.append(Poison(error))
        return outcomes

    def redact(self, text: str) -> str:
        return redact(text, (*self.secrets, self._oauth.current or ""))

    def close(self) -> None:
        self._client.close()
