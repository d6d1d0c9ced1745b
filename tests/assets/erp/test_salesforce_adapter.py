"""The Salesforce adapter against a local REST look-alike: OAuth, Case upsert by external id, retries."""

from __future__ import annotations

import json

import pytest

from assets.erp.adapters import build_adapter
from assets.erp.base import Delivered, ErpConfigError, Poison
from assets.erp.outbox import DispatchPolicy, deliver_with_retry
from wv.settings import PlatformSettings

pytestmark = pytest.mark.timeout(30)
CASE_PATH = "/services/data/v60.0/sobjects/Case/WV_External_Id__c/"


def sf_adapter(fake, secret: str | None = None):
    return build_adapter(
        PlatformSettings.load(
            erp_adapter="salesforce",
            salesforce_token_url=fake.token_url,
            salesforce_client_id=fake.client_id,
            salesforce_client_secret=secret or fake.client_secret,
            erp_timeout_s=5.0,
        )
    )


def test_token_handshake_then_one_case_upsert_per_message(fake_salesforce, claim, report):
    outcomes = sf_adapter(fake_salesforce).deliver([claim(1), report(2)])

    assert [o.created for o in outcomes] == [True, True]
    assert [o.external_id for o in outcomes] == [
        fake_salesforce.ids[f"DC-{1:032x}"],
        fake_salesforce.ids[f"DR-{2:032x}"],
    ]
    token, *upserts = fake_salesforce.requests
    assert (token.method, token.path) == ("POST", "/services/oauth2/token")
    assert b"grant_type=client_credentials" in token.body
    assert [(r.method, r.path) for r in upserts] == [
        ("PATCH", CASE_PATH + f"DC-{1:032x}"),
        ("PATCH", CASE_PATH + f"DR-{2:032x}"),
    ]
    (issued,) = fake_salesforce.tokens
    assert all(r.headers["authorization"] == f"Bearer {issued}" for r in upserts)
    case = fake_salesforce.cases[f"DC-{1:032x}"]
    assert (
        case["Type"] == "Damage Claim" and case["Priority"] == "High" and case["WV_Facility__c"] == "FAC-001"
    )
    assert "WV_External_Id__c" not in json.loads(upserts[0].body)
    assert (
        "inbound: expected 100, seen 95, difference -5"
        in fake_salesforce.cases[f"DR-{2:032x}"]["Description"]
    )


def test_duplicate_external_id_updates_the_case_instead_of_creating_one(fake_salesforce, report):
    adapter = sf_adapter(fake_salesforce)
    first = adapter.deliver([report(2)])
    second = adapter.deliver([report(2, seen=99)])

    assert first[0].created is True and second[0].created is False
    assert first[0].external_id == second[0].external_id
    assert fake_salesforce.creates == {f"DR-{2:032x}": 1}
    assert "seen 199 vs expected 205" in fake_salesforce.cases[f"DR-{2:032x}"]["Subject"]


def test_expired_session_refreshes_the_token_once(fake_salesforce, claim):
    adapter = sf_adapter(fake_salesforce)
    adapter.deliver([claim(1)])
    fake_salesforce.revoke_tokens()
    assert adapter.deliver([claim(2)])[0].created is True

    paths = [r.path for r in fake_salesforce.requests]
    assert paths == ["/services/oauth2/token", CASE_PATH + f"DC-{1:032x}", CASE_PATH + f"DC-{2:032x}",
                     "/services/oauth2/token", CASE_PATH + f"DC-{2:032x}"]  # fmt: skip
    assert fake_salesforce.creates == {f"DC-{1:032x}": 1, f"DC-{2:032x}": 1}


def test_429_and_503_are_retried_with_backoff_and_never_duplicate(fake_salesforce, claim):
    fake_salesforce.fail_next = [(503, None), (429, "3")]
    waits: list[float] = []
    policy = DispatchPolicy(attempts=5, backoff_s=0.25, backoff_max_s=10)
    outcomes, tries = deliver_with_retry(
        sf_adapter(fake_salesforce), [claim(1), claim(2)], policy, sleep=waits.append
    )

    assert all(isinstance(o, Delivered) for o in outcomes.values())
    assert tries == {1: 3, 2: 3}
    assert waits == [0.25, 3.0]
    assert fake_salesforce.creates == {f"DC-{1:032x}": 1, f"DC-{2:032x}": 1}


def test_validation_error_is_poison_and_does_not_stop_the_others(fake_salesforce, claim):
    bad = claim(1)
    bad.payload["business_date"] = "20.11.2026"  # type: ignore[index]
    outcomes = sf_adapter(fake_salesforce).deliver([bad, claim(2)])

    assert isinstance(outcomes[0], Poison) and "INVALID_TYPE_ON_FIELD_IN_RECORD" in outcomes[0].error
    assert isinstance(outcomes[1], Delivered)
    assert list(fake_salesforce.creates) == [f"DC-{2:032x}"]


def test_rejected_client_secret_is_a_configuration_error_without_the_secret(fake_salesforce, claim):
    with pytest.raises(ErpConfigError, match="refused: HTTP 400") as err:
        sf_adapter(fake_salesforce, secret="not-the-secret").deliver([claim(1)])
    assert "not-the-secret" not in str(err.value)
