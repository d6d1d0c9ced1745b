"""The Dagster assets on the real database: nightly facility-day + ERP files, and the weekly report."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pytest

from assets.common.resources import DatabaseResource
from assets.erp.resource import ErpResource
from assets.erp.sync import erp_sync
from assets.facility_analytics.assets import facility_daily_analytics
from assets.facility_analytics.reports import network_weekly_report
from assets.facility_analytics.sql import refresh_facility_day

pytestmark = pytest.mark.timeout(120)
DAY = (datetime.now(UTC) - timedelta(days=3)).date()


def test_nightly_assets_materialize_a_facility_day_and_write_erp_files(
    db, database_url, seeder, set_facility, tmp_path, orchestration_settings
):
    set_facility(
        "FAC-002", "America/Chicago", expected=40, zones={"inbound": 14, "sorter": 14, "outbound": 14}
    )
    seeder.facility_day("FAC-002", DAY, "America/Chicago")
    key = dg.MultiPartitionKey({"date": DAY.isoformat(), "facility": "FAC-002"})

    result = dg.materialize(
        [facility_daily_analytics, erp_sync],
        partition_key=key,
        resources={
            "settings": orchestration_settings,
            "database": DatabaseResource(url=database_url),
            "erp": ErpResource(adapter="files", files_dir=str(tmp_path)),
        },
    )

    assert result.success
    checks = {
        e.event_specific_data.check_name: e.event_specific_data.passed
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }
    assert checks == {
        "throughput_matches_expected": True,
        "values_in_range": True,
        "day_complete": True,
        "erp_messages_delivered": True,
    }
    analytics_md = result.asset_materializations_for_node("facility_daily_analytics")[0].metadata
    assert analytics_md["timezone"].value == "America/Chicago"
    assert analytics_md["decisions"].value == 45 and analytics_md["packages_seen"].value == 41
    assert analytics_md["throughput_chart"].value.startswith("![")
    sync_md = result.asset_materializations_for_node("erp_sync")[0].metadata
    damaged = analytics_md["erp_claims_enqueued"].value
    assert sync_md["sent"].value == damaged + 1 and sync_md["parked"].value == 0
    files = sorted(p.name for p in (tmp_path / "outgoing" / DAY.isoformat()).rglob("*.csv"))
    assert len(files) == damaged + 1
    row = db.execute(
        "SELECT decisions, source FROM facility_daily_analytics WHERE facility_id = 'FAC-002' AND day = %s",
        (DAY,),
    ).fetchone()
    assert row == (45, "raw")


def test_weekly_report_has_table_chart_and_files_and_flags_missing_days(
    db, database_url, seeder, set_facility, tmp_path, orchestration_settings
):
    monday = DAY - timedelta(days=DAY.weekday() + 7)
    for facility in ("FAC-001", "FAC-003"):
        set_facility(facility, "UTC")
        for offset in (0, 1):
            day: date = monday + timedelta(days=offset)
            seeder.facility_day(facility, day, "UTC", packages=10)
            refresh_facility_day(db, facility, day)
    result = dg.materialize(
        [network_weekly_report],
        partition_key=monday.isoformat(),
        resources={"database": DatabaseResource(url=database_url), "settings": orchestration_settings},
    )

    assert result.success
    metadata = result.asset_materializations_for_node("network_weekly_report")[0].metadata
    assert metadata["facility_days"].value == 4
    table = metadata["table"].value
    assert "| FAC-001 | 2 |" in table and "| FAC-002 | 0 |" in table and "| NETWORK | 4 |" in table
    assert metadata["chart"].value.startswith("![")
    folder = orchestration_settings.state_dir / "reports" / "network_weekly"
    assert {p.name for p in folder.iterdir()} == {f"{monday}.md", f"{monday}.html", f"{monday}.png"}
    assert "<table>" in (folder / f"{monday}.html").read_text()
    (check,) = [
        e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    assert check.check_name == "all_facility_days_present" and not check.passed
    assert check.metadata["missing"].value == 3 * 7 - 4
