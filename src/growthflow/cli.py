"""The ``growthflow`` command. Subcommands are thin adapters over the pipelines' step functions."""

from __future__ import annotations

import sys

import typer

from growthflow.attribution.cli import app as attribution_app
from growthflow.errors import GrowthflowError

app = typer.Typer(
    name="growthflow",
    help="Production-grade marketing data pipelines.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(attribution_app, name="attribution")


def main() -> None:
    from growthflow.console import err_console

    try:
        app(prog_name="growthflow")
    except GrowthflowError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("[bold red]interrupted[/]")
        sys.exit(130)
