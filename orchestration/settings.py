"""Settings of the Dagster code location, webserver and daemon: the assets' settings plus Dagster's own."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import Field, field_validator

from assets.common.settings import PipelineSettings
from assets.erp.settings import ErpSettings
from foundation.settings import LoggingSettings, check_postgres_url


class OrchestrationSettings(LoggingSettings, PipelineSettings, ErpSettings):
    """Everything ``wv ui``, ``wv analytics``, ``wv erp`` and the code location read (``WV_…``)."""

    dagster_database_url: str | None = Field(
        None,
        description="Dagster run/event/schedule storage; default: the application server, database `<name>_dagster`.",
    )
    dagster_host: str = Field("127.0.0.1", description="Interface the Dagster webserver binds to.")
    dagster_port: int = Field(3000, ge=1, le=65535, description="Dagster webserver port.")

    @field_validator("dagster_database_url")
    @classmethod
    def _dagster_url(cls, v: str | None) -> str | None:
        return None if v is None else check_postgres_url(v)

    @property
    def dagster_url(self) -> str:
        """Dagster storage URL: its own database next to the application one."""
        if self.dagster_database_url:
            return self.dagster_database_url
        parts = urlsplit(self.database_url)
        return parts._replace(path=parts.path.rstrip("/") + "_dagster").geturl()
