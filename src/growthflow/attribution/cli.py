"""``growthflow attribution ...``: demo-data, init-db, run, export."""

from __future__ import annotations

import re
import time
from datetime import date
from pathlib import Path
from typing import Annotated

import typer

from growthflow.errors import ConfigError

app = typer.Typer(help="Multi-touch attribution (IHC and classic models).", no_args_is_help=True)

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="SQLAlchemy URL (sqlite:///path or postgresql+psycopg://user@host/db). "
        "Default: GROWTHFLOW_DATABASE_URL.",
        show_default=False,
    ),
]
SchemaOption = Annotated[
    str | None,
    typer.Option(
        "--schema", help="PostgreSQL schema for the tables. Default: GROWTHFLOW_DB_SCHEMA."
    ),
]


def parse_date(value: str | date) -> date:
    """A calendar day, YYYY-MM-DD; the message says what is wrong with it."""
    if isinstance(value, date):
        return value
    text = value.strip()
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        raise typer.BadParameter(f"{value!r} is not a date: expected YYYY-MM-DD")
    try:
        return date.fromisoformat(text)
    except ValueError as exc:  # e.g. "day is out of range for month"
        raise typer.BadParameter(f"{value!r} is not a date: {exc}") from None


DateOption = Annotated[date, typer.Option(parser=parse_date, metavar="YYYY-MM-DD")]


def _day_option(help_text: str):
    """An optional YYYY-MM-DD option."""
    return typer.Option(parser=parse_date, metavar="YYYY-MM-DD", help=help_text)


def _engine(db: str | None, schema: str | None, *, create: bool = False):
    from growthflow.console import setup_logging
    from growthflow.database import create_engine
    from growthflow.settings import load_settings

    if db is not None and not db.strip():
        raise ConfigError(
            "--db is empty: pass a database URL, or leave --db out to use GROWTHFLOW_DATABASE_URL"
        )
    settings = load_settings()
    setup_logging(settings.log_level)
    return create_engine(
        db or settings.database_url, schema=schema or settings.db_schema, create=create
    )


@app.command("init-db")
def init_db(db: DbOption = None, schema: SchemaOption = None) -> None:
    """Create the attribution tables that do not exist yet (never alters existing ones)."""
    from growthflow.attribution.schema import init_db as create_tables
    from growthflow.console import console

    engine = _engine(db, schema, create=True)
    create_tables(engine)
    console.print("attribution tables are ready")


@app.command("demo-data")
def demo_data(
    db: DbOption = None,
    schema: SchemaOption = None,
    scale: Annotated[
        float, typer.Option(min=0.0001, help="1 = 450k sessions, 2k conversions.")
    ] = 1.0,
    seed: Annotated[int, typer.Option(help="Same seed, same data.")] = 42,
    force: Annotated[bool, typer.Option(help="Replace existing input and output tables.")] = False,
    days: Annotated[
        int, typer.Option(min=1, help="Days of data from 2023-09-01, at the same daily volume.")
    ] = 10,
) -> None:
    """Generate a challenge-shaped demo database (10 days from 2023-09-01 by default)."""
    from growthflow.attribution.demo import generate_demo_data
    from growthflow.console import console, progress

    engine = _engine(db, schema, create=True)
    t0 = time.perf_counter()
    with progress() as bar:
        task = bar.add_task("generating demo data", total=None)
        stats = generate_demo_data(
            engine,
            scale=scale,
            seed=seed,
            force=force,
            days=days,
            on_unit=lambda done, total: bar.update(task, completed=done, total=total),
        )
    console.print(
        f"demo data: {stats.sessions:,} sessions, {stats.conversions:,} conversions, "
        f"{stats.cost_rows:,} cost rows in {time.perf_counter() - t0:.1f} s"
    )


