"""The demo's progress display: one line per step of the story, the running one with live detail.

On a terminal the list redraws in place (rich ``Live``); elsewhere (CI logs, pipes) each step is
printed once when it ends, so the log reads as the same story.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text


@dataclass
class Step:
    title: str
    detail: str = ""
    state: str = "running"
    """running | done | failed | note"""
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None

    @property
    def seconds(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    def update(self, detail: str) -> None:
        self.detail = detail

    def fail(self, detail: str) -> None:
        """Mark the step failed without ending the story (what follows can still run)."""
        self.detail = detail
        self.state = "failed"


MARKS = {"done": "[green]✓[/green]", "failed": "[red]✗[/red]", "note": "[cyan]•[/cyan]"}


class Story:
    """Steps as they happen; ``step()`` marks one done, or failed when its block raises."""

    def __init__(self, console: Console | None = None, title: str = "Warehouse Vision demo") -> None:
        self.console = console or Console()
        self.title = title
        self.steps: list[Step] = []
        self.began = time.monotonic()
        self._live: Live | None = None

    def __enter__(self) -> Story:
        if self.console.is_terminal:
            self._live = Live(self, console=self.console, refresh_per_second=4, transient=False)
            self._live.__enter__()
        else:
            self.console.print(f"[bold]{self.title}[/bold]")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self._live = None

    @contextmanager
    def step(self, title: str) -> Iterator[Step]:
        step = Step(title)
        self.steps.append(step)
        try:
            yield step
        except BaseException:
            step.state = "failed"
            raise
        else:
            step.state = "failed" if step.state == "failed" else "done"
        finally:
            step.ended = time.monotonic()
            if self._live is None:
                self.console.print(self._line(step))

    def note(self, title: str, detail: str = "") -> None:
        """A fact worth its own line (a sensor firing, a model swap), with no duration."""
        step = Step(title, detail, state="note", ended=time.monotonic())
        self.steps.append(step)
        if self._live is None:
            self.console.print(self._line(step))

    def _line(self, step: Step) -> Text:
        mark = MARKS.get(step.state, "")
        took = f"[dim]{step.seconds:6.1f} s[/dim] " if step.state != "note" else " " * 9
        detail = f" [dim]— {step.detail}[/dim]" if step.detail else ""
        return Text.from_markup(f"{mark} {took}{step.title}{detail}")

    def __rich__(self) -> RenderableType:
        table = Table.grid(padding=(0, 1))
        table.add_column(width=2)
        table.add_column(justify="right", width=8)
        table.add_column()
        for step in self.steps:
            mark: RenderableType = (
                Spinner("dots", style="yellow")
                if step.state == "running"
                else Text.from_markup(MARKS[step.state])
            )
            took = Text(f"{step.seconds:.1f} s", style="dim") if step.state != "note" else Text("")
            line = Text(step.title)
            if step.detail:
                line.append(f" — {step.detail}", style="dim")
            table.add_row(mark, took, line)
        header = Text(f"{self.title}  ({time.monotonic() - self.began:.0f} s)", style="bold")
        return Group(header, table)
