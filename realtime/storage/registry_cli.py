"""``wv model register | list | approve | rollback | history``: the model registry from the shell.

Merged into ``wv model`` next to the training commands. ``approve`` is the human gate of the
retraining loop: it records who approved, retires the previous production model and rewrites the
production pointer the edges follow.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, NoReturn, get_args

import psycopg
import typer
from rich.console import Console
from rich.table import Table

from contract.model_pointer import Pointer
from realtime.settings import CentreSettings
from realtime.storage.model_registry import ModelRegistry, ModelVersion, RegistryError, Status

app = typer.Typer(help="Register, list, approve and roll back model versions.", no_args_is_help=True)
console = Console()


def _registry() -> ModelRegistry:
    settings = CentreSettings.startup()
    return ModelRegistry(settings.database_url, settings.models_dir)


def _fail(exc: Exception) -> NoReturn:
    where = "database unreachable (WV_DATABASE_URL): " if isinstance(exc, psycopg.OperationalError) else ""
    console.print(f"[red]error:[/red] {where}{exc}")
    raise typer.Exit(1)


_FAILURES = (RegistryError, psycopg.OperationalError)
"""What a registry command reports as one clear line instead of a traceback."""


def _show(model: ModelVersion, pointer: Pointer | None = None) -> None:
    console.print(
        f"[bold]{model.version}[/bold] status={model.status} approved_by={model.approved_by or '-'} "
        f"path={model.path}"
    )
    if pointer:
        console.print(f"production pointer: {json.dumps(asdict(pointer), default=str)}")


@app.command()
def register(
    version: Annotated[str, typer.Argument(help="Version name, e.g. the directory name.")],
    path: Annotated[
        Path, typer.Argument(help="Model version directory (absolute, or relative to the store).")
    ],
    config: Annotated[str, typer.Option(help="Model config name (tiny, small, base...).")] = "",
    parent: Annotated[str | None, typer.Option(help="Version it was derived from.")] = None,
    notes: Annotated[str, typer.Option(help="Free text kept with the version.")] = "",
) -> None:
    """Record a model directory as a candidate (metrics.json inside it is stored with it)."""
    registry = _registry()
    directory = path if path.is_absolute() else registry.models_dir / path
    metrics_file = directory / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
    if not config and (directory / "config.json").exists():
        config = json.loads((directory / "config.json").read_text()).get("model", {}).get("name", "")
    try:
        _show(registry.register(version, path, config or "unknown", metrics, parent, notes))
    except _FAILURES as exc:
        _fail(exc)


@app.command("list")
def list_(
    status: Annotated[str | None, typer.Option(help="Only this status.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Registered versions, oldest first."""
    if status is not None and status not in get_args(Status):
        _fail(ValueError(f"unknown status {status!r}; choose one of {list(get_args(Status))}"))
    try:
        models = _registry().list(status)  # type: ignore[arg-type]
    except _FAILURES as exc:
        _fail(exc)
    if json_out:
        typer.echo(
            json.dumps([{**vars(m), "created_at": m.created_at.isoformat()} for m in models], default=str)
        )
        return
    table = Table(title="model versions")
    for column in ("version", "status", "config", "parent", "approved by", "evaluation", "created"):
        table.add_column(column)
    for m in models:
        passed = m.evaluation_passed
        table.add_row(
            m.version,
            m.status,
            m.config,
            m.parent_version or "",
            m.approved_by or "",
            "-" if passed is None else ("passed" if passed else "failed"),
            f"{m.created_at:%Y-%m-%d %H:%M}",
        )
    console.print(table)


@app.command()
def approve(
    version: Annotated[str, typer.Argument(help="Version to put in production.")],
    by: Annotated[str, typer.Option("--by", help="Your name: recorded as the approver.")],
    reason: Annotated[str, typer.Option(help="Why (kept in the promotion history).")] = "",
    canary: Annotated[
        str | None,
        typer.Option(
            help="Only these facilities or cameras first (FAC-002,FAC-001/cam-2); canary_comparison compares "
            "them with production and rolls back a clear loss; approve again without --canary to go fleet-wide."
        ),
    ] = None,
) -> None:
    """Promote a version whose candidate evaluation passed; the edges follow within their poll interval."""
    registry = _registry()
    try:
        if canary is not None:
            model = registry.start_canary(version, by, canary.split(","), reason)
            running = registry.canary()
            console.print(f"canary {model.version} on {running.describe() if running else '?'}")
            return
        _show(registry.approve(version, by, reason), registry.read_pointer())
    except _FAILURES as exc:
        _fail(exc)


@app.command()
def rollback(
    by: Annotated[str, typer.Option("--by", help="Your name: recorded with the rollback.")],
    reason: Annotated[str, typer.Option(help="Why (kept in the promotion history).")] = "",
) -> None:
    """Put the previous production model back; the current one is marked rolled_back."""
    registry = _registry()
    try:
        _show(registry.rollback(by, reason), registry.read_pointer())
    except _FAILURES as exc:
        _fail(exc)


@app.command()
def history(version: Annotated[str | None, typer.Argument(help="Only this version.")] = None) -> None:
    """Approvals and rollbacks, oldest first."""
    table = Table(title="promotions")
    for column in ("at", "action", "version", "previous", "by", "reason"):
        table.add_column(column)
    try:
        rows = _registry().history(version)
    except _FAILURES as exc:
        _fail(exc)
    for row in rows:
        when = f"{row['at']:%Y-%m-%d %H:%M:%S}"
        table.add_row(when, row["action"], row["version"], row["previous"] or "", row["actor"], row["reason"])
    console.print(table)
