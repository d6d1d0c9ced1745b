"""Run a Great Expectations suite on a DataFrame and keep the Data Docs under the state folder.

GX 1.x is called directly (``dagster-ge`` still needs GX < 1). The file context lives in
``<root>/gx``; a file lock serialises the suite/checkpoint bookkeeping of concurrent runs.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

if TYPE_CHECKING:
    import pandas as pd
    from great_expectations.expectations.expectation import Expectation


@dataclass(frozen=True)
class ExpectationOutcome:
    expectation: str
    kwargs: dict[str, Any]
    success: bool
    unexpected_count: int | None
    unexpected_percent: float | None
    examples: list[Any] = field(default_factory=list)


@dataclass(frozen=True)
class ValidationOutcome:
    suite: str
    success: bool
    rows: int
    outcomes: list[ExpectationOutcome]
    docs_path: str | None

    @property
    def failures(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success]

    def failures_table(self) -> list[dict[str, Any]]:
        """Failing expectations as plain dicts (for metadata and logs)."""
        return [
            {
                "expectation": f.expectation,
                "column": f.kwargs.get("column") or f.kwargs.get("column_A") or f.kwargs.get("column_list"),
                "unexpected": f.unexpected_count,
                "unexpected_percent": None
                if f.unexpected_percent is None
                else round(f.unexpected_percent, 3),
                "examples": [str(x) for x in f.examples[:5]],
            }
            for f in self.failures
        ]


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".gx.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _jsonable(value: Any) -> Any:
    return value if isinstance(value, str | int | float | bool | type(None)) else str(value)


def validate(
    frame: pd.DataFrame,
    suite_name: str,
    expectations: Sequence[Expectation],
    root: Path,
    data_docs: bool = True,
) -> ValidationOutcome:
    """Validate ``frame`` against ``expectations``; Data Docs go to ``<root>/gx/uncommitted/data_docs``."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    with _locked(root):
        context = gx.get_context(mode="file", project_root_dir=str(root))
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        source = context.data_sources.add_or_update_pandas("warehouse_vision")
        asset = next((a for a in source.assets if a.name == suite_name), None) or source.add_dataframe_asset(
            suite_name
        )
        batch = next((b for b in asset.batch_definitions if b.name == "whole"), None)
        batch = batch or asset.add_batch_definition_whole_dataframe("whole")
        suite = context.suites.add_or_update(
            gx.ExpectationSuite(name=suite_name, expectations=[e.copy() for e in expectations])
        )
        definition = context.validation_definitions.add_or_update(
            gx.ValidationDefinition(name=suite_name, data=batch, suite=suite)
        )
        actions: list[Any] = [gx.checkpoint.UpdateDataDocsAction(name="data_docs")] if data_docs else []
        checkpoint = context.checkpoints.add_or_update(
            gx.Checkpoint(
                name=suite_name, validation_definitions=[definition], actions=actions, result_format="SUMMARY"
            )
        )
        result = checkpoint.run(batch_parameters={"dataframe": frame})
        docs = context.get_docs_sites_urls() if data_docs else []
    outcomes = [
        ExpectationOutcome(
            expectation=r.expectation_config.type,
            kwargs={k: _jsonable(v) for k, v in r.expectation_config.kwargs.items() if k != "batch_id"},
            success=bool(r.success),
            unexpected_count=r.result.get("unexpected_count"),
            unexpected_percent=r.result.get("unexpected_percent"),
            examples=list(r.result.get("partial_unexpected_list") or []),
        )
        for run in result.run_results.values()
        for r in run.results
        if r.expectation_config is not None
    ]
    return ValidationOutcome(
        suite=suite_name,
        success=bool(result.success),
        rows=len(frame),
        outcomes=outcomes,
        docs_path=docs[0]["site_url"] if docs else None,
    )
