"""The Warehouse Vision code location: every asset domain, job, schedule and sensor, one ``Definitions``.

``workspace.yaml`` loads ``orchestration.definitions:defs``. Each domain is a package under
``assets/`` holding its assets, checks and helpers (model quality, retraining, facility analytics,
ERP); the settings are read once here, when the code location loads, and reach assets, sensors
and schedules as resources.
"""

from __future__ import annotations

import warnings
from types import ModuleType
from typing import Any

import dagster as dg

from assets import erp, facility_analytics, model_quality, retraining
from assets.common.resources import (
    DatabaseResource,
    KafkaResource,
    ModelRegistryResource,
    RedisResource,
    WandbResource,
)
from assets.erp.resource import ErpResource
from assets.model_quality.resources import LabelingResource
from orchestration import analytics_automation, jobs, schedules, sensors
from orchestration.settings import OrchestrationSettings

DOMAINS: list[ModuleType] = [model_quality, retraining, facility_analytics, erp]
"""Every asset domain of the code location, upstream first."""


def resources_for(settings: OrchestrationSettings) -> dict[str, Any]:
    """The resources every asset may ask for, configured from the settings, and the settings."""
    state = settings.state_dir
    return {
        "settings": settings,
        "database": DatabaseResource(
            url=settings.database_url, shard_map=str(settings.shard_map) if settings.shard_map else None
        ),
        "redis": RedisResource(url=settings.redis_url),
        "kafka": KafkaResource(bootstrap=settings.kafka_bootstrap, topic_prefix=settings.kafka_topic_prefix),
        "model_registry": ModelRegistryResource(
            database_url=settings.database_url, models_dir=str(settings.models_dir)
        ),
        "wandb": WandbResource(mode=settings.wandb_mode, directory=str(state / "wandb")),
        "labeling": LabelingResource(
            export_dir=str(state / "labeling" / "tasks"),
            import_dir=str(state / "labeling" / "verified"),
            truth_dir=str(state / "truth"),
            label_studio_url=settings.label_studio_url,
        ),
        "erp": ErpResource(files_dir=str(state / "erp")),
    }


def build_definitions(settings: OrchestrationSettings) -> dg.Definitions:
    """The code location for `settings`: assets and checks of every domain, jobs, schedules, sensors."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)  # source links are beta: used on purpose
        assets = dg.with_source_code_references(
            [a for domain in DOMAINS for a in dg.load_assets_from_package_module(domain)]
        )
    return dg.Definitions(
        assets=assets,
        asset_checks=[c for domain in DOMAINS for c in dg.load_asset_checks_from_package_module(domain)],
        jobs=[*jobs.JOBS, *analytics_automation.JOBS],
        schedules=[*schedules.SCHEDULES, *analytics_automation.SCHEDULES],
        sensors=sensors.SENSORS,
        resources=resources_for(settings),
    )


defs = build_definitions(OrchestrationSettings.load())
