"""The ``growthflow`` command. Subcommands are thin adapters over the pipelines' step functions."""

from __future__ import annotations

import os
import sys
from typing import Annotated

if not sys.stdout.isatty():
    # Help and usage errors read through a pipe or in a log are plain, wrapped text (rich
    # would box them and crop them at 80 columns). Typer reads this when it is imported.
    os.environ.setdefault("TYPER_USE_RICH", "0")

import typer  # noqa: E402

from growthflow.attribution.cli import app as attribution_app
from growthflow.commissions.cli import app as commissions_app
from growthflow.errors import GrowthflowError
from growthflow.vouchers.cli import app as vouchers_app

app = typer.Typer(
    name="growthflow",
    help="Production-grade marketing data pipelines.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(attribution_app, name="attribution")
app.add_typer(vouchers_app, name="vouchers")
app.add_typer(commissions_app, name="commissions")


@app.command("ihc-server")
def ihc_server(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    api_key: Annotated[
        str | None, typer.Option(help="Require this x-api-key (default: accept any request).")
    ] = None,
    max_journeys: Annotated[int, typer.Option(help="Journeys per request.")] = 100,
    max_sessions: Annotated[int, typer.Option(help="Sessions per request (free: 200).")] = 3000,
    fault_rate: Annotated[
        float, typer.Option(min=0, max=1, help="Share of requests answered with a fault.")
    ] = 0.0,
    latency_ms: Annotated[float, typer.Option(min=0, help="Delay added to every answer.")] = 0.0,
    seed: Annotated[int | None, typer.Option(help="Seed of the fault injection.")] = None,
) -> None:
    """Serve the IHC API's contract locally, computed with growthflow's ihc model."""
    import uvicorn

    from growthflow.attribution.ihc_server import create_app
    from growthflow.console import err_console

    app = create_app(
        api_key=api_key,
        max_journeys=max_journeys,
        max_sessions=max_sessions,
        fault_rate=fault_rate,
        latency_s=latency_ms / 1000,
        seed=seed,
    )
    err_console.print(
        f"IHC-compatible API on http://{host}:{port}/v1/compute_ihc "
        f"(docs: http://{host}:{port}/docs)"
    )
    uvicorn.run(app, host=host, port=port, log_level="warning")


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
