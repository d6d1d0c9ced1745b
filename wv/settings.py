"""Every tier's settings in one model, for the apps that span tiers: local services, the demo, the docs."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from edge.sampling.settings import FrameSamplingSettings
from edge.settings import EdgeSettings
from foundation.settings import StateSettings, WVSettings
from orchestration.settings import OrchestrationSettings
from realtime.settings import CentreSettings


class ServicesSettings(StateSettings):
    """What ``wv services up`` starts locally when the configured services do not answer."""

    services_ha: Annotated[frozenset[Literal["postgres", "redis"]], NoDecode] = Field(
        frozenset(),
        description=(
            "Services `wv services up` starts replicated, comma-separated: `postgres` = one etcd and "
            "two Patroni members (leader + synchronous standby); `redis` = a master, a replica and "
            "three Sentinels."
        ),
    )

    services_labeling: bool = Field(
        False, description="`wv services up` also starts Label Studio (installed by `make setup`)."
    )

    @field_validator("services_ha", mode="before")
    @classmethod
    def _split(cls, v: object) -> object:
        return frozenset(s.strip() for s in v.split(",") if s.strip()) if isinstance(v, str) else v


TIER_SETTINGS: dict[str, type[WVSettings]] = {
    "edge": EdgeSettings,
    "centre": CentreSettings,
    "orchestration": OrchestrationSettings,
    "services": ServicesSettings,
    "frame sampling": FrameSamplingSettings,
}
"""Each tier's model, by the name the configuration table gives it."""


class PlatformSettings(
    OrchestrationSettings, CentreSettings, EdgeSettings, ServicesSettings, FrameSamplingSettings
):
    """The union of every tier's settings (one ``WV_`` namespace, each variable declared once)."""
