"""Local HTTP servers that behave like SAP Gateway (OData V2) and the Salesforce REST API.

They implement only what the adapters use, the way the real services do: the OAuth
client-credentials handshake, SAP's CSRF token bound to a session cookie, OData ``$batch``
multipart bodies with one change set per operation, payload schemas, ``409`` on a duplicate
key (SAP) and upsert by external id (Salesforce), and injected ``429``/``503`` answers. Every
request is recorded so tests can assert the exact conversation.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import itertools
import json
import re
import secrets
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from assets.erp.base import OutboxMessage

CONDITIONS = {"ok", "crushed", "torn", "wet", "open"}
ODATA_DATE = re.compile(r"^/Date\(\d+\)/$")


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    operations: list[tuple[str, str]] = field(default_factory=list)
    """For ``$batch``: (method, path) of every operation inside."""


class _Server:
    """A threading HTTP server on 127.0.0.1 with a request log and queued failures."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.fail_next: list[tuple[int, str | None]] = []
        """(status, Retry-After) answered to the next data requests, in order."""
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                record = Recorded(
                    self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body
                )
                with owner.lock:
                    owner.requests.append(record)
                    status, headers, payload = owner.handle(record)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PATCH = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def injected_failure(self) -> tuple[int, dict[str, str], bytes] | None:
        if not self.fail_next:
            return None
        status, after = self.fail_next.pop(0)
        headers = {"Content-Type": "application/json"} | ({"Retry-After": after} if after else {})
        return status, headers, json.dumps({"error": "injected", "status": status}).encode()

    def handle(self, record: Recorded) -> tuple[int, dict[str, str], bytes]:
        raise NotImplementedError


def _json(status: int, body: Any, **headers: str) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json", **headers}, json.dumps(body).encode()


