"""A real Label Studio for the labeling tests: started by ``wv services``' plugin from the venv
``make setup`` installs (``.local/label-studio``), on a free port, in a temp state folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from wv.services.label_studio import LabelStudioService, venv_path
from wv.services.manager import ServiceManager

VENV = venv_path(Path(__file__).resolve().parents[3] / ".local")


@pytest.fixture(scope="session")
def label_studio_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL (token included) of a private Label Studio, stopped and purged after the session."""
    if not (VENV / "bin" / "label-studio").exists():
        pytest.skip(f"Label Studio is not installed at {VENV}: run `make setup`")
    manager = ServiceManager(
        tmp_path_factory.mktemp("label-studio-state"), environ={}, services=[LabelStudioService(VENV)]
    )
    (state,) = manager.up()
    yield state.url
    manager.down(purge=True)