@app.command("run")
def run(
    start: DateOption,
    end: DateOption,
    db: DbOption = None,
    schema: SchemaOption = None,
    csv: Annotated[Path | None, typer.Option("--csv", help="Also export the report here.")] = None,
    model: Annotated[
        str,
        typer.Option(
            help="ihc, linear, first-touch, last-touch, position-based, time-decay, "
            "or the data-driven markov and shapley."
        ),
    ] = "ihc",
    params: Annotated[
        Path | None, typer.Option(help="TOML file overriding model parameters.")
    ] = None,
    order: Annotated[
        int, typer.Option(min=1, max=4, help="markov: the chain's order (last N channels).")
    ] = 1,
    shapley_value: Annotated[
        str,
        typer.Option(
            help="shapley: a coalition's value is the conversion rate of the paths whose "
            "channels are exactly it (exact) or contained in it (subset)."
        ),
    ] = "exact",
    train_start: Annotated[
        date | None,
        _day_option(
            "markov/shapley: first day of the non-converting paths "
            "(default: START - lookback, or the earliest journey session)."
        ),
    ] = None,
    train_end: Annotated[
        date | None,
        _day_option("markov/shapley: their last day (default: END)."),
    ] = None,
    max_journeys: Annotated[int, typer.Option(help="Journeys per batch.")] = 100,
    max_sessions: Annotated[
        int, typer.Option(help="Sessions per batch (free IHC accounts: 200).")
    ] = 3000,
    max_journey_sessions: Annotated[
        int, typer.Option(help="Keep this many most recent sessions of longer journeys.")
    ] = 100,
    lookback_days: Annotated[
        int | None, typer.Option(help="Only sessions within N days before the conversion.")
    ] = None,
    provider: Annotated[
        str, typer.Option(help="local (a --model computed here) or ihc-api (the IHC API).")
    ] = "local",
    conv_type_id: Annotated[
        str | None, typer.Option(help="IHC conversion type. Default: GROWTHFLOW_IHC_CONV_TYPE_ID.")
    ] = None,
    api_url: Annotated[
        str | None,
        typer.Option(
            help="IHC API endpoint. Default: GROWTHFLOW_IHC_API_URL or the commercial API."
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            help="IHC API key. Prefer GROWTHFLOW_IHC_API_KEY (kept out of shell history).",
            show_default=False,
        ),
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(help="IHC requests in flight. Default: GROWTHFLOW_IHC_CONCURRENCY or 4."),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            help="Recompute (a local model) or resend (the IHC API) the journeys whose stored "
            "attribution is up to date."
        ),
    ] = False,
    failures_file: Annotated[
        Path | None,
        typer.Option(
            help="Where failed conversions are listed (ihc-api). Default: "
            "growthflow-failures-<run id>.csv here."
        ),
    ] = None,
    full_report: Annotated[
        bool,
        typer.Option(
            help="Rebuild all of channel_reporting (default: only the days this run touches)."
        ),
    ] = False,
    report_window: Annotated[
        int,
        typer.Option(
            min=0, help="Also refresh the costs of the DAYS days before START.", metavar="DAYS"
        ),
    ] = 0,
) -> None:
    """Attribute conversions with conv_date in [START, END] and refresh channel_reporting
    (the days whose attribution changed, and [START - report-window, END]; all of it the
    first time, or with --full-report)."""
    from growthflow.attribution.pipeline import RunConfig, run_attribution
    from growthflow.console import console, err_console, progress

    t0 = time.perf_counter()
    config = RunConfig.build(
        start=start,
        end=end,
        model=model,
        params_path=params,
        max_journeys=max_journeys,
        max_sessions=max_sessions,
        max_journey_sessions=max_journey_sessions,
        lookback_days=lookback_days,
        provider=provider,
        full_report=full_report,
        report_window_days=report_window,
        order=order,
        shapley_value=shapley_value,
        train_start=train_start,
        train_end=train_end,
    )
    api = None
    if config.provider == "ihc-api":
        api = _api_config(conv_type_id, api_url, api_key, concurrency, force)
    engine = _engine(db, schema)
    with progress() as bar:
        task = bar.add_task("attributing batches", total=None)
        summary = run_attribution(
            engine,
            config,
            csv_path=csv,
            on_plan=lambda n: bar.update(task, total=n),
            on_batch=lambda _batch: bar.advance(task),
            api=api,
            recompute=force,
        )
    console.print(_summary_table(summary, csv, time.perf_counter() - t0))
    if summary.model is not None:
        console.print(_model_table(summary.model))
    if summary.api is not None and summary.api.failures:
        from growthflow.attribution.ihc_client import write_failures

        path = failures_file or Path(f"growthflow-failures-{summary.run_id}.csv")
        write_failures(path, summary.api.failures)
        err_console.print(
            f"[bold red]error:[/] {len(summary.api.failures):,} conversion(s) failed at the IHC "
            f"API and were not written; their ids and reasons are in {path}",
            highlight=False,
        )
        raise typer.Exit(1)