class FakeSap(_Server):
    """SAP Gateway OData V2 service ``ZWV_QUALITY_SRV`` with DamageClaimSet and InventoryDiscrepancySet."""

    ROOT = "/sap/opu/odata/sap/ZWV_QUALITY_SRV"

    def __init__(self, *, username: str, password: str, client_id: str = "", client_secret: str = "") -> None:
        self.username, self.password = username, password
        self.client_id, self.client_secret = client_id, client_secret
        self.bearer_tokens: set[str] = set()
        self.sessions: dict[str, str] = {}  # session cookie -> CSRF token
        self.records: dict[tuple[str, tuple[str, ...]], dict[str, Any]] = {}
        self.creates: Counter[tuple[str, tuple[str, ...]]] = Counter()
        self.poison_keys: set[str] = set()
        """Keys whose create the back end refuses with a business error (400)."""
        super().__init__()
        self.base_url = self.url + self.ROOT
        self.token_url = self.url + "/oauth/token"

    def expire_sessions(self) -> None:
        self.sessions.clear()

    # -- auth ----------------------------------------------------------------------------------
    def _authorized(self, headers: dict[str, str]) -> bool:
        auth = headers.get("authorization", "")
        if auth.startswith("Basic "):
            return base64.b64decode(auth[6:]).decode() == f"{self.username}:{self.password}"
        return auth.startswith("Bearer ") and auth[7:] in self.bearer_tokens

    def _session(self, headers: dict[str, str]) -> str | None:
        match = re.search(r"SAP_SESSIONID_WV_100=([0-9a-f]+)", headers.get("cookie", ""))
        return match.group(1) if match else None

    def handle(self, record: Recorded) -> tuple[int, dict[str, str], bytes]:
        path = urlsplit(record.path).path
        if path == "/oauth/token" and record.method == "POST":
            form = parse_qs(record.body.decode())
            auth = record.headers.get("authorization", "")
            client = base64.b64decode(auth[6:]).decode() if auth.startswith("Basic ") else ""
            if (
                form.get("grant_type") != ["client_credentials"]
                or client != f"{self.client_id}:{self.client_secret}"
            ):
                return _json(401, {"error": "invalid_client"})
            token = secrets.token_hex(16)
            self.bearer_tokens.add(token)
            return _json(200, {"access_token": token, "token_type": "bearer", "expires_in": 43199})
        if not self._authorized(record.headers):
            return _json(
                401, {"error": {"code": "/IWFND/CM_CONSUMER/101", "message": {"value": "Unauthorized"}}}
            )
        if record.method == "GET" and path.rstrip("/") == self.ROOT:
            if record.headers.get("x-csrf-token", "").lower() != "fetch":
                return _json(200, {"d": {"EntitySets": ["DamageClaimSet", "InventoryDiscrepancySet"]}})
            session, token = secrets.token_hex(8), secrets.token_urlsafe(18)
            self.sessions[session] = token
            headers = {
                "x-csrf-token": token,
                "Set-Cookie": f"SAP_SESSIONID_WV_100={session}; path=/; HttpOnly",
            }
            return _json(200, {"d": {"EntitySets": ["DamageClaimSet", "InventoryDiscrepancySet"]}}, **headers)
        if record.method == "POST" and path == self.ROOT + "/$batch":
            cookie_session = self._session(record.headers)
            if cookie_session is None or self.sessions.get(cookie_session) != record.headers.get(
                "x-csrf-token"
            ):
                return (
                    403,
                    {"x-csrf-token": "Required", "Content-Type": "text/plain"},
                    b"CSRF token validation failed",
                )
            if failure := self.injected_failure():
                return failure
            return self._batch(record)
        return _json(404, {"error": {"code": "404", "message": {"value": f"no resource {path}"}}})

    # -- $batch --------------------------------------------------------------------------------
    def _batch(self, record: Recorded) -> tuple[int, dict[str, str], bytes]:
        content_type = record.headers.get("content-type", "")
        if not content_type.startswith("multipart/mixed"):
            return _json(400, {"error": {"code": "BATCH", "message": {"value": "expected multipart/mixed"}}})
        message = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + record.body
        )
        boundary = f"batchresponse_{secrets.token_hex(6)}"
        out: list[str] = []
        changesets: list[Message] = message.get_payload()  # type: ignore[assignment]
        for changeset in changesets:
            assert changeset.get_content_type() == "multipart/mixed", (
                "every operation must be in a change set"
            )
            operations: list[Message] = changeset.get_payload()  # type: ignore[assignment]
            assert len(operations) == 1, "the adapter sends one operation per change set"
            op = operations[0]
            assert op.get_content_type() == "application/http"
            assert op["Content-Transfer-Encoding"] == "binary"
            status, body = self._operation(record, str(op.get_payload()))
            reason = {201: "Created", 204: "No Content"}.get(status, "Error")
            text = json.dumps(body) if body is not None else ""
            response = f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n\r\n{text}"
            if status < 300:
                inner = f"changesetresponse_{secrets.token_hex(6)}"
                out += [
                    f"--{boundary}",
                    f"Content-Type: multipart/mixed; boundary={inner}",
                    "",
                    f"--{inner}",
                    "Content-Type: application/http",
                    "Content-Transfer-Encoding: binary",
                    "",
                    response,
                    f"--{inner}--",
                ]
            else:  # a failed change set answers with a single error response
                out += [
                    f"--{boundary}",
                    "Content-Type: application/http",
                    "Content-Transfer-Encoding: binary",
                    "",
                    response,
                ]
        out += [f"--{boundary}--", ""]
        return 202, {"Content-Type": f"multipart/mixed; boundary={boundary}"}, "\r\n".join(out).encode()

    def _operation(self, record: Recorded, raw: str) -> tuple[int, Any]:
        head, _, body = raw.replace("\r\n", "\n").partition("\n\n")
        request_line, *header_lines = head.split("\n")
        method, target, version = request_line.split(" ")
        assert version == "HTTP/1.1"
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
        record.operations.append((method, target))
        assert headers.get("content-type") == "application/json"
        data = json.loads(body)
        match = re.fullmatch(r"(\w+)(?:\((.*)\))?", target)
        if not match:
            return 400, _error("bad target")
        entity_set, predicate = match.groups()
        if method == "POST" and predicate is None:
            problem = _validate(entity_set, data)
            if problem:
                return 400, _error(problem)
            key = _entity_key(entity_set, data)
            if key[0] in self.poison_keys:
                # Like a careless gateway, the error echoes the caller's credentials: redaction must catch it.
                echoed = f"{record.headers.get('authorization')} token {record.headers.get('x-csrf-token')}"
                return 400, _error(f"business rule: package not known to SAP (request {echoed})")
            if (entity_set, key) in self.records:
                return 409, _error("Entity already exists")
            self.records[(entity_set, key)] = data
            self.creates[(entity_set, key)] += 1
            return 201, {"d": data}
        if method == "MERGE" and predicate is not None:
            key = tuple(unquote(v).replace("''", "'") for v in re.findall(r"\w+='((?:[^']|'')*)'", predicate))
            if (entity_set, key) not in self.records:
                return 404, _error("Resource not found")
            problem = _validate(entity_set, data)
            if problem:
                return 400, _error(problem)
            self.records[(entity_set, key)].update(data)
            return 204, None
        return 405, _error(f"{method} not allowed on {target}")


