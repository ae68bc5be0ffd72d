"""The attribution HTML report: ``growthflow attribution report --html FILE``.

Headline figures, channels (cost, attributed conversions and revenue, CPO, ROAS), the daily
trend, an optional model comparison, the journeys and the data quality of the last run, read
from the database and written as one self-contained page (:mod:`growthflow.reports`).

The comparison and the journey figures need the range's journeys: they are staged under a
run id of their own (``report-html-…``) without pruning anything, every model attributes them
in memory, and the staging rows are deleted at the end. The stored attribution is read, never
written.
"""

from __future__ import annotations

import json
import math
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from functools import partial
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from growthflow import reports
from growthflow.attribution import schema
from growthflow.attribution.rules import InputRules
from growthflow.database import read_only, translate_errors
from growthflow.errors import ConfigError
from growthflow.sql import exact_sum

TOP_PATHS = 15
# time from first touch to conversion, in days: bucket edges
WAIT_EDGES = (0, 1, 2, 3, 7, 14, 30, 60)


@dataclass
class AttributionReport:
    start: date
    end: date
    head: dict
    channels: list[dict]
    daily: list[dict]
    models: list[dict]
    computed_at: str | None
    journeys: dict
    quality: list[dict]
    comparison: dict | None = None
    written_at: str = field(default_factory=reports.now)


def _range(conn: sa.Connection, start: date | None, end: date | None) -> tuple[date, date]:
    low, high = conn.execute(sa.text("SELECT MIN(date), MAX(date) FROM channel_reporting")).one()
    if low is None and (start is None or end is None):
        raise ConfigError(
            "channel_reporting is empty: run `growthflow attribution run` first, "
            "or give --start and --end"
        )
    start = start or date.fromisoformat(low)
    end = end or date.fromisoformat(high)
    if end < start:
        raise ConfigError(f"end {end} is before start {start}")
    return start, end


def _sums(conn: sa.Connection, dialect: str, key: str, columns: tuple, start, end) -> list:
    """Exact sums of ``columns`` of channel_reporting per ``key`` over the range."""
    sums = ", ".join(exact_sum(c, dialect) for c in columns)
    return conn.execute(
        sa.text(
            f"SELECT {key}, {sums} FROM channel_reporting "  # noqa: S608 (constant SQL)
            f"WHERE date BETWEEN :start AND :end GROUP BY {key} ORDER BY {key}"
        ),
        {"start": start.isoformat(), "end": end.isoformat()},
    ).all()


def _channels(conn: sa.Connection, dialect: str, start: date, end: date) -> list[dict]:
    out = []
    for channel, *values in _sums(
        conn, dialect, "channel_name", ("cost", "ihc", "ihc_revenue"), start, end
    ):
        cost, conversions, revenue = (v or 0.0 for v in values)
        out.append(
            {
                "channel": channel,
                "cost": cost,
                "conversions": conversions,
                "revenue": revenue,
                "cpo": reports.divide(cost, conversions),
                "roas": reports.divide(revenue, cost),
            }
        )
    return sorted(out, key=lambda c: (-c["revenue"], c["channel"]))


def _daily(conn: sa.Connection, dialect: str, start: date, end: date) -> list[dict]:
    rows = _sums(conn, dialect, "date", ("cost", "ihc_revenue"), start, end)
    return [{"date": d, "cost": c or 0.0, "revenue": r or 0.0} for d, c, r in rows]


def _conversions(conn: sa.Connection, rules: InputRules, start: date, end: date) -> tuple:
    c = rules.conversions("c")
    revenue = rules.number("conversions", "c", "revenue")
    total = exact_sum(revenue, rules.dialect)
    return conn.execute(
        sa.text(
            f"SELECT COUNT(*), {total} FROM conversions c "  # noqa: S608 (constant SQL)
            f"WHERE c.conv_date BETWEEN :start AND :end AND {c.valid}"
        ),
        {"start": start.isoformat(), "end": end.isoformat()},
    ).one()


def _models(conn: sa.Connection, start: date, end: date) -> list[dict]:
    a = schema.attributed_conversions
    rows = conn.execute(
        sa.select(a.c.model, sa.func.count())
        .select_from(a.join(schema.conversions, schema.conversions.c.conv_id == a.c.conv_id))
        .where(schema.conversions.c.conv_date.between(start.isoformat(), end.isoformat()))
        .group_by(a.c.model)
        .order_by(sa.func.count().desc(), a.c.model)
    ).all()
    return [{"model": m, "conversions": n} for m, n in rows]


