"""The persistent Dagster instance: ``DAGSTER_HOME`` under the state folder, storage in PostgreSQL.

``prepare_instance`` creates the Dagster database when missing, installs ``dagster.yaml`` from the
template, and returns the environment the webserver, daemon and tests need. Credentials travel
only in that environment (``DAGSTER_PG_*``), never in a file.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import unquote, urlsplit

from foundation.settings import ConfigError
from orchestration.settings import OrchestrationSettings
from realtime.storage.migrate import ensure_database

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = REPO_ROOT / "dagster.yaml.template"
WORKSPACE = REPO_ROOT / "workspace.yaml"


def dagster_home(settings: OrchestrationSettings) -> Path:
    return (settings.state_dir / "dagster").resolve()


def storage_env(url: str) -> dict[str, str]:
    """``DAGSTER_PG_*`` variables read by ``dagster.yaml`` for the storage URL ``url``."""
    parts = urlsplit(url)
    db_name = parts.path.lstrip("/")
    if not parts.hostname or not db_name:
        raise ConfigError(
            "WV_DAGSTER_DATABASE_URL/WV_DATABASE_URL: need host and database name for Dagster storage, "
            f"got {url!r}"
        )
    return {
        "DAGSTER_PG_HOST": parts.hostname,
        "DAGSTER_PG_PORT": str(parts.port or 5432),
        "DAGSTER_PG_USER": unquote(parts.username or "postgres"),
        "DAGSTER_PG_PASSWORD": unquote(parts.password or ""),
        "DAGSTER_PG_DB": db_name,
    }


def prepare_instance(settings: OrchestrationSettings, home: Path | None = None) -> dict[str, str]:
    """Create the storage database and ``$DAGSTER_HOME/dagster.yaml``; returns the process environment."""
    home = (home or dagster_home(settings)).resolve()
    home.mkdir(parents=True, exist_ok=True)
    ensure_database(settings.dagster_url)
    shutil.copyfile(TEMPLATE, home / "dagster.yaml")
    env = {
        "DAGSTER_HOME": str(home),
        "GX_ANALYTICS_ENABLED": "false",
        "DAGSTER_DISABLE_TELEMETRY": "1",
        **storage_env(settings.dagster_url),
    }
    return env


def apply_env(env: dict[str, str]) -> None:
    """Install ``env`` into this process (for in-process instances in tests and sensors)."""
    os.environ.update(env)
