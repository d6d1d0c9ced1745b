"""The SAP adapter against a local SAP Gateway look-alike: handshake, $batch, idempotent re-sends."""

from __future__ import annotations

import base64

import pytest

from assets.erp.adapters import build_adapter
from assets.erp.base import Delivered, ErpConfigError, Poison
from assets.erp.outbox import DispatchPolicy, deliver_with_retry
from wv.settings import PlatformSettings

pytestmark = pytest.mark.timeout(30)


def sap_adapter(fake, *, oauth: bool = False, password: str | None = None):
    overrides = {"erp_adapter": "sap", "sap_base_url": fake.base_url, "erp_timeout_s": 5.0}
    if oauth:
        overrides |= {
            "sap_oauth_token_url": fake.token_url,
            "sap_client_id": fake.client_id,
            "sap_client_secret": fake.client_secret,
        }
    else:
        overrides |= {"sap_username": fake.username, "sap_password": password or fake.password}
    return build_adapter(PlatformSettings.load(**overrides))


def test_batch_fetches_csrf_token_then_creates_every_record_once(fake_sap, claim, report):
    adapter = sap_adapter(fake_sap)
    outcomes = adapter.deliver([claim(1), claim(2, condition="wet"), report(3)])

    keys = [f"DC-{1:032x}", f"DC-{2:032x}", f"DR-{3:032x}"]
    assert outcomes == [Delivered(key, acknowledged=True, created=True) for key in keys]
    fetch, batch = fake_sap.requests
    assert (fetch.method, fetch.path, fetch.headers["x-csrf-token"]) == ("GET", fake_sap.ROOT + "/", "Fetch")
    assert (batch.method, batch.path) == ("POST", fake_sap.ROOT + "/$batch")
    token = next(iter(fake_sap.sessions.values()))
    assert batch.headers["x-csrf-token"] == token
    assert "SAP_SESSIONID_WV_100=" in batch.headers["cookie"]
    basic = "Basic " + base64.b64encode(b"WV_RFC:s3cr3t-Pa55").decode()
    assert all(r.headers["authorization"] == basic for r in fake_sap.requests)
    assert (
        batch.operations
        == [("POST", "DamageClaimSet"), ("POST", "DamageClaimSet")]
        + [("POST", "InventoryDiscrepancySet")] * 3
    )
    assert set(fake_sap.creates.values()) == {1} and len(fake_sap.creates) == 5
    line = fake_sap.records[("InventoryDiscrepancySet", ("DR-" + f"{3:032x}", "inbound"))]
    assert (line["Expected"], line["Seen"], line["Difference"], line["BusinessDate"]) == (
        100, 95, -5, "/Date(1795132800000)/"  # 2026-11-20T00:00Z
    )  # fmt: skip
    claim_record = fake_sap.records[("DamageClaimSet", ("DC-" + f"{1:032x}",))]
    assert claim_record["Confidence"] == "0.9312" and claim_record["Condition"] == "crushed"


def test_resend_updates_the_existing_records_instead_of_creating(fake_sap, claim, report):
    adapter = sap_adapter(fake_sap)
    adapter.deliver([claim(1), report(3)])
    outcomes = adapter.deliver([claim(1), report(3, seen=99)])

    assert [o.created for o in outcomes] == [False, False]
    second_fetchless = fake_sap.requests[2:]
    assert [r.path.rsplit("/", 1)[-1] for r in second_fetchless] == ["$batch", "$batch"]
    assert second_fetchless[1].operations == [
        ("MERGE", "DamageClaimSet(ExternalId='DC-" + f"{1:032x}')"),
        *[
            ("MERGE", f"InventoryDiscrepancySet(ReportId='DR-{3:032x}',ZoneId='{z}')")
            for z in ("inbound", "sorter", "dock-9")
        ],
    ]
    assert set(fake_sap.creates.values()) == {1} and len(fake_sap.creates) == 4
    assert fake_sap.records[("InventoryDiscrepancySet", ("DR-" + f"{3:032x}", "inbound"))]["Seen"] == 99


