"""The Warehouse Vision code location: every asset domain, job, schedule and sensor, one ``Definitions``.

``workspace.yaml`` loads ``orchestration.definitions:defs``. Each domain is a package under
``assets/`` holding its assets, checks and helpers (model quality, retraining, facility analytics,
ERP); the settings are read once here, when the code location loads, and reach assets, sensors
and schedules as resources.
"""

from __future__ import annotations

from types import ModuleType

import dagster as dg

from assets import erp, facility_analytics, model_quality, retraining
from assets.common.resources import default_resources
from orchestration import analytics_automation, jobs, schedules, sensors
from orchestration.settings import OrchestrationSettings

DOMAINS: list[ModuleType] = [model_quality, retraining, facility_analytics, erp]
"""Every asset domain of the code location, upstream first."""


def build_definitions(settings: OrchestrationSettings) -> dg.Definitions:
    """The code location for `settings`: assets and checks of every domain, jobs, schedules, sensors."""
    return dg.Definitions(
        assets=dg.with_source_code_references(
            [a for domain in DOMAINS for a in dg.load_assets_from_package_module(domain)]
        ),
        asset_checks=[c for domain in DOMAINS for c in dg.load_asset_checks_from_package_module(domain)],
        jobs=[*jobs.JOBS, *analytics_automation.JOBS],
        schedules=[*schedules.SCHEDULES, *analytics_automation.SCHEDULES],
        sensors=sensors.SENSORS,
        resources=default_resources(settings),
    )


defs = build_definitions(OrchestrationSettings.load())