def _api_config(conv_type_id, api_url, api_key, concurrency, force):
    from growthflow.attribution.ihc_client import api_config_from_settings
    from growthflow.settings import load_settings

    return api_config_from_settings(
        load_settings(),
        api_key=api_key,
        conv_type_id=conv_type_id,
        api_url=api_url,
        concurrency=concurrency,
        force=force,
    )


@app.command("report")
def report(
    db: DbOption = None,
    schema: SchemaOption = None,
    full: Annotated[
        bool, typer.Option(help="Rebuild every row (after back-filled costs, edited sessions).")
    ] = False,
    html: Annotated[
        Path | None,
        typer.Option(help="Also write a self-contained HTML report (charts, comparison) here."),
    ] = None,
    start: Annotated[
        date | None,
        _day_option("HTML: first day (default: the report's first)."),
    ] = None,
    end: Annotated[
        date | None,
        _day_option("HTML: last day."),
    ] = None,
    compare: Annotated[
        str | None,
        typer.Option(
            help="HTML: models to compare on the same journeys, e.g. ihc,linear,last-touch,markov."
        ),
    ] = None,
) -> None:
    """Refresh channel_reporting without attributing: the days marked stale by attribution
    changes, or every row with --full; with --html, also write the HTML report."""
    from growthflow.attribution.pipeline import update_report
    from growthflow.console import console
    from growthflow.files import check_writable

    if html is not None:
        check_writable(html)
    models = [m.strip() for m in compare.split(",") if m.strip()] if compare else None
    engine = _engine(db, schema)
    t0 = time.perf_counter()
    stats = update_report(engine, full=full)
    what = (
        "rebuilt"
        if stats.days is None
        else f"{stats.groups:,} (channel, day) groups on {stats.days:,} day(s) refreshed"
    )
    console.print(
        f"channel_reporting: {what}, {stats.rows:,} rows, {time.perf_counter() - t0:.2f} s"
    )
    for skipped in stats.skipped:
        console.print(f"skipped {skipped.table}: {skipped.reason}: {skipped.count:,}")
    if html is not None:
        from growthflow.attribution.html_report import write_attribution_report

        t0 = time.perf_counter()
        written = write_attribution_report(engine, html, start=start, end=end, compare=models)
        console.print(
            f"wrote the HTML report {html} ({written.start} to {written.end}, "
            f"{html.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t0:.2f} s"
        )


@app.command("export")
def export(
    csv: Annotated[Path, typer.Option("--csv", help="Where to write the CSV.")],
    db: DbOption = None,
    schema: SchemaOption = None,
) -> None:
    """Write channel_reporting with CPO and ROAS to a CSV, without rerunning."""
    from growthflow.attribution.export import export_csv
    from growthflow.attribution.schema import channel_reporting
    from growthflow.console import console
    from growthflow.database import missing_tables

    engine = _engine(db, schema)
    if missing_tables(engine, [channel_reporting.name]):
        raise ConfigError("channel_reporting does not exist yet: run `growthflow attribution run`")
    rows = export_csv(engine, csv)
    console.print(f"wrote {rows:,} rows to {csv}")