def test_expired_csrf_session_is_fetched_again_and_the_batch_resent(fake_sap, claim):
    adapter = sap_adapter(fake_sap)
    adapter.deliver([claim(1)])
    fake_sap.expire_sessions()
    assert adapter.deliver([claim(2)]) == [Delivered("DC-" + f"{2:032x}", True, True)]

    methods = [
        (r.method, r.path.rsplit("/", 1)[-1], r.headers.get("x-csrf-token")) for r in fake_sap.requests
    ]
    assert [m[:2] for m in methods] == [
        ("GET", ""),
        ("POST", "$batch"),
        ("POST", "$batch"),
        ("GET", ""),
        ("POST", "$batch"),
    ]
    assert methods[3][2] == "Fetch"
    assert len(fake_sap.creates) == 2


def test_oauth_client_credentials_token_is_fetched_once_and_sent_as_bearer(fake_sap, claim):
    adapter = sap_adapter(fake_sap, oauth=True)
    adapter.deliver([claim(1)])
    adapter.deliver([claim(2)])

    token_requests = [r for r in fake_sap.requests if r.path == "/oauth/token"]
    assert len(token_requests) == 1
    assert (
        token_requests[0].headers["authorization"]
        == "Basic " + base64.b64encode(b"wv-client:cl13nt-S3cret").decode()
    )
    (token,) = fake_sap.bearer_tokens
    assert all(
        r.headers["authorization"] == f"Bearer {token}" for r in fake_sap.requests if r.path != "/oauth/token"
    )
    assert len(fake_sap.creates) == 2


def test_a_record_the_service_refuses_is_poison_and_its_neighbours_are_delivered(fake_sap, claim):
    fake_sap.poison_keys.add("DC-" + f"{2:032x}")
    outcomes = sap_adapter(fake_sap).deliver([claim(1), claim(2), claim(3, condition="ok")])

    assert isinstance(outcomes[0], Delivered)
    assert isinstance(outcomes[1], Poison) and "package not known to SAP" in outcomes[1].error
    assert isinstance(outcomes[2], Poison) and "is not a damage" in outcomes[2].error
    assert list(fake_sap.creates) == [("DamageClaimSet", ("DC-" + f"{1:032x}",))]


def test_throttling_is_retried_after_retry_after_without_duplicating(fake_sap, claim):
    fake_sap.fail_next = [(429, "2"), (503, None)]
    waits: list[float] = []
    policy = DispatchPolicy(attempts=4, backoff_s=0.5, backoff_max_s=10)
    outcomes, tries = deliver_with_retry(
        sap_adapter(fake_sap), [claim(1), claim(2)], policy, sleep=waits.append
    )

    assert all(isinstance(o, Delivered) and o.created for o in outcomes.values())
    assert tries == {1: 3, 2: 3}
    assert waits[0] >= 2.0 and waits[1] == 1.0  # Retry-After honoured, then exponential backoff
    assert [r.path.rsplit("/", 1)[-1] for r in fake_sap.requests].count("$batch") == 3
    assert set(fake_sap.creates.values()) == {1} and len(fake_sap.creates) == 2


def test_wrong_password_is_a_configuration_error_naming_the_variables(fake_sap, claim):
    adapter = sap_adapter(fake_sap, password="wrong")
    with pytest.raises(ErpConfigError, match="WV_SAP_USERNAME/WV_SAP_PASSWORD") as err:
        adapter.deliver([claim(1)])
    assert "wrong" not in str(err.value) and not fake_sap.creates


def test_plain_http_is_refused_outside_loopback():
    settings = PlatformSettings.load(erp_adapter="sap", sap_base_url="http://sap.example.com/odata", sap_username="u",
                             sap_password="p")  # fmt: skip
    with pytest.raises(ErpConfigError, match="WV_SAP_BASE_URL: expected an https:// URL"):
        build_adapter(settings)
