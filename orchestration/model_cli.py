"""``wv model gate``: the promotion gate for a version trained outside the loop, on a team's own data.

A version made with ``wv model train --data … --save-version`` and ``wv model register`` can only
be approved once its candidate evaluation passed. This runs that evaluation — the same
``candidate_evaluation`` asset the retraining loop runs, recorded on the Dagster instance, so it
shows in the UI next to the loop's own — with the team's test folders in place of the simulator's
sets. ``wv model approve`` then gates on the result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="The promotion gate on a team's own test data.", no_args_is_help=True)
console = Console()


@app.command()
def gate(
    version: Annotated[str, typer.Argument(help="Registered candidate to judge.")],
    recent: Annotated[
        Path | None,
        typer.Option(
            help="Dataset folder of your newest labeled images: the candidate must beat production here."
        ),
    ] = None,
    frozen: Annotated[
        Path | None,
        typer.Option(help="Dataset folder of your fixed test images: no version may get worse here."),
    ] = None,
    manifest: Annotated[
        str,
        typer.Option(help="Retraining manifest whose hold-out is the recent set when --recent is not given."),
    ] = "",
) -> None:
    """Compare VERSION with production (INT8, as the edges run it) and record pass or reject."""
    import dagster as dg
    from rich.markdown import Markdown

    from assets.retraining.assets import candidate_evaluation
    from orchestration.definitions import resources_for
    from orchestration.instance import apply_env, prepare_instance
    from orchestration.settings import OrchestrationSettings

    settings = OrchestrationSettings.startup()
    apply_env(prepare_instance(settings))
    config: dict[str, Any] = {"version": version, "manifest": manifest}
    config.update({k: str(v.resolve()) for k, v in (("recent_data", recent), ("frozen_data", frozen)) if v})
    with dg.DagsterInstance.get() as instance:
        result = dg.materialize(
            [candidate_evaluation],
            resources=resources_for(settings),
            run_config={"ops": {"candidate_evaluation": {"config": config}}},
            instance=instance,
            raise_on_error=False,
        )
    checks = result.get_asset_check_evaluations()
    if not checks:  # the asset failed before judging (a blocked candidate fails the run after it)
        failure = next((e for e in result.all_events if e.is_failure), None)
        data = failure.event_specific_data if failure else None
        message = getattr(getattr(data, "error", None), "message", "") or "see the run in the UI"
        console.print(f"[red]error:[/red] the evaluation did not run: {message.strip()}")
        raise typer.Exit(2)
    (check,) = checks
    metadata = result.asset_materializations_for_node("candidate_evaluation")[0].metadata
    console.print(_sets(metadata["sets"].value))
    console.print(Markdown(str(metadata["comparison"].value)))
    if check.passed:
        console.print(
            f"[green]{version} passed[/green]: `wv model approve {version} --by NAME` may promote it"
        )
        return
    for reason in check.metadata["reasons"].value:  # type: ignore[union-attr]
        console.print(f"[red]blocked:[/red] {reason}")
    console.print(f"{version} is rejected and cannot be approved")
    raise typer.Exit(1)


def _sets(sets: Any) -> Table:
    """The sets the gate compared on (the materialization's `sets` metadata: name -> description)."""
    table = Table(title="evaluated on")
    for column in ("set", "source", "frames"):
        table.add_column(column)
    for name, described in sets.items():
        table.add_row(name, str(described.get("source")), str(described.get("frames")))
    return table
