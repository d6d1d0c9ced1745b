"""The persistent Dagster instance: ``DAGSTER_HOME`` under the state folder, storage in PostgreSQL.

``prepare_instance`` creates the Dagster database when missing, installs ``dagster.yaml`` from the
template, and returns the environment the webserver, daemon and tests need. Credentials travel
only in that environment (``DAGSTER_PG_URL``), never in a file.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import quote, urlencode

import psycopg
from psycopg.conninfo import conninfo_to_dict

from foundation.redaction import display_url
from foundation.settings import ConfigError
from orchestration.settings import OrchestrationSettings
from realtime.storage.migrate import ensure_database

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = REPO_ROOT / "dagster.yaml.template"
WORKSPACE = REPO_ROOT / "workspace.yaml"


def dagster_home(settings: OrchestrationSettings) -> Path:
    return (settings.state_dir / "dagster").resolve()


def storage_env(url: str) -> dict[str, str]:
    """``DAGSTER_PG_URL``, read by ``dagster.yaml``: the storage URL ``url`` in SQLAlchemy's form.

    A libpq multi-host URL (a Patroni cluster) becomes SQLAlchemy's ``?host=h1:p1&host=h2:p2``,
    ``target_session_attrs`` kept, so Dagster's storage follows the leader like every other client.
    """
    try:
        params = {k: str(v) for k, v in conninfo_to_dict(url).items()}
    except psycopg.ProgrammingError as exc:
        raise ConfigError(f"WV_DAGSTER_DATABASE_URL/WV_DATABASE_URL: {exc}") from None
    db_name = params.pop("dbname", "")
    hosts = params.pop("host", "").split(",")
    ports = params.pop("port", "5432").split(",")
    if not hosts[0] or not db_name:
        raise ConfigError(
            "WV_DAGSTER_DATABASE_URL/WV_DATABASE_URL: need host and database name for Dagster storage, "
            f"got {display_url(url)!r}"
        )
    ports += ports[-1:] * (len(hosts) - len(ports))
    user = quote(params.pop("user", "postgres"), safe="")
    password = params.pop("password", "")
    userinfo = f"{user}:{quote(password, safe='')}" if password else user
    query = [("host", f"{h}:{p}") for h, p in zip(hosts, ports, strict=True)] + sorted(params.items())
    return {"DAGSTER_PG_URL": f"postgresql+psycopg2://{userinfo}@/{quote(db_name)}?{urlencode(query)}"}


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
        "DAGSTER_GRPC_TIMEOUT_SECONDS": "300",  # code-server calls on a busy machine (dagster.yaml)
        **storage_env(settings.dagster_url),
    }
    return env


def apply_env(env: dict[str, str]) -> None:
    """Install ``env`` into this process (for in-process instances in tests and sensors)."""
    os.environ.update(env)