def _last_run(conn: sa.Connection) -> tuple[str | None, dict, dict]:
    """When the last successful run finished, its summary and its settings."""
    runs = schema.runs
    row = conn.execute(
        sa.select(runs.c.finished_at, runs.c.summary, runs.c.config)
        .where(runs.c.status == "succeeded")
        .order_by(runs.c.finished_at.desc())
        .limit(1)
    ).first()
    if row is None:
        return None, {}, {}
    finished = row.finished_at[:16].replace("T", " ") + " UTC"
    return finished, json.loads(row.summary or "{}"), json.loads(row.config or "{}")


def _quality(summary: dict, journeys: dict) -> list[dict]:
    rows = [
        {"what": f"skipped {s['table']}: {s['reason']}", "count": s["count"]}
        for s in summary.get("skipped", [])
    ]
    rows.append({"what": "journeys truncated (range)", "count": journeys["truncated"]})
    rows.append(
        {"what": "conversions without a journey (range)", "count": journeys["without_journey"]}
    )
    return rows


def _stage(engine: sa.Engine, rules: InputRules, start: date, end: date, settings: dict):
    """Stage the range's journeys under a run id of their own, planned in batches of whole
    journeys of about ``ROWS_PER_TRANSACTION`` sessions (memory follows a batch, not the
    range)."""
    from growthflow.attribution.attribute import ROWS_PER_TRANSACTION
    from growthflow.attribution.batches import plan_batches
    from growthflow.attribution.journeys import build_journeys

    run_id = f"report-html-{uuid.uuid4().hex[:12]}"
    stats = build_journeys(
        engine,
        run_id,
        start,
        end,
        rules=rules,
        max_journey_sessions=settings.get("max_journey_sessions", 100),
        lookback_days=settings.get("lookback_days"),
        prune=False,
    )
    numbers = plan_batches(
        engine, run_id, max_journeys=2**31 - 1, max_sessions=ROWS_PER_TRANSACTION
    )
    return run_id, stats, numbers


def _credits(engine, rules, run_id, models: list[str], settings: dict, start, end) -> dict:
    """The channel credits of the data-driven models among ``models``, from one read of the
    staged journeys' paths."""
    from growthflow.attribution.datadriven import DATA_DRIVEN, with_merged
    from growthflow.attribution.markov import markov_model
    from growthflow.attribution.paths import read_paths, training_window
    from growthflow.attribution.shapley import shapley_model

    wanted = [m for m in models if m in DATA_DRIVEN]
    if not wanted:
        return {}
    window = training_window(engine, run_id, start, end, settings.get("lookback_days"))
    paths = read_paths(engine, run_id, rules, window)
    credits = {}
    for model in wanted:
        fitted = markov_model(paths) if model == "markov" else shapley_model(paths)
        conversions, _ = fitted.credit(paths.total_conversions, 0)
        credits[model] = with_merged(
            dict(zip(fitted.channels, conversions.tolist(), strict=True)),
            getattr(fitted, "merged", []),
        )
    return credits


