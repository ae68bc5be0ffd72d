"""``growthflow vouchers ...``: run the segmentation pipeline, serve the selection API."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from growthflow.attribution.cli import DbOption, SchemaOption, _engine

app = typer.Typer(help="Voucher segmentation and the voucher selection API.", no_args_is_help=True)


@app.command("run")
def run(
    source: Annotated[str, typer.Option(help="Parquet or CSV: a path, or an http(s)/s3 URL.")],
    db: DbOption = None,
    schema: SchemaOption = None,
    country: Annotated[str, typer.Option(help="Keep this country (trimmed, any case).")] = "Peru",
    segments: Annotated[
        Path | None, typer.Option(help="YAML file of segments (default: the built-in bands).")
    ] = None,
    allow_empty: Annotated[
        bool,
        typer.Option(
            "--allow-empty",
            help="Publish even when no voucher falls in any segment (the API then answers "
            "404 to everyone). Without it such a run fails and the live version stays.",
        ),
    ] = False,
) -> None:
    """Clean voucher assignments, count vouchers per segment band, publish voucher_segments."""
    from rich.table import Table

    from growthflow.console import console
    from growthflow.vouchers.pipeline import run_vouchers
    from growthflow.vouchers.segments import load_segments

    config = load_segments(segments)
    engine = _engine(db, schema, create=True)
    summary = run_vouchers(engine, source, config, country, allow_empty=allow_empty)
    table = Table(title=f"voucher segments version {summary.version}", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    c = summary.clean
    for label, value in (
        ("rows in the source", c.source_rows),
        (f"dropped: country is not {summary.country}", c.other_country),
        ("dropped: no voucher_amount", c.no_voucher_amount),
        ("dropped: voucher_amount is not a number", c.voucher_amount_not_a_number),
        ("dropped: exact duplicates", c.duplicates),
        ("rows kept", c.kept),
        (
            "left out of total_orders segments (empty, unparsable, negative)",
            c.total_orders_unusable,
        ),
        ("left out of recency segments (negative, unparsable)", c.recency_unusable),
        ("voucher_segments rows", summary.segment_rows),
    ):
        table.add_row(label, f"{value:,}")
    console.print(table)


@app.command("serve")
def serve(
    db: DbOption = None,
    schema: SchemaOption = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Serve POST /voucher and GET /voucher_amount (docs at /docs)."""
    import uvicorn

    from growthflow.console import err_console
    from growthflow.settings import load_settings
    from growthflow.vouchers.api import create_app

    engine = _engine(db, schema)
    app = create_app(engine, reference_date=load_settings().vouchers_reference_date)
    err_console.print(f"voucher API on http://{host}:{port} (docs: http://{host}:{port}/docs)")
    uvicorn.run(app, host=host, port=port, log_level="warning")
