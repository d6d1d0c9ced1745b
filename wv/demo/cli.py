"""``wv demo`` (``make demo``): the platform end to end on this machine, in about ten minutes.

It starts clean every time (its own databases and folders are recreated; nothing else is
touched), runs a simulated week through the real processes and jobs, prints the summary and
leaves the Dagster UI running on the demo's instance.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from typing import Annotated

import psycopg
import typer
from rich.console import Console
from rich.table import Table

from simulator import PRESETS
from wv.demo.environment import DemoEnvironment
from wv.demo.orchestrate import RetrainingSize
from wv.demo.progress import Story
from wv.demo.scenario import Scenario
from wv.demo.story import DemoRun, Outcome
from wv.demo.summary import PHASES, WeekSummary

app = typer.Typer(help="Run the end-to-end demo on local defaults.", invoke_without_command=True)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f} ms"


def _ms_pair(first: float | None, second: float | None) -> str:
    return "–" if first is None or second is None else f"{first:.0f}/{second:.0f} ms"


def summary_table(summary: WeekSummary, scenario: Scenario, swapped: bool) -> Table:
    d, s, n = scenario.drift_day, scenario.swap_day, scenario.days
    spans = {
        "before drift": f"d1–{d - 1}" if d > 2 else "d1",
        "drift, old model": f"d{d}–{s - 1}" if s - 1 > d else f"d{d}",
        "swap day": f"d{s}",
        "after swap": f"d{s + 1}–{n}" if n > s + 1 else f"d{n}",
    }
    table = Table(title=f"The week {scenario.dates[0]} – {scenario.dates[-1]}", title_justify="left")
    table.add_column("facility")
    for column in ("events", "decisions", "anomalies"):
        table.add_column(column, justify="right")
    for phase in PHASES:
        table.add_column(f"accuracy {spans[phase]}", justify="right")
    for column in ("p99 latency", "fallback ev/dec", "fallback p50/p99", "superseded", "ERP records"):
        table.add_column(column, justify="right")
    for f in summary.facilities:
        table.add_row(
            f"{f.facility}{' *' if f.drifted else ''}", f"{f.events:,}", f"{f.decisions:,}", f"{f.anomalies:,}",
            *(_pct(f.accuracy.get(p)) for p in PHASES), _ms(f.latency_p99_ms),
            f"{_pct(f.fallback_share)}/{_pct(f.fallback_decision_share)}",
            _ms_pair(f.fallback_latency_p50_ms, f.fallback_latency_p99_ms), f"{f.superseded:,}",
            f"{f.erp_records:,}",
        )  # fmt: skip
    swap = f"retrained model approved and hot-swapped during day {s}" if swapped else "no model swap"
    table.caption = (
        f"* {scenario.drift} drift from day {d}; {swap}. Accuracy: verified samples (the simulator "
        "verifies). Latency: end to end per event at the edge, frames replayed as fast as the CPU allows. "
        "Fallback: share of events / decisions the straggler fallback model made when the primary missed "
        "its deadline, their latency, and how many of its detections the primary's late result superseded."
    )
    return table


def daily_table(summary: WeekSummary, scenario: Scenario) -> Table:
    facility = scenario.drifted_facility
    table = Table(title=f"{facility} day by day", title_justify="left")
    for column in ("day", "date", "drift", "accuracy", "decisions by model version"):
        table.add_column(column)
    accuracy = dict(summary.daily_accuracy.get(facility, []))
    models = summary.daily_models.get(facility, {})
    for day in scenario.dates:
        shares = ", ".join(f"{v} {n}" for v, n in sorted(models.get(day, {}).items()))
        table.add_row(
            str(scenario.day_number(day)), day.isoformat(),
            scenario.drift if scenario.is_drifted(facility, day) else "", _pct(accuracy.get(day)), shares,
        )  # fmt: skip
    return table


def verdict(outcome: Outcome, summary: WeekSummary, threshold: float) -> tuple[list[str], list[str]]:
    """(failures: something broke; shortfalls: the loop stopped where the platform said so)."""
    failures = list(outcome.problems)
    shortfalls = []
    drifted = next(f for f in summary.facilities if f.drifted)
    if outcome.runs["failed"]:
        failures.append(f"{outcome.runs['failed']} nightly Dagster runs failed (see the UI's Runs page)")
    if not outcome.drift_alarm:
        failures.append(f"the drift sensor never fired for {drifted.facility}")
    elif outcome.candidate and not outcome.candidate_passed:
        shortfalls.append(
            f"the retrained candidate {outcome.candidate} did not pass its blocking check "
            f"({outcome.gate_reasons or 'see the retraining run'}), so nothing was approved and the edges "
            "kept the old model. On two CPU cores the demo can afford only a short fine-tune "
            "(--retrain-steps); see the README, 'What is not verified here'."
        )
    elif outcome.approved_at is None:
        failures.append("the candidate passed but was never approved")
    canary = outcome.canary
    if canary.get("verdict") == "rollback":
        shortfalls.append(
            f"canary_comparison rolled the canary back on {', '.join(canary['facilities'])}: "
            f"{'; '.join(canary.get('reasons', []))}"
        )
    elif canary and not canary.get("fleet_wide"):
        shortfalls.append(
            f"the canary on {', '.join(canary['facilities'])} never went fleet-wide "
            f"({canary.get('verdict', 'not judged')}: {'; '.join(canary.get('reasons', []))})"
        )
    after = drifted.accuracy.get("after swap")
    if outcome.approved_at is not None and (after is None or after < threshold):
        shortfalls.append(
            f"{drifted.facility} accuracy after the swap is {_pct(after)}, below {threshold:.0%}"
        )
    return failures, shortfalls


@app.callback()
def demo(
    days: Annotated[int, typer.Option(min=3, max=14, help="Simulated days, ending yesterday.")] = 7,
    seconds: Annotated[float, typer.Option(min=2, max=120, help="Video per camera and day.")] = 10.0,
    fps: Annotated[float, typer.Option(min=2, max=30, help="Frames per second of the video.")] = 10.0,
    drift: Annotated[
        str, typer.Option(help=f"Drift preset at the drifted facility: {', '.join(sorted(PRESETS))}.")
    ] = Scenario.drift,
    drift_day: Annotated[int, typer.Option(min=1, help="First day with drift at the drifted facility.")] = 4,
    swap_day: Annotated[int, typer.Option(min=2, help="Day during which the new model is approved.")] = 5,
    retrain_steps: Annotated[
        int | None,
        typer.Option(min=1, help="Fine-tuning steps of the candidate; default: WV_RETRAIN_STEPS."),
    ] = None,
    retrain_batch: Annotated[
        int | None, typer.Option(min=1, help="Frames per fine-tuning step; default: the job's.")
    ] = None,
    ui: Annotated[bool, typer.Option("--ui/--no-ui", help="Leave the Dagster UI running at the end.")] = True,
) -> None:
    """Simulate a week in three facilities through edges, ingest and Dagster; close the drift loop."""
    console = Console() if sys.stdout.isatty() else Console(width=150)
    began = time.monotonic()
    logging.getLogger().setLevel(logging.WARNING)  # the story is the display; details go to the logs
    env = DemoEnvironment.create(retrain_steps=retrain_steps)
    try:
        scenario = Scenario(
            tuple(env.base.facilities[:3]), days=days, seconds=seconds, fps=fps, drift=drift,
            drift_day=drift_day, swap_day=swap_day,
        )  # fmt: skip
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    size = RetrainingSize(batch_size=retrain_batch)
    with Story(console, "Warehouse Vision demo: a simulated week, end to end") as story:
        try:
            outcome, summary = DemoRun(env, scenario, story, size).run()
        except (RuntimeError, OSError, subprocess.SubprocessError, psycopg.Error) as exc:
            story.note("The demo stopped", f"logs of every process it started: {env.logs}")
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(1) from None
        address = ""
        if ui:
            with story.step("Dagster UI (wv ui --background) on the demo's instance") as step:
                lines = env.wv("ui", "--background", timeout=420).stdout.splitlines()
                address = next(
                    (line.split(": ", 1)[1] for line in lines if line.startswith("Dagster UI:")), ""
                )
                step.update(address)
    console.print()
    console.print(summary_table(summary, scenario, outcome.approved_at is not None))
    console.print(daily_table(summary, scenario))
    failures, shortfalls = verdict(outcome, summary, env.base.drift_accuracy_threshold)
    minutes = (time.monotonic() - began) / 60
    console.print(
        f"Dagster runs: {outcome.runs['succeeded']} succeeded, {outcome.runs['failed']} failed; retraining run "
        f"{outcome.retraining_run or '-'}. Charts and summary.json: {env.reports}. ERP files: {env.erp_dir}. "
        f"Took {minutes:.1f} min."
    )
    if address:
        console.print(f"[bold]Dagster UI: {address}[/bold] (asset lineage, runs, checks, the demo's charts)")
        console.print("Stop it with `wv ui stop`; stop the local services with `wv services down`.")
    console.print(
        f"Re-running `make demo` starts clean: it recreates the databases {env.database_name} and "
        f"{env.database_name}_dagster and the folders {env.root}, {env.reports}, {env.erp_dir}; nothing else "
        f"is touched. The CLI on the demo's data: export WV_DATABASE_URL={env.database_url} "
        f"WV_MODEL_STORE={env.models_dir}"
    )
    for shortfall in shortfalls:
        console.print(f"[yellow]⚠ not reached:[/yellow] {shortfall}")
    for failure in failures:
        console.print(f"[red]✗ {failure}[/red]")
    if failures:
        raise typer.Exit(1)
    if not shortfalls:
        console.print(
            "[green]✓ The loop closed: drift detected, retrained, approved, swapped, recovered.[/green]"
        )
