"""Label Studio, the labeling server: probed with an authenticated API call; started from its own venv.

``make setup`` installs PyPI ``label-studio`` into ``<state_dir>/label-studio`` (its pins never touch
the project's). A local instance keeps its SQLite database under ``<state_dir>/services/label-studio``
and is reached at ``http://:TOKEN@127.0.0.1:PORT`` (the admin's legacy API token as the password).
A first start spends most of its time migrating an empty database (20 s on an idle core, two
minutes on a busy one), so a migrated empty database is built once into the venv (``make setup``
runs ``python -m wv.services.label_studio STATE_DIR``) and every new instance starts from a copy of it (7 s);
each instance then creates its own admin and token.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

from assets.model_quality.label_studio import LabelStudio
from wv.services.base import Launched, Service, ServiceError, find_binary, spawn, wait_healthy

ADMIN = "wv-admin@localhost"
DATABASE = "label_studio.sqlite3"
START_TIMEOUT_S = 300.0
"""Migrating ~200 tables takes about 20 s on an idle core, minutes on a busy one."""


def venv_path(state_dir: Path) -> Path:
    """Where ``make setup`` installs Label Studio."""
    return state_dir / "label-studio"


def environment(data: Path) -> dict[str, str]:
    """Label Studio's variables: its data folder (without it even ``--help`` writes to ~/.local/share)."""
    return {
        **os.environ,
        "LABEL_STUDIO_BASE_DATA_DIR": str(data),
        "LATEST_VERSION_CHECK": "false",
        "COLLECT_ANALYTICS": "false",
        "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
    }


def ensure_template(binary: Path, venv: Path) -> Path:
    """The migrated, empty database new instances start from, built once (any Label Studio command
    migrates its database first; ``version`` does nothing else)."""
    template = venv / "wv-template" / DATABASE
    if template.exists():
        return template
    work = template.parent / f"build-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        subprocess.run(
            [str(binary.resolve()), "version"],
            env=environment(work.resolve()),
            cwd=work,
            capture_output=True,
            check=True,
            timeout=START_TIMEOUT_S,
        )
        (work / DATABASE).replace(template)
    except (subprocess.SubprocessError, OSError) as exc:
        output = getattr(exc, "stdout", b"") or b""
        raise ServiceError(
            f"Label Studio could not migrate a database: {exc}\n{output.decode()[-2000:]}"
        ) from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return template


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
        venv = (self.venv or venv_path(home.parent.parent)).resolve()
        binary = self.binary(venv)
        data = (home / "data").resolve()
        data.mkdir(parents=True, exist_ok=True)
        if not (data / DATABASE).exists():
            shutil.copyfile(ensure_template(binary, venv), data / DATABASE)
        token_file = data / "wv-token"
        if not token_file.exists():
            token_file.write_text(secrets.token_hex(20))  # 40 characters, as --user-token wants
            token_file.chmod(0o600)
        token = token_file.read_text().strip()
        command = [
            str(binary), "start", "--no-browser",
            "--internal-host", "127.0.0.1", "--port", str(port),
            "--username", ADMIN, "--password", token[:20],
            "--user-token", token, "--enable-legacy-api-token",
        ]  # fmt: skip
        process = spawn(command, home, env=environment(data))
        url = f"http://:{token}@127.0.0.1:{port}"
        wait_healthy(
            lambda: self.probe(url, 2.0), process.poll, f"label-studio on port {port}", home, START_TIMEOUT_S
        )
        return Launched(url=url, pid=process.pid, port=port)

    @staticmethod
    def binary(venv: Path) -> Path:
        return find_binary(
            "label-studio",
            (venv / "bin" / "label-studio",),
            hint=f"`make setup` installs it into {venv} (or set WV_LABEL_STUDIO_URL to a running server)",
        )


if __name__ == "__main__":  # `make setup`: the template database, built once
    VENV = venv_path(Path(sys.argv[1] if len(sys.argv) > 1 else ".local"))
    print(f"Label Studio template database: {ensure_template(LabelStudioService.binary(VENV), VENV)}")
