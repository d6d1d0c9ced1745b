"""The README documents every setting: its configuration table is generated and must be current."""

from __future__ import annotations

from pathlib import Path

from edge.config import EdgeConfig
from edge.settings import EdgeSettings
from foundation.settings import env_fields
from realtime.settings import CentreSettings
from wv.settings import PlatformSettings
from wv.settings_doc import embed, table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_configuration_table_is_current() -> None:
    text = README.read_text()

    assert embed(text) == text, "README table is stale: run `python -m wv.settings_doc --write README.md`"


def test_the_table_has_one_row_per_setting_with_its_description() -> None:
    rows = table().splitlines()[2:]

    assert len(rows) == len(PlatformSettings.model_fields) + len(list(env_fields(EdgeConfig)))
    assert all(row.count("|") >= 4 and not row.endswith("|  |") for row in rows)
    assert any(row.startswith("| `WV_DATABASE_URL` | `postgresql://") for row in rows)
    assert any("`WV_SAP_PASSWORD` | (unset) | orchestration |" in row for row in rows)
    assert any(
        row.startswith("| `WV_LATENCY_BUDGET_MS` | `200.0` | edge (`edge.yaml` budgets.latency_ms)")
        for row in rows
    )


def test_each_tier_has_its_own_default_metrics_port_and_the_table_names_both() -> None:
    edge = EdgeSettings.model_fields["metrics_port"].default
    centre = CentreSettings.model_fields["metrics_port"].default

    assert edge != centre
    row = next(row for row in table().splitlines() if row.startswith("| `WV_METRICS_PORT`"))
    assert f"`{edge}` (edge), `{centre}` (centre)" in row