def _error(text: str) -> dict[str, Any]:
    return {"error": {"code": "ZWV/000", "message": {"lang": "en", "value": text}}}


CLAIM_FIELDS = {
    "ExternalId", "FacilityId", "BusinessDate", "PackageId", "Sku", "Condition", "Confidence",
    "DetectedAt", "CameraId", "Zone", "EventId", "ModelVersion",
}  # fmt: skip
LINE_FIELDS = {"ReportId", "ZoneId", "FacilityId", "BusinessDate", "Expected", "Seen", "Difference"}


def _entity_key(entity_set: str, data: dict[str, Any]) -> tuple[str, ...]:
    return (data["ExternalId"],) if entity_set == "DamageClaimSet" else (data["ReportId"], data["ZoneId"])


def _validate(entity_set: str, data: dict[str, Any]) -> str | None:
    """The service's schema: exact field set and OData V2 JSON types."""
    if entity_set == "DamageClaimSet":
        if set(data) != CLAIM_FIELDS:
            return f"DamageClaim fields differ: {sorted(set(data) ^ CLAIM_FIELDS)}"
        if not (isinstance(data["ExternalId"], str) and 0 < len(data["ExternalId"]) <= 40):
            return "ExternalId must be a string of at most 40 characters"
        if data["Condition"] not in CONDITIONS - {"ok"}:
            return f"Condition {data['Condition']!r} is not a damage"
        if not re.fullmatch(r"\d\.\d{4}", str(data["Confidence"])):
            return "Confidence must be an Edm.Decimal string with 4 decimals"
        if not (ODATA_DATE.match(data["BusinessDate"]) and ODATA_DATE.match(data["DetectedAt"])):
            return "dates must be /Date(ms)/"
        return None
    if entity_set == "InventoryDiscrepancySet":
        if set(data) != LINE_FIELDS:
            return f"InventoryDiscrepancy fields differ: {sorted(set(data) ^ LINE_FIELDS)}"
        if not all(isinstance(data[k], int) for k in ("Expected", "Seen", "Difference")):
            return "Expected, Seen, Difference must be Edm.Int32"
        if data["Difference"] != data["Seen"] - data["Expected"]:
            return "Difference must equal Seen - Expected"
        return None if ODATA_DATE.match(data["BusinessDate"]) else "BusinessDate must be /Date(ms)/"
    return f"unknown entity set {entity_set}"


