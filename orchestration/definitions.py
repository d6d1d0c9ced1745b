"""The Warehouse Vision code location: every asset module, job, schedule and sensor, one ``Definitions``.

``workspace.yaml`` loads ``orchestration.definitions:defs``. Asset modules are listed explicitly
(one per domain in ``assets/``) so a missing module is an import error, not a silently empty graph.
"""

from __future__ import annotations

import dagster as dg

from assets import (
    analytics,
    detections,
    drift,
    erp,
    hard_examples,
    models,
    reports,
    retraining,
    verified_samples,
)
from orchestration import analytics_automation, jobs, schedules, sensors
from orchestration.resources import default_resources

ASSET_MODULES = [
    detections,
    verified_samples,
    drift,
    hard_examples,
    retraining,
    models,
    analytics,
    erp,
    reports,
]
"""Every ``assets`` module of the code location, upstream first."""

_assets = dg.with_source_code_references(dg.load_assets_from_modules(ASSET_MODULES))

defs = dg.Definitions(
    assets=_assets,
    asset_checks=dg.load_asset_checks_from_modules(ASSET_MODULES),
    jobs=[*jobs.JOBS, *analytics_automation.JOBS],
    schedules=[*schedules.SCHEDULES, *analytics_automation.SCHEDULES],
    sensors=sensors.SENSORS,
    resources=default_resources(),
)
