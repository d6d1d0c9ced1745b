"""Where the demo lives and how it starts clean: its own database, model store and folders.

The demo never touches the platform's configured database or model store: it uses the database
``<WV_DATABASE_URL name>_demo`` (Dagster storage ``…_demo_dagster``) on the same server, models in
``<state>/demo/models``, and a topic prefix of its own per run on the configured broker. Every
run starts clean: the demo's Dagster UI is stopped, both databases are dropped and recreated, and
its folders are emptied. Everything it starts (edges, ingest, ``wv`` commands) gets the
environment built here, so each process sees the same settings.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

import psycopg
from psycopg import sql

from wv.services.label_studio import venv_path
from wv.settings import PlatformSettings

REPO_ROOT = Path(__file__).resolve().parents[2]
WV = Path(sys.executable).with_name("wv")


def _with_dbname(url: str, name: str) -> str:
    """``url`` (a postgresql:// URL, as the settings require) naming database ``name`` instead."""
    return urlsplit(url)._replace(path=f"/{name}").geturl()


@dataclass(frozen=True)
class DemoEnvironment:
    base: PlatformSettings
    """The configured settings (services from ``wv services up``)."""
    stamp: str
    """This run's id: names its topics and consumer group."""
    retrain_steps: int | None = None
    """Fine-tuning steps of the drift-triggered candidate (``WV_RETRAIN_STEPS``); None: as configured."""
    verified_sample_rate: float = 1.0
    """The simulator verifies for free, so the demo samples every decision (the platform default is 1 %)."""

    @classmethod
    def create(cls, retrain_steps: int | None = None, verified_sample_rate: float = 1.0) -> DemoEnvironment:
        stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        return cls(PlatformSettings.load(), stamp, retrain_steps, verified_sample_rate)

    # --- names and folders --------------------------------------------------------------------
    @property
    def database_name(self) -> str:
        return (urlsplit(self.base.database_url).path.strip("/") or "warehouse_vision") + "_demo"

    @property
    def database_url(self) -> str:
        return _with_dbname(self.base.database_url, self.database_name)

    @property
    def dagster_database_url(self) -> str:
        return _with_dbname(self.base.database_url, self.database_name + "_dagster")

    @property
    def state_dir(self) -> Path:
        return self.base.state_dir.resolve()

    @property
    def root(self) -> Path:
        """The demo's own folder: models, edge outboxes and configs, labeling files, logs."""
        return self.state_dir / "demo"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def reports(self) -> Path:
        return self.state_dir / "reports" / "demo"

    @property
    def erp_dir(self) -> Path:
        return self.state_dir / "erp" / "demo"

    @property
    def topic_prefix(self) -> str:
        return f"wv.demo.{self.stamp}."

    def variables(self) -> dict[str, str]:
        """The ``WV_*`` (and tool) variables every demo process runs with."""
        wandb = self.root / "wandb"
        return {
            "WV_STATE_DIR": str(self.state_dir),
            "WV_DATABASE_URL": self.database_url,
            "WV_DAGSTER_DATABASE_URL": self.dagster_database_url,
            "WV_REDIS_URL": self.base.redis_url,
            "WV_KAFKA_BOOTSTRAP": self.base.kafka_bootstrap,
            "WV_KAFKA_TOPIC_PREFIX": self.topic_prefix,
            "WV_INGEST_GROUP_ID": f"wv-demo-{self.stamp}",
            "WV_MODEL_STORE": str(self.models_dir),
            "WV_FACILITIES": ",".join(self.base.facilities),
            "WV_VERIFIED_SAMPLE_RATE": f"{self.verified_sample_rate:g}",
            "WV_FRAME_SAMPLING": "true",  # unlabeled frames for backbone_adaptation: one a second of a burst
            "WV_FRAME_SAMPLE_INTERVAL_S": "1",
            # One retraining per drop: the demo tells the story of one candidate (a drift that does
            # not recover would otherwise retrain again on day 6 and the summary name that one).
            "WV_RETRAIN_EVERY_DAYS": "0",
            "WV_METRICS_PORT": "0",
            "WV_LOG_FORMAT": "json",
            "GX_ANALYTICS_ENABLED": "false",
            "DAGSTER_DISABLE_TELEMETRY": "1",
            "TQDM_DISABLE": "1",
            "WANDB_MODE": os.environ.get("WANDB_MODE", self.base.wandb_mode),
            "WANDB_SILENT": "true",
            "WANDB_DIR": str(wandb),
            "WANDB_CACHE_DIR": str(wandb / "cache"),
            "WANDB_DATA_DIR": str(wandb / "data"),
            **({"WV_RETRAIN_STEPS": str(self.retrain_steps)} if self.retrain_steps else {}),
            **({"WV_SERVICES_LABELING": "true"} if self.labeling_server else {}),
        }

    @property
    def labeling_server(self) -> bool:
        """Whether Label Studio is installed (``make setup``): then hard examples are labeled in it."""
        return (venv_path(self.state_dir) / "bin" / "label-studio").exists()

    def env(self) -> dict[str, str]:
        return {**os.environ, **self.variables()}

    def apply(self) -> PlatformSettings:
        """Install the demo's variables in this process and return its settings."""
        os.environ.update(self.variables())
        return PlatformSettings.load()

    # --- starting clean -----------------------------------------------------------------------
    def reset_databases(self) -> None:
        """Drop and recreate nothing but the demo's two databases (connections to them are ended)."""
        admin = _with_dbname(self.base.database_url, "postgres")
        with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
            for name in (self.database_name, self.database_name + "_dagster"):
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def reset_folders(self) -> None:
        for folder in (self.root, self.reports, self.erp_dir):
            shutil.rmtree(folder, ignore_errors=True)
        for folder in (self.models_dir, self.logs, self.reports, self.erp_dir):
            folder.mkdir(parents=True, exist_ok=True)

    # --- processes ----------------------------------------------------------------------------
    def wv(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """Run a ``wv`` command to completion with the demo's environment; raises with its output on failure."""
        done = subprocess.run(
            [str(WV), *args], cwd=REPO_ROOT, env=self.env(), capture_output=True, text=True, timeout=timeout
        )
        if done.returncode != 0:
            tail = (done.stdout + done.stderr).strip()[-3000:]
            raise RuntimeError(f"`wv {' '.join(args)}` exited with {done.returncode}:\n{tail}")
        return done

    def start(self, name: str, *args: str) -> Process:
        """Start a long-running ``wv`` command in its own session, logging to ``<demo>/logs/<name>.log``."""
        log_path = self.logs / f"{name}.log"
        log = log_path.open("ab")
        popen = subprocess.Popen(
            [str(WV), *args], cwd=REPO_ROOT, env=self.env(), stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        return Process(name, popen, log_path, log)


@dataclass
class Process:
    """A ``wv`` child process the demo started; stopped by its own id, never by name."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    log: IO[bytes]

    def running(self) -> bool:
        return self.popen.poll() is None

    def wait(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout)
        finally:
            if self.popen.returncode is not None:
                self.log.close()

    def stop(self, grace_s: float = 20.0) -> int | None:
        """SIGTERM (a clean shutdown drains in-flight work), then SIGKILL after ``grace_s``."""
        if self.running():
            os.killpg(self.popen.pid, signal.SIGTERM)
            deadline = time.monotonic() + grace_s
            while self.running() and time.monotonic() < deadline:
                time.sleep(0.2)
            if self.running():
                os.killpg(self.popen.pid, signal.SIGKILL)
        code = self.popen.wait()
        self.log.close()
        return code

    def tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]
