"""Label Studio, the labeling server: probed with an authenticated API call; started from its own venv.

``make setup`` installs PyPI ``label-studio`` into ``<state_dir>/label-studio`` (its pins never touch
the project's). A local instance keeps its SQLite database under ``<state_dir>/services/label-studio``
and is reached at ``http://:TOKEN@127.0.0.1:PORT`` (the admin's legacy API token as the password).
Its first start spends most of its time migrating an empty database, so the first database made
(with its token) is kept as a template in the venv and later instances start from a copy.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sqlite3
from pathlib import Path

from assets.model_quality.label_studio import LabelStudio
from wv.services.base import Launched, Service, find_binary, spawn, wait_healthy

ADMIN = "wv-admin@localhost"
DATABASE = "label_studio.sqlite3"
START_TIMEOUT_S = 240.0
"""A first start migrates ~200 tables: about 20 s on an idle core, minutes on a busy one."""


def venv_path(state_dir: Path) -> Path:
    """Where ``make setup`` installs Label Studio."""
    return state_dir / "label-studio"


class LabelStudioService(Service):
    name = "label-studio"
    variable = "WV_LABEL_STUDIO_URL"
    field = "label_studio_url"
    process_name = "label-studio"

    def __init__(self, venv: Path | None = None) -> None:
        self.venv = venv
        """Label Studio's virtual environment; default ``<state_dir>/label-studio``."""

    def probe(self, url: str, timeout: float = 3.0) -> str | None:
        if not url:
            return "not configured"
        return LabelStudio(url, timeout).probe()

    def start(self, home: Path, port: int, configured_url: str) -> Launched:
        venv = self.venv or venv_path(home.parent.parent)
        binary = find_binary(
            "label-studio",
            (venv / "bin" / "label-studio",),
            hint=f"`make setup` installs it into {venv} (or set WV_LABEL_STUDIO_URL to a running server)",
        )
        data = (home / "data").resolve()
        template = venv / "wv-template"
        token = self._token(data, template)
        env = {
            **os.environ,
            "LABEL_STUDIO_BASE_DATA_DIR": str(data),
            "LATEST_VERSION_CHECK": "false",
            "COLLECT_ANALYTICS": "false",
            "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
        }
        command = [
            str(binary), "start", "--no-browser",
            "--internal-host", "127.0.0.1", "--port", str(port),
            "--username", ADMIN, "--password", token[:20],
            "--user-token", token, "--enable-legacy-api-token",
        ]  # fmt: skip
        process = spawn(command, home, env=env)
        url = f"http://:{token}@127.0.0.1:{port}"
        wait_healthy(
            lambda: self.probe(url, 2.0), process.poll, f"label-studio on port {port}", home, START_TIMEOUT_S
        )
        if not (template / DATABASE).exists():
            self._save_template(data, template, token)
        return Launched(url=url, pid=process.pid, port=port)

    @staticmethod
    def _token(data: Path, template: Path) -> str:
        """The admin token of the database in ``data``: kept from before, the template's, or new."""
        data.mkdir(parents=True, exist_ok=True)
        kept = data / "wv-token"
        if not (data / DATABASE).exists() and (template / DATABASE).exists():
            shutil.copyfile(template / DATABASE, data / DATABASE)
            shutil.copyfile(template / "wv-token", kept)
        if not kept.exists():
            kept.write_text(secrets.token_hex(20))  # 40 characters, as --user-token wants
            kept.chmod(0o600)
        return kept.read_text().strip()

    @staticmethod
    def _save_template(data: Path, template: Path, token: str) -> None:
        """A consistent copy of the freshly migrated database (SQLite's backup API) and its token."""
        template.mkdir(parents=True, exist_ok=True)
        partial = template / f"{DATABASE}.partial"
        with sqlite3.connect(data / DATABASE) as source, sqlite3.connect(partial) as target:
            source.backup(target)
        (template / "wv-token").write_text(token)
        (template / "wv-token").chmod(0o600)
        partial.replace(template / DATABASE)