TracesOption = Annotated[
    Path | None, typer.Option(help="IHC API answers as a traces CSV (ihc_api_traces.csv).")
]
AnswersDbOption = Annotated[
    str | None, typer.Option(help="Or: a database holding the answers of --provider ihc-api runs.")
]


def _answers(traces: Path | None, db: str | None, schema: str | None):
    """The IHC API answers of ``fit-ihc`` and ``evaluate``: a traces CSV or a database."""
    from growthflow.attribution import fit

    if (traces is None) == (db is None):
        raise typer.BadParameter("give exactly one of --traces FILE or --db URL")
    return fit.read_traces_csv(traces) if traces else fit.read_traces_db(_engine(db, schema))


@app.command("fit-ihc")
def fit_ihc(
    out: Annotated[Path, typer.Option(help="Where to write the fitted parameters (TOML).")],
    traces: TracesOption = None,
    db: AnswersDbOption = None,
    schema: SchemaOption = None,
    params: Annotated[
        Path | None, typer.Option(help="Base parameters (default: the shipped ones).")
    ] = None,
    folds: Annotated[int, typer.Option(min=2, help="Cross-validation folds (by request).")] = 5,
) -> None:
    """Fit the local ihc model's curves and phase weights to IHC API answers, print the
    cross-validated error per phase next to the base parameters', and write the fit."""
    from growthflow.attribution import fit
    from growthflow.attribution.models import load_params
    from growthflow.console import console

    base = load_params(params)
    answers = _answers(traces, db, schema)
    check = fit.cross_validate(answers, base, folds)
    fitted = fit.fit_ihc(answers, base)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(fit.to_toml(fitted.ihc))
    b = answers.batch
    console.print(
        f"{b.n_journeys:,} journeys, {b.n_sessions:,} sessions, "
        f"{len(set(map(str, answers.requests))):,} requests; mean absolute error per session "
        f"on journeys of 2+ sessions, {folds} folds of whole requests:"
    )
    for name in ("initializer", "holder", "closer", "ihc"):
        console.print(
            f"  {name:<12} fitted {check['fitted'][name]:.4f}   base {check['base'][name]:.4f}"
        )
    console.print(f"wrote {out} (use it with --params)")


@app.command("evaluate")
def evaluate(
    traces: TracesOption = None,
    db: AnswersDbOption = None,
    schema: SchemaOption = None,
    params: Annotated[
        Path | None, typer.Option(help="Model parameters (default: the shipped ones).")
    ] = None,
    model: Annotated[str, typer.Option(help="The local model to score.")] = "ihc",
) -> None:
    """Mean absolute error per session of a local model against IHC API answers, per phase
    and for ihc, overall and by journey length."""
    from rich.table import Table

    from growthflow.attribution import fit
    from growthflow.attribution.models import get_model, load_params
    from growthflow.console import console

    get_model(model)  # an unknown model fails before reading anything
    base = load_params(params)
    answers = _answers(traces, db, schema)
    table = Table(title=f"{model} against the IHC API's answers (mean absolute error)")
    table.add_column("journeys")
    for column in ("count", "sessions", "initializer", "holder", "closer", "ihc"):
        table.add_column(column, justify="right")
    for label, journeys, sessions, errors in fit.evaluate(answers, base, model):
        cells = ["—" if errors[k] is None else f"{errors[k]:.4f}" for k in errors]
        table.add_row(label, f"{journeys:,}", f"{sessions:,}", *cells)
    console.print(table)