class _Journeys:
    """The journey figures and each model's attributed conversions per channel, added up one
    batch of staged journeys at a time."""

    def __init__(self, models: list[str], credits: dict):
        from growthflow.attribution.datadriven import credit_model
        from growthflow.attribution.providers import LocalProvider

        self.models = models
        # each model's attribution of a batch: data-driven ones by their credits, the others
        # by their local provider (its parameters read once, not per batch)
        self.attribute = {
            m: partial(credit_model, credit=credits[m])
            if m in credits
            else LocalProvider(m).attribute
            for m in models
        }
        self.count = self.sessions = 0
        self.lengths: Counter = Counter()
        self.waits = np.zeros(len(WAIT_EDGES), dtype=np.int64)
        self.paths: Counter = Counter()
        self.attributed: dict[str, np.ndarray] = {}  # channel -> conversions per model

    def add(self, batch) -> None:
        self.count += batch.n_journeys
        self.sessions += batch.n_sessions
        self.lengths.update(batch.lengths.tolist())
        first = batch.ts[batch.offsets[:-1]]
        days = (batch.conv_ts - first).astype("timedelta64[s]").astype(np.float64) / 86_400
        bucket = np.searchsorted(np.array(WAIT_EDGES, dtype=float), days, side="right") - 1
        self.waits += np.bincount(bucket, minlength=len(WAIT_EDGES))
        self.paths.update(
            " > ".join(batch.channel[a:b].tolist())
            for a, b in zip(batch.offsets[:-1], batch.offsets[1:], strict=True)
        )
        if not self.models:
            return
        names, codes = np.unique(batch.channel, return_inverse=True)
        per_model = np.array(
            [
                np.bincount(codes, weights=self.attribute[m](batch).ihc, minlength=len(names))
                for m in self.models
            ]
        )
        for k, name in enumerate(names.tolist()):
            self.attributed[name] = self.attributed.get(name, 0) + per_model[:, k]

    def figures(self, stats) -> dict:
        labels = [f"{a}–{b} d" for a, b in zip(WAIT_EDGES, WAIT_EDGES[1:], strict=False)]
        labels.append(f"{WAIT_EDGES[-1]}+ d")
        ranked = sorted(self.paths.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_PATHS]
        return {
            "count": self.count,
            "sessions": self.sessions,
            "truncated": stats.truncated,
            "without_journey": stats.without_journey,
            "lengths": sorted(self.lengths.items()),
            "waits": list(zip(labels, self.waits.tolist(), strict=True)) if self.count else [],
            "paths": [{"path": p, "journeys": k, "share": k / self.count} for p, k in ranked],
        }

    def comparison(self) -> dict | None:
        if not self.models or not self.count:
            return None
        order = sorted(self.attributed, key=lambda n: (-self.attributed[n][0], n))
        rows = [
            {"channel": name, "values": [float(v) for v in self.attributed[name]]} for name in order
        ]
        return {"models": self.models, "rows": rows, "journeys": self.count}


def gather(
    engine: sa.Engine,
    start: date | None = None,
    end: date | None = None,
    compare: list[str] | None = None,
) -> AttributionReport:
    from growthflow.attribution.datadriven import DATA_DRIVEN
    from growthflow.attribution.journeys import clear_staging
    from growthflow.attribution.models import get_model

    for model in compare or []:
        if model not in DATA_DRIVEN:
            get_model(model)  # an unknown model fails before any work
    rules = InputRules.for_engine(engine)
    dialect = engine.dialect.name
    with read_only(engine) as conn:
        start, end = _range(conn, start, end)
        channels = _channels(conn, dialect, start, end)
        daily = _daily(conn, dialect, start, end)
        conversions, revenue = _conversions(conn, rules, start, end)
        models = _models(conn, start, end)
        # the last run's journey settings, so the staged journeys look like the stored ones
        computed_at, summary, settings = _last_run(conn)
    from growthflow.attribution.attribute import load_batch

    run_id, stats, numbers = _stage(engine, rules, start, end, settings)
    try:
        compared = compare or []
        credits = _credits(engine, rules, run_id, compared, settings, start, end)
        tally = _Journeys(compared, credits)
        for number in numbers:
            with engine.connect() as conn:
                tally.add(load_batch(conn, run_id, number))
        journeys, comparison = tally.figures(stats), tally.comparison()
    finally:
        with engine.begin() as conn:
            clear_staging(conn, run_id)
    cost = math.fsum(c["cost"] for c in channels)
    attributed = math.fsum(c["revenue"] for c in channels)
    attributed_conversions = math.fsum(c["conversions"] for c in channels)
    head = {
        "conversions": conversions,
        "revenue": revenue or 0.0,
        "cost": cost,
        "attributed_revenue": attributed,
        "attributed_conversions": attributed_conversions,
        "roas": reports.divide(attributed, cost),
        "cpo": reports.divide(cost, attributed_conversions),
    }
    return AttributionReport(
        start=start,
        end=end,
        head=head,
        channels=channels,
        daily=daily,
        models=models,
        computed_at=computed_at,
        journeys=journeys,
        quality=_quality(summary, journeys),
        comparison=comparison,
    )


