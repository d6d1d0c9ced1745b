"""Every tier's settings in one model, for the apps that span tiers: local services, the demo, the docs."""

from __future__ import annotations

from edge.settings import EdgeSettings
from foundation.settings import WVSettings
from orchestration.settings import OrchestrationSettings
from realtime.settings import CentreSettings

TIER_SETTINGS: dict[str, type[WVSettings]] = {
    "edge": EdgeSettings,
    "centre": CentreSettings,
    "orchestration": OrchestrationSettings,
}
"""Each tier's model, by the name the configuration table gives it."""


class PlatformSettings(OrchestrationSettings, CentreSettings, EdgeSettings):
    """The union of every tier's settings (one ``WV_`` namespace, each variable declared once)."""
