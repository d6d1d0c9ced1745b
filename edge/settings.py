"""The edge tier's process settings: where it keeps state, how it reaches the centre, how it logs.

Per-box options (cameras, engine, budgets, outbox, …) live in ``edge.yaml`` (``edge.config``);
those with a fleet-wide default name their ``WV_`` variable where they are declared.
"""

from __future__ import annotations

from pydantic import Field

from foundation.settings import (
    METRICS_PORT_DESCRIPTION,
    GrpcClientSettings,
    HardExampleSettings,
    KafkaSettings,
    LoggingSettings,
    MetricsSettings,
    RedisSettings,
    StateSettings,
)


class EdgeSettings(
    LoggingSettings,
    StateSettings,
    KafkaSettings,
    GrpcClientSettings,
    RedisSettings,
    MetricsSettings,
    HardExampleSettings,
):
    """Everything ``wv edge run`` reads from the environment (``WV_…``)."""

    metrics_port: int = Field(9464, ge=0, le=65535, description=METRICS_PORT_DESCRIPTION)
