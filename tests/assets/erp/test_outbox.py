"""The outbox dispatcher on the real database: statuses, files, parking, requeue, reconciliation."""

from __future__ import annotations

import csv
import json
from datetime import date

import pytest
from psycopg.types.json import Jsonb

from assets.erp.adapters import build_adapter
from assets.erp.files import FilesAdapter
from assets.erp.outbox import DispatchPolicy, dispatch, reconcile, requeue
from wv.settings import PlatformSettings

pytestmark = pytest.mark.timeout(60)
FAST = DispatchPolicy(attempts=2, backoff_s=0.01, backoff_max_s=0.05, park_after=4)


def enqueue(db, *messages) -> None:
    for m in messages:
        db.execute(
            "INSERT INTO erp_outbox (idempotency_key, kind, facility_id, business_date, payload) "
            "VALUES (%s, %s, %s, %s, %s)",
            (m.idempotency_key, m.kind, m.facility_id, m.business_date, Jsonb(dict(m.payload))),
        )


def statuses(db) -> dict[str, str]:
    return dict(db.execute("SELECT idempotency_key, status FROM erp_outbox").fetchall())


def test_files_adapter_writes_importable_files_and_acknowledges_when_the_erp_confirms(
    db, tmp_path, claim, report
):
    enqueue(db, claim(1), report(2))
    adapter = FilesAdapter(tmp_path)
    first = dispatch(db, adapter, FAST)

    assert (first.claimed, first.sent, first.acknowledged) == (2, 2, 0)
    assert set(statuses(db).values()) == {"sent"}
    day = tmp_path / "outgoing" / "2026-11-20"
    with open(day / "discrepancy_reports" / f"DR-{2:032x}.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["zone_id"], r["expected"], r["seen"], r["discrepancy"]) for r in rows] == [
        ("inbound", "100", "95", "-5"), ("sorter", "100", "100", "0"), ("dock-9", "5", "0", "-5"),
    ]  # fmt: skip
    assert json.loads((day / "damage_claims" / f"DC-{1:032x}.json").read_text())["package_id"] == "PKG-00001"

    (tmp_path / "acknowledged").mkdir()
    (tmp_path / "acknowledged" / f"DC-{1:032x}.json").write_text('{"external_id": "QM-4711"}')
    second = dispatch(db, adapter, FAST)

    assert (second.claimed, second.confirmed_later) == (0, 1)
    assert statuses(db) == {f"DC-{1:032x}": "acknowledged", f"DR-{2:032x}": "sent"}
    assert db.execute("SELECT external_id FROM erp_outbox WHERE kind = 'damage_claim'").fetchone() == (
        "QM-4711",
    )
    totals = reconcile(db).totals
    assert (totals["sent"], totals["acknowledged"], totals["failed"], totals["parked"]) == (1, 1, 0, 0)


def test_a_commit_lost_after_delivery_leads_to_an_update_not_a_second_record(db, fake_sap, claim):
    settings = PlatformSettings.load(
        erp_adapter="sap",
        sap_base_url=fake_sap.base_url,
        sap_username=fake_sap.username,
        sap_password=fake_sap.password,
    )
    adapter = build_adapter(settings)
    enqueue(db, claim(1), claim(2))
    assert dispatch(db, adapter, FAST).created == 2
    # The process died after SAP answered but before the status commit: the rows are due again.
    db.execute("UPDATE erp_outbox SET status = 'pending', acknowledged_at = NULL, sent_at = NULL")
    again = dispatch(db, adapter, FAST)

    assert (again.created, again.updated, again.acknowledged) == (0, 2, 2)
    assert set(fake_sap.creates.values()) == {1} and len(fake_sap.creates) == 2
    assert set(statuses(db).values()) == {"acknowledged"}


