"""The Dagster resource that hands assets the configured ERP adapter and dispatch policy.

Only the adapter's name and the files folder are resource configuration (visible in the UI and
in run configuration); credentials and the dispatch policy are read from the environment
(:class:`assets.erp.settings.ErpSettings`) when the adapter is built, so secrets never appear in
Dagster's run storage, metadata or logs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
from pydantic import Field

from assets.erp.adapters import build_adapter
from assets.erp.base import ErpAdapter
from assets.erp.outbox import DispatchPolicy
from assets.erp.settings import ErpSettings


class ErpResource(dg.ConfigurableResource):
    """Where ``erp_sync`` delivers: files (default), SAP or Salesforce."""

    adapter: str = Field(default="", description="files, sap or salesforce; empty: WV_ERP_ADAPTER.")
    files_dir: str = Field(default="", description="Files adapter folder; empty: <state>/erp.")

    @contextmanager
    def open(self) -> Iterator[ErpAdapter]:
        """The adapter, closed afterwards."""
        adapter = build_adapter(
            ErpSettings.load(),
            name=self.adapter or None,
            files_root=Path(self.files_dir) if self.files_dir else None,
        )
        try:
            yield adapter
        finally:
            adapter.close()

    def policy(self) -> DispatchPolicy:
        return DispatchPolicy.from_settings(ErpSettings.load())