class FakeSalesforce(_Server):
    """Salesforce org: OAuth client credentials and Case upsert by ``WV_External_Id__c``."""

    VERSION = "v60.0"
    CASE_FIELDS: ClassVar[set[str]] = {
        "Subject",
        "Description",
        "Origin",
        "Type",
        "Priority",
        "WV_Facility__c",
        "WV_Business_Date__c",
    }

    def __init__(self, *, client_id: str, client_secret: str) -> None:
        self.client_id, self.client_secret = client_id, client_secret
        self.tokens: set[str] = set()
        self.cases: dict[str, dict[str, Any]] = {}
        self.ids: dict[str, str] = {}
        self.creates: Counter[str] = Counter()
        self._next_id = itertools.count(1)
        super().__init__()
        self.token_url = self.url + "/services/oauth2/token"

    def revoke_tokens(self) -> None:
        self.tokens.clear()

    def handle(self, record: Recorded) -> tuple[int, dict[str, str], bytes]:
        path = urlsplit(record.path).path
        if path == "/services/oauth2/token" and record.method == "POST":
            form = {k: v[0] for k, v in parse_qs(record.body.decode()).items()}
            if form != {
                "grant_type": "client_credentials",
                "client_id": self.client_id,
                "client_secret": self.client_secret,
            }:
                return _json(
                    400, {"error": "invalid_client", "error_description": "invalid client credentials"}
                )
            token = "00D" + secrets.token_hex(20)
            self.tokens.add(token)
            return _json(200, {"access_token": token, "instance_url": self.url, "token_type": "Bearer",
                               "issued_at": "1700000000000", "signature": "x"})  # fmt: skip
        auth = record.headers.get("authorization", "")
        if not (auth.startswith("Bearer ") and auth[7:] in self.tokens):
            return _json(401, [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}])
        prefix = f"/services/data/{self.VERSION}/sobjects/Case/WV_External_Id__c/"
        if record.method != "PATCH" or not path.startswith(prefix):
            return _json(
                404, [{"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}]
            )
        if failure := self.injected_failure():
            return failure
        key = unquote(path[len(prefix) :])
        try:
            fields = json.loads(record.body)
        except ValueError:
            return _json(400, [{"message": "JSON parser error", "errorCode": "JSON_PARSER_ERROR"}])
        unknown = set(fields) - self.CASE_FIELDS
        if unknown:
            name = sorted(unknown)[0]
            return _json(
                400,
                [
                    {
                        "message": f"No such column '{name}' on sobject of type Case",
                        "errorCode": "INVALID_FIELD",
                    }
                ],
            )
        if not fields.get("Subject") or len(fields["Subject"]) > 255:
            return _json(
                400,
                [{"message": "Subject: bad value", "errorCode": "STRING_TOO_LONG", "fields": ["Subject"]}],
            )
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(fields.get("WV_Business_Date__c", ""))):
            return _json(
                400,
                [
                    {
                        "message": "WV_Business_Date__c: invalid date",
                        "errorCode": "INVALID_TYPE_ON_FIELD_IN_RECORD",
                    }
                ],
            )
        if key in self.cases:
            self.cases[key].update(fields)
            return _json(200, {"id": self.ids[key], "success": True, "errors": [], "created": False})
        self.cases[key] = dict(fields)
        self.ids[key] = f"500{next(self._next_id):015d}"
        self.creates[key] += 1
        return _json(201, {"id": self.ids[key], "success": True, "errors": [], "created": True})


@pytest.fixture
def fake_sap() -> Iterator[FakeSap]:
    server = FakeSap(
        username="WV_RFC", password="s3cr3t-Pa55", client_id="wv-client", client_secret="cl13nt-S3cret"
    )
    yield server
    server.close()


@pytest.fixture
def fake_salesforce() -> Iterator[FakeSalesforce]:
    server = FakeSalesforce(client_id="3MVG9wv", client_secret="sf-S3cret-9f8e")
    yield server
    server.close()


def _claim(
    n: int, *, condition: str = "crushed", facility: str = "FAC-001", day: str = "2026-11-20"
) -> OutboxMessage:
    key = f"DC-{n:032x}"
    payload = {
        "claim_id": key, "facility_id": facility, "business_date": day, "package_id": f"PKG-{n:05d}",
        "sku": "SKU-0042", "condition": condition, "condition_confidence": 0.9312,
        "detected_at": f"{day}T09:00:0{n % 10}+00:00", "camera_id": "cam-01", "zone": "sorter",
        "event_id": f"evt-{n}", "model_version": "vit-s16-int8-v1",
    }  # fmt: skip
    return OutboxMessage(n, key, "damage_claim", facility, date.fromisoformat(day), payload)


def _report(n: int, *, facility: str = "FAC-001", day: str = "2026-11-20", seen: int = 95) -> OutboxMessage:
    key = f"DR-{n:032x}"
    lines = [
        {"zone_id": "inbound", "expected": 100, "seen": seen, "discrepancy": seen - 100},
        {"zone_id": "sorter", "expected": 100, "seen": 100, "discrepancy": 0},
        {"zone_id": "dock-9", "expected": 5, "seen": 0, "discrepancy": -5},
    ]
    payload = {
        "report_id": key, "facility_id": facility, "business_date": day, "timezone": "America/New_York",
        "expected_packages": 205, "seen_packages": seen + 100, "lines": lines,
    }  # fmt: skip
    return OutboxMessage(n, key, "discrepancy_report", facility, date.fromisoformat(day), payload)


@pytest.fixture
def claim() -> Callable[..., OutboxMessage]:
    """``claim(n, condition=...)``: a damage-claim message with id ``n``."""
    return _claim


@pytest.fixture
def report() -> Callable[..., OutboxMessage]:
    """``report(n, seen=...)``: a discrepancy-report message with id ``n`` (three zone lines)."""
    return _report
