"""The model-quality domain's resource: where labeling tasks go out and where answers come back."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from pydantic import Field


class LabelingResource(dg.ConfigurableResource):
    """Where verification tasks are written for annotators and where their answers come back."""

    export_dir: str = Field(description="Task files and crops.")
    import_dir: str = Field(description="Answered files to import.")
    verifier: str = Field(
        default="",
        description="Demo only: 'ground-truth' lets the simulator's truth answer tasks; empty: people do.",
    )

    truth_dir: str = Field(default="", description="Demo only: simulator truth JSONL files.")
    label_studio_url: str = Field(
        default="",
        description="Label Studio with its token (`http://:TOKEN@host:port`); empty: task files only.",
    )

    def truth_path(self) -> Path:
        return Path(self.truth_dir)

    def tasks_path(self) -> Path:
        path = Path(self.export_dir)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def answers_path(self) -> Path:
        path = Path(self.import_dir)
        path.mkdir(parents=True, exist_ok=True)
        return path