@app.command("export-training-set")
def export_training_set(
    start: DateOption,
    end: DateOption,
    out: Annotated[Path, typer.Option("--out", help="journeys.csv or journeys.json")],
    db: DbOption = None,
    schema: SchemaOption = None,
    max_journey_sessions: Annotated[int, typer.Option(help="Most recent sessions kept.")] = 100,
    lookback_days: Annotated[int | None, typer.Option(help="Only sessions within N days.")] = None,
) -> None:
    """Write journeys in the IHC request format, for training IHC parameters."""
    from growthflow.attribution.training import export_training_set as export
    from growthflow.console import console

    engine = _engine(db, schema)
    journeys, sessions = export(
        engine,
        start,
        end,
        out,
        max_journey_sessions=max_journey_sessions,
        lookback_days=lookback_days,
    )
    console.print(f"wrote {journeys:,} journeys ({sessions:,} sessions) to {out}")


def _summary_table(summary, csv: Path | None, total_seconds: float):
    from rich.table import Table

    table = Table(title=f"attribution run {summary.run_id}", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    for label, value in (
        ("conversions in range", summary.conversions),
        ("journeys", summary.journeys),
        ("sessions in journeys", summary.sessions),
        ("journeys truncated", summary.truncated),
        ("conversions without a journey", summary.without_journey),
        ("batches", summary.batches),
        ("attribution rows written", summary.rows_written),
        ("channel_reporting rows", summary.report_rows),
    ):
        table.add_row(label, f"{value:,}")
    if summary.api is None:  # the API's own rows say what it skipped
        table.add_row("journeys unchanged (stored attribution kept)", f"{summary.unchanged:,}")
    if summary.report_days is None:
        table.add_row("channel_reporting", "rebuilt")
    else:
        table.add_row(
            "channel_reporting refreshed",
            f"{summary.report_groups:,} (channel, day) groups on {summary.report_days:,} day(s)",
        )
    if csv is not None:
        table.add_row(f"CSV rows ({csv})", f"{summary.csv_rows:,}")
    if summary.api is not None:
        api = summary.api
        for label, value in (
            ("IHC requests sent", api.requests),
            ("IHC request retries", api.request_retries),
            ("journeys skipped (already stored)", api.journeys_skipped),
            ("journeys sent", api.journeys_sent),
            ("journeys retried", api.journeys_retried),
            ("journeys failed", api.journeys_failed),
        ):
            table.add_row(label, f"{value:,}")
    for skipped in summary.skipped:
        table.add_row(f"skipped {skipped.table}: {skipped.reason}", f"{skipped.count:,}")
    for step, seconds in summary.seconds.items():
        table.add_row(f"time: {step}", f"{seconds:.3f} s")
    table.add_row("time: total (command)", f"{total_seconds:.3f} s")
    return table


def _model_table(stats):
    """What a data-driven model learned: each channel's effect and credit."""
    from rich.table import Table

    effect = "removal effect" if stats.model == "markov" else "Shapley value"
    title = (
        f"{stats.model}: {stats.distinct_paths:,} distinct paths, {stats.conversions:,} "
        f"conversions, {stats.null_paths:,} non-converting paths "
        f"({stats.window.start} to {stats.window.end})"
    )
    if stats.conversion_probability is not None:
        title += f"; conversion probability {stats.conversion_probability:.4f}"
    table = Table(title=title)
    for column in ("channel", effect, "conversions", "revenue"):
        table.add_column(column, justify="left" if column == "channel" else "right")
    key = "removal_effect" if stats.model == "markov" else "shapley_value"
    for row in sorted(stats.channels, key=lambda r: -r["conversions"]):
        table.add_row(
            row["channel_name"],
            f"{row[key]:.4f}",
            f"{row['conversions']:,.1f}",
            f"{row['revenue']:,.2f}",
        )
    if stats.merged:
        table.caption = f"(other): {len(stats.merged)} least frequent channels merged"
    if stats.negative:
        note = f"no credit (negative Shapley value): {', '.join(stats.negative)}"
        table.caption = f"{table.caption}; {note}" if table.caption else note
    return table
