"""The ``wv`` command: one entry point, sub-commands loaded lazily from each domain.

Each domain owns its commands in a ``cli`` module exposing a Typer ``app``; this root only
maps names to modules, so ``wv edge run`` never imports Dagster and ``wv db`` never imports torch.
"""

from __future__ import annotations

import importlib
import sys

import click
import typer

from foundation.settings import ConfigError, LoggingSettings

# name -> ("module:attribute" of a Typer app, help line). Several apps may share one name:
# their commands are merged into one group (``wv model`` holds training and registry commands).
COMMANDS: dict[str, tuple[list[str], str]] = {
    "services": (["wv.services.cli:app"], "Start, stop and check local PostgreSQL, Redis and Kafka."),
    "db": (["realtime.storage.cli:app"], "Apply migrations, maintain partitions, register cameras."),
    "data": (["simulator.cli:app"], "Generate synthetic conveyor datasets and videos."),
    "model": (
        ["model_lifecycle.cli:app", "realtime.storage.registry_cli:app", "orchestration.model_cli:app"],
        "Train, evaluate, export, register, approve and roll back models.",
    ),
    "edge": (["edge.cli:app"], "Run the edge service next to the cameras."),
    "realtime": (["realtime.cli:app"], "Run the central ingest workers and gRPC service."),
    "ui": (["orchestration.cli:app"], "Start the Dagster webserver and daemon."),
    "analytics": (["orchestration.analytics_cli:app"], "Backfill facility analytics and ERP sync (on-call)."),
    "erp": (
        ["orchestration.erp_cli:app"],
        "ERP outbox: reconciliation, dispatch, requeue of parked messages.",
    ),
    "demo": (["wv.demo.cli:app"], "Run the end-to-end demo on local defaults."),
}


def _load(ref: str) -> click.Command:
    module_name, _, attr = ref.partition(":")
    # Typer builds commands with its vendored click; they behave as click commands here.
    return typer.main.get_command(getattr(importlib.import_module(module_name), attr))  # type: ignore[return-value]


class LazyGroup(click.Group):
    """A click group whose sub-commands are imported only when invoked or listed."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        refs, help_text = COMMANDS[cmd_name]
        commands = [_load(ref) for ref in refs]
        if len(commands) == 1:
            command = commands[0]
        else:
            command = click.Group(cmd_name, help=help_text)
            for sub in commands:
                for name, leaf in getattr(sub, "commands", {sub.name: sub}).items():
                    command.add_command(leaf, name)
        command.help = command.help or help_text
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, COMMANDS[name][1]) for name in self.list_commands(ctx)])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Warehouse Vision: package inspection from camera to ERP."""
    LoggingSettings.load().configure_logging()  # each command then loads (and checks) its tier's settings


def main() -> None:
    """Console-script entry point; configuration errors end with exit code 2 and one clear message."""
    try:
        cli.main(standalone_mode=False)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except (click.exceptions.Abort, typer.Abort):
        sys.exit(130)
    # Typer apps raise the exceptions of Typer's own vendored click.
    except (click.ClickException, typer.TyperException) as exc:
        exc.show()  # type: ignore[union-attr]
        sys.exit(exc.exit_code)
    except (click.exceptions.Exit, typer.Exit) as exc:
        sys.exit(exc.exit_code)
