"""``growthflow commissions ...``: run the ELT over a landing zone, export gold, demo data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from growthflow.attribution.cli import DbOption, SchemaOption, _engine

app = typer.Typer(
    help="Affiliate commissions ELT (landing zone -> bronze -> silver -> gold).",
    no_args_is_help=True,
)

SourcesOption = Annotated[
    Path | None, typer.Option("--sources", help="Feed configuration YAML (default: built in).")
]


@app.command("run")
def run(
    landing: Annotated[Path, typer.Option(help="The landing zone folder.")],
    archive: Annotated[Path, typer.Option(help="Where loaded files are moved.")],
    db: DbOption = None,
    schema: SchemaOption = None,
    sources: SourcesOption = None,
    wait: Annotated[
        float, typer.Option(min=0, help="Seconds to wait for another run to finish.")
    ] = 0,
) -> None:
    """Load every complete landing file, validate it, recompute the affected gold days, archive."""
    from growthflow.commissions.config import load_config
    from growthflow.commissions.pipeline import run_commissions

    config = load_config(sources)
    engine = _engine(db, schema, create=True)
    summary = run_commissions(engine, config, landing, archive, wait_seconds=wait)
    _print_summary(summary)


def _print_summary(summary) -> None:
    from rich.table import Table

    from growthflow.console import console

    files = Table(title="files", show_lines=False)
    for name in ("file", "outcome", "rows in", "silver", "quarantined"):
        files.add_column(name, justify="left" if name in ("file", "outcome") else "right")
    checks = {c.file_id: c for c in summary.checks}
    for load in summary.loads:
        check = checks.pop(load.file_id, None)
        outcome = load.outcome if not load.reason else f"rejected: {load.reason}"
        if load.detail:
            outcome += f" ({load.detail})"
        if check is None:
            files.add_row(load.item.name, outcome, "", "", "")
        else:
            files.add_row(
                load.item.name,
                outcome,
                f"{check.records:,}",
                f"{check.silver_rows:,}",
                f"{sum(check.quarantined.values()):,}",
            )
    for check in checks.values():  # loaded to bronze by an earlier run
        files.add_row(
            check.name,
            "validated",
            f"{check.records:,}",
            f"{check.silver_rows:,}",
            f"{sum(check.quarantined.values()):,}",
        )
    console.print(files)
    d = summary.discovery
    per_feed = ", ".join(f"{feed} {n}" for feed, n in sorted(summary.loaded_per_feed().items()))
    lines = [f"files loaded per feed: {per_feed or 'none'}"]
    if d.waiting:
        lines.append(f"still being written, left for the next run: {', '.join(d.waiting)}")
    if d.ignored:
        lines.append(f"ignored (no feed of that name): {', '.join(d.ignored)}")
    for reason, n in sorted(summary.quarantined.items()):
        lines.append(f"quarantined: {reason}: {n:,}")
    for kind, n in sorted(summary.warnings.items()):
        lines.append(f"warning: {kind}: {n:,}")
    g = summary.gold
    lines.append(
        f"gold: {g.promoted} file(s) made current, {g.superseded} superseded; "
        f"{g.days} day(s), {g.months} month(s) recomputed; "
        + ", ".join(f"{t} {n:,} rows" for t, n in g.rows.items())
    )
    lines.append(f"archived: {summary.archived} file(s)")
    lines.append("time: " + ", ".join(f"{k} {v:.2f} s" for k, v in summary.seconds.items()))
    for line in lines:
        console.print(line, highlight=False)


@app.command("export")
def export(
    out: Annotated[Path, typer.Option(help="Folder for the CSV files.")],
    db: DbOption = None,
    schema: SchemaOption = None,
) -> None:
    """Write the gold tables as CSV files (one per table)."""
    from growthflow.commissions.export import export_gold
    from growthflow.console import console

    engine = _engine(db, schema)
    for path, rows in export_gold(engine, out):
        console.print(f"{path}: {rows:,} rows", highlight=False)


@app.command("report")
def report(
    html: Annotated[Path, typer.Option(help="Where to write the HTML report.")],
    db: DbOption = None,
    schema: SchemaOption = None,
    month: Annotated[
        str | None, typer.Option(help="The month, YYYY-MM (default: the latest with commissions).")
    ] = None,
) -> None:
    """Write a self-contained HTML report of one month: commission per marketing source per
    day and per operator, per scope, and the quarantine and warnings of the loads."""
    from growthflow.commissions.html_report import write_commissions_report
    from growthflow.console import console
    from growthflow.files import check_writable

    check_writable(html)
    written = write_commissions_report(_engine(db, schema), html, month=month)
    console.print(
        f"wrote the HTML report {html} ({written.month}, {html.stat().st_size / 1e6:.1f} MB)",
        highlight=False,
    )


@app.command("demo-data")
def demo_data(
    landing: Annotated[Path, typer.Option(help="The landing zone folder to fill.")],
    days: Annotated[int, typer.Option(min=1, help="Days of daily files.")] = 30,
    rows_per_file: Annotated[int, typer.Option(min=1, help="routy rows per day.")] = 200_000,
    start: Annotated[str, typer.Option(help="First day (YYYY-MM-DD).")] = "2024-03-01",
    seed: Annotated[int, typer.Option(help="Same seed, same files.")] = 7,
) -> None:
    """Write a synthetic landing zone (every feed) for benchmarks and trials."""
    import time
    from datetime import date

    from growthflow.commissions.demo import write_demo_landing
    from growthflow.console import console
    from growthflow.errors import ConfigError

    try:
        first = date.fromisoformat(start)
    except ValueError:
        raise ConfigError(f"--start {start!r} is not a date (YYYY-MM-DD)") from None
    t0 = time.perf_counter()
    written = write_demo_landing(
        landing, days=days, rows_per_file=rows_per_file, start=first, seed=seed
    )
    console.print(
        f"demo landing zone {landing}: {written:,} rows in {time.perf_counter() - t0:.1f} s",
        highlight=False,
    )