def figures(report: AttributionReport) -> dict:
    """The report's Bokeh figures, by the name the template places them under."""
    from bokeh.models import ColumnDataSource, FactorRange, NumeralTickFormatter
    from bokeh.plotting import figure
    from bokeh.transform import dodge

    palette = reports.PALETTE
    out = {}
    if not report.channels:  # nothing in the range: no empty charts (the page says so)
        return out
    channels = [c["channel"] for c in reversed(report.channels)]  # biggest on top
    height = 80 + 26 * max(len(channels), 1)
    common = {"sizing_mode": "stretch_width", "toolbar_location": None}

    source = ColumnDataSource(
        {
            "channel": channels,
            "cost": [c["cost"] for c in reversed(report.channels)],
            "revenue": [c["revenue"] for c in reversed(report.channels)],
            "roas": [c["roas"] or 0.0 for c in reversed(report.channels)],
        }
    )
    fig = figure(
        y_range=FactorRange(*channels),
        height=height,
        title="Cost and attributed revenue per channel",
        **common,
    )
    fig.hbar(
        y=dodge("channel", 0.18, range=fig.y_range),
        right="cost",
        height=0.34,
        source=source,
        color=palette[3],
        legend_label="cost",
    )
    fig.hbar(
        y=dodge("channel", -0.18, range=fig.y_range),
        right="revenue",
        height=0.34,
        source=source,
        color=palette[0],
        legend_label="attributed revenue",
    )
    fig.xaxis.formatter = NumeralTickFormatter(format="0,0")
    fig.legend.location = "bottom_right"
    out["cost_revenue"] = fig

    fig = figure(y_range=FactorRange(*channels), height=height, title="ROAS per channel", **common)
    fig.hbar(y="channel", right="roas", height=0.6, source=source, color=palette[2])
    fig.xaxis.formatter = NumeralTickFormatter(format="0.00")
    out["roas"] = fig

    days = [np.datetime64(d["date"]) for d in report.daily]
    fig = figure(
        x_axis_type="datetime",
        height=300,
        title="Cost and attributed revenue per day (sessions' day)",
        **common,
    )
    fig.line(days, [d["cost"] for d in report.daily], color=palette[3], legend_label="cost")
    fig.line(
        days,
        [d["revenue"] for d in report.daily],
        color=palette[0],
        legend_label="attributed revenue",
        line_width=2,
    )
    fig.yaxis.formatter = NumeralTickFormatter(format="0,0")
    fig.legend.location = "top_left"
    out["daily"] = fig

    if report.comparison:
        models = report.comparison["models"]
        rows = list(reversed(report.comparison["rows"]))
        names = [r["channel"] for r in rows]
        factors = [(name, model) for name in names for model in models]
        values = [r["values"][k] for r in rows for k in range(len(models))]
        colors = [palette[k % len(palette)] for _ in rows for k in range(len(models))]
        fig = figure(
            y_range=FactorRange(*factors),
            height=80 + 16 * len(factors),
            title="Attributed conversions per channel and model",
            **common,
        )
        fig.hbar(y=factors, right=values, height=0.8, color=colors)
        fig.xaxis.formatter = NumeralTickFormatter(format="0,0")
        out["comparison"] = fig

    lengths = report.journeys["lengths"]
    if not lengths:
        return out
    fig = figure(height=260, title="Journeys by number of sessions", **common)
    fig.vbar(x=[k for k, _ in lengths], top=[n for _, n in lengths], width=0.8, color=palette[0])
    out["lengths"] = fig

    waits = report.journeys["waits"]
    labels = [label for label, _ in waits] or ["—"]
    fig = figure(
        x_range=FactorRange(*labels),
        height=260,
        title="Days from first touch to conversion",
        **common,
    )
    fig.vbar(x=labels, top=[n for _, n in waits] or [0], width=0.8, color=palette[1])
    out["time_to_conversion"] = fig
    return out


def write_attribution_report(
    engine: sa.Engine,
    path: Path,
    *,
    start: date | None = None,
    end: date | None = None,
    compare: list[str] | None = None,
) -> AttributionReport:
    with translate_errors(engine):
        report = gather(engine, start, end, compare)
    html = reports.render(
        "attribution.html.j2",
        figures(report),
        title=f"Attribution {report.start} to {report.end}",
        **report.__dict__,
    )
    reports.write(path, html)
    return report
