"""``wv erp``: the reconciliation report, a dispatch through the files adapter, requeue of parked messages."""

from __future__ import annotations

import pytest
from psycopg.types.json import Jsonb
from typer.testing import CliRunner

from orchestration.erp_cli import app

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def cli_env(database_url, tmp_path, monkeypatch):
    monkeypatch.setenv("WV_DATABASE_URL", database_url)
    monkeypatch.setenv("WV_STATE_DIR", str(tmp_path))
    yield tmp_path


def test_status_dispatch_and_requeue_from_the_command_line(db, cli_env, claim, report):
    for m in (claim(1), report(2)):
        db.execute(
            "INSERT INTO erp_outbox (idempotency_key, kind, facility_id, business_date, payload) "
            "VALUES (%s, %s, %s, %s, %s)",
            (m.idempotency_key, m.kind, m.facility_id, m.business_date, Jsonb(dict(m.payload))),
        )
    db.execute(
        "UPDATE erp_outbox SET status = 'parked', last_error = 'HTTP 400 bad zone' WHERE kind = 'damage_claim'"
    )
    runner = CliRunner()

    status = runner.invoke(app, ["status", "--facility", "FAC-001", "--date", "2026-11-20"])
    assert status.exit_code == 0, status.output
    assert "| damage_claim | 0 | 0 | 0 | 0 | 1 |" in status.output
    assert f"parked   DC-{1:032x} damage_claim FAC-001 2026-11-20 tries=0: HTTP 400 bad zone" in status.output

    sent = runner.invoke(app, ["dispatch"])
    assert sent.exit_code == 0, sent.output
    assert "files: 1 dispatched, 0 acknowledged, 1 sent" in sent.output

    requeued = runner.invoke(app, ["requeue", "--key", f"DC-{1:032x}"])
    assert requeued.exit_code == 0 and "1 message(s) back to pending" in requeued.output
    assert runner.invoke(app, ["dispatch"]).exit_code == 0
    assert dict(db.execute("SELECT kind, status FROM erp_outbox").fetchall()) == {
        "damage_claim": "sent",
        "discrepancy_report": "sent",
    }
    assert (cli_env / "erp" / "outgoing" / "2026-11-20" / "damage_claims" / f"DC-{1:032x}.csv").is_file()


def test_a_facility_without_a_date_is_refused(cli_env):
    result = CliRunner().invoke(app, ["status", "--facility", "FAC-001"])
    assert result.exit_code == 2 and "--facility needs --date" in result.output
