"""``erp_sync`` through SAP: the reconciliation lands in metadata, the credentials nowhere in Dagster."""

from __future__ import annotations

import base64

import dagster as dg
import pytest
from psycopg.types.json import Jsonb

from assets.common.resources import DatabaseResource
from assets.erp.resource import ErpResource
from assets.erp.sync import erp_sync

pytestmark = pytest.mark.timeout(60)


def test_sap_sync_reports_reconciliation_and_never_exposes_credentials(
    db, database_url, fake_sap, claim, report, monkeypatch
):
    monkeypatch.setenv("WV_ERP_ADAPTER", "sap")
    monkeypatch.setenv("WV_SAP_BASE_URL", fake_sap.base_url)
    monkeypatch.setenv("WV_SAP_USERNAME", fake_sap.username)
    monkeypatch.setenv("WV_SAP_PASSWORD", fake_sap.password)
    fake_sap.poison_keys.add(f"DC-{2:032x}")
    for m in (claim(1), claim(2), report(3)):
        db.execute(
            "INSERT INTO erp_outbox (idempotency_key, kind, facility_id, business_date, payload) "
            "VALUES (%s, %s, %s, %s, %s)",
            (m.idempotency_key, m.kind, m.facility_id, m.business_date, Jsonb(dict(m.payload))),
        )
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [erp_sync],
        partition_key=dg.MultiPartitionKey({"date": "2026-11-20", "facility": "FAC-001"}),
        resources={"database": DatabaseResource(url=database_url), "erp": ErpResource()},
        instance=instance,
    )

    assert result.success
    metadata = result.asset_materializations_for_node("erp_sync")[0].metadata
    assert (metadata["acknowledged"].value, metadata["parked"].value, metadata["adapter"].value) == (
        2,
        1,
        "sap",
    )
    (parked,) = metadata["needs_attention"].value
    assert parked["key"] == f"DC-{2:032x}" and "***" in parked["error"]

    stored = "\n".join(
        str(record.dagster_event) + " " + record.user_message for record in instance.all_logs(result.run_id)
    )
    stored += str(instance.get_run_by_id(result.run_id))
    last_error = db.execute("SELECT last_error FROM erp_outbox WHERE status = 'parked'").fetchone()[0]
    secrets = [
        fake_sap.password,
        base64.b64encode(f"{fake_sap.username}:{fake_sap.password}".encode()).decode(),
        *fake_sap.sessions.values(),
    ]
    assert "package not known to SAP" in stored and "package not known to SAP" in last_error
    for secret in secrets:
        assert secret not in stored, "a credential reached Dagster's event log"
        assert secret not in last_error, "a credential reached the outbox"
