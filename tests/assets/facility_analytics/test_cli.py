"""``wv analytics backfill``: partition keys and refusals before anything is sent to Dagster."""

from __future__ import annotations

from datetime import date

import pytest
from typer.testing import CliRunner

from orchestration.analytics_cli import app
from orchestration.backfills import partition_keys

pytestmark = pytest.mark.timeout(60)


def test_partition_keys_cover_every_facility_and_day_inclusive():
    keys = partition_keys(["FAC-001", "FAC-002"], date(2026, 11, 1), date(2026, 11, 3))
    assert keys == [
        "2026-11-01|FAC-001", "2026-11-01|FAC-002", "2026-11-02|FAC-001",
        "2026-11-02|FAC-002", "2026-11-03|FAC-001", "2026-11-03|FAC-002",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--facility", "FAC-999", "--from", "2026-11-01"], "not configured in WV_FACILITIES: FAC-999"),
        (["--from", "2026-11-05", "--to", "2026-11-01"], "is before --from"),
        (["--from", "yesterday"], "dates must be YYYY-MM-DD"),
    ],
)
def test_bad_requests_are_refused_with_the_reason(args, message):
    result = CliRunner().invoke(app, ["backfill", *args, "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 2
    assert message in result.output


def test_an_unreachable_webserver_is_a_clear_error():
    result = CliRunner().invoke(app, ["backfill", "--from", "2026-11-01", "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 1
    assert "Dagster webserver at http://127.0.0.1:9 does not answer" in result.output
    assert "wv ui" in result.output