def test_poison_is_parked_with_the_error_and_requeue_sends_it_after_the_fix(db, fake_salesforce, claim):
    settings = PlatformSettings.load(erp_adapter="salesforce", salesforce_token_url=fake_salesforce.token_url,
                             salesforce_client_id=fake_salesforce.client_id,
                             salesforce_client_secret=fake_salesforce.client_secret)  # fmt: skip
    bad = claim(1)
    bad.payload["business_date"] = "yesterday"  # type: ignore[index]
    enqueue(db, bad, claim(2))
    report = dispatch(db, build_adapter(settings), FAST)

    assert (report.parked, report.acknowledged) == (1, 1)
    recon = reconcile(db)
    assert recon.counts["damage_claim"]["parked"] == 1
    (parked,) = recon.attention
    assert (
        parked["idempotency_key"] == f"DC-{1:032x}"
        and "INVALID_TYPE_ON_FIELD_IN_RECORD" in parked["last_error"]
    )

    db.execute(
        'UPDATE erp_outbox SET payload = payload || \'{"business_date": "2026-11-20"}\' '
        "WHERE status = 'parked'"
    )
    assert requeue(db) == 1
    assert dispatch(db, build_adapter(settings), FAST).acknowledged == 1
    assert set(statuses(db).values()) == {"acknowledged"}
    assert fake_salesforce.creates == {f"DC-{1:032x}": 1, f"DC-{2:032x}": 1}


def test_outage_defers_with_backoff_and_parks_after_the_limit(db, fake_salesforce, claim):
    settings = PlatformSettings.load(erp_adapter="salesforce", salesforce_token_url=fake_salesforce.token_url,
                             salesforce_client_id=fake_salesforce.client_id,
                             salesforce_client_secret=fake_salesforce.client_secret)  # fmt: skip
    fake_salesforce.fail_next = [(503, None)] * 4
    enqueue(db, claim(1))
    started = db.execute("SELECT clock_timestamp()").fetchone()[0]
    first = dispatch(db, build_adapter(settings), FAST)

    assert first.deferred == 1
    # Deferred by at least backoff_s * 2**attempts = 40 ms after the pass began (not "later than
    # now()": on a loaded machine 40 ms can pass before the check runs).
    row = db.execute(
        "SELECT status, attempts, next_attempt_at - %s >= interval '40 milliseconds', last_error"
        " FROM erp_outbox",
        (started,),
    ).fetchone()
    assert row[:3] == ("failed", 2, True) and "HTTP 503" in row[3]

    db.execute("UPDATE erp_outbox SET next_attempt_at = now()")
    second = dispatch(db, build_adapter(settings), FAST)
    assert second.parked == 1
    assert db.execute("SELECT status, attempts FROM erp_outbox").fetchone() == ("parked", 4)
    assert not fake_salesforce.creates


def test_dispatch_limited_to_partitions_leaves_the_others_pending(db, tmp_path, claim):
    enqueue(db, claim(1, day="2026-11-20"), claim(2, day="2026-11-21"), claim(3, facility="FAC-002"))
    report = dispatch(db, FilesAdapter(tmp_path), FAST, partitions=[("FAC-001", date(2026, 11, 21))])

    assert report.claimed == 1
    assert statuses(db) == {f"DC-{1:032x}": "pending", f"DC-{2:032x}": "sent", f"DC-{3:032x}": "pending"}


def test_retry_pass_sends_only_expired_deferrals_of_any_day(db, tmp_path, claim):
    enqueue(db, claim(1, day="2026-11-18"), claim(2, day="2026-11-19"), claim(3, day="2026-11-20"))
    db.execute(
        "UPDATE erp_outbox SET status = 'failed', attempts = 3, next_attempt_at = now() - interval '1 s' "
        "WHERE business_date = '2026-11-18'"
    )
    db.execute(
        "UPDATE erp_outbox SET status = 'failed', attempts = 3, next_attempt_at = now() + interval '1 h' "
        "WHERE business_date = '2026-11-19'"
    )
    report = dispatch(db, FilesAdapter(tmp_path), FAST, statuses=("failed",))

    assert report.claimed == 1
    assert statuses(db) == {f"DC-{1:032x}": "sent", f"DC-{2:032x}": "failed", f"DC-{3:032x}": "pending"}
    assert db.execute("SELECT attempts FROM erp_outbox WHERE status = 'sent'").fetchone() == (4,)
