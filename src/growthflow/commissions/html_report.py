"""The commissions HTML report: ``growthflow commissions report --html FILE [--month M]``.

For one month (default: the latest with commissions), per scope (events, scrapers, combined;
switched in the page): commission per marketing source per day, the deal applied and the
month's figures per source, commission per operator; and the loads of that month's files
(snapshot files too): quarantined rows per reason and warnings per kind, per file.

Money is summed in integer cents in the database and shown with two decimals.
"""

from __future__ import annotations

import calendar
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa

from growthflow import reports
from growthflow.commissions import schema
from growthflow.database import missing_tables, read_only, translate_errors
from growthflow.errors import ConfigError

SCOPES = ("events", "scrapers", "combined")
TOP_SOURCES = 8  # sources drawn one by one in the daily chart; the rest as "other sources"
OTHER_SOURCES = "other sources"
# rows of the per-source table (the biggest commissions); the rest in one row, so a month of
# 10,000 sources stays a page of a few MB (7.9 MB without this on the benchmark's wide data)
TABLE_SOURCES = 200


@dataclass
class CommissionsReport:
    month: str
    first: date
    last: date
    scopes: dict[str, dict]
    quarantine: list[dict]
    warnings: list[dict]
    written_at: str = field(default_factory=reports.now)


def _cents(column: str) -> str:
    return f"SUM(CAST(ROUND({column} * 100) AS BIGINT))"


def _money(cents) -> Decimal:
    return Decimal(int(cents or 0)) / 100


def _month(conn: sa.Connection, month: str | None) -> tuple[str, date, date]:
    if month is None:
        latest = conn.execute(sa.select(sa.func.max(schema.source_daily.c.date))).scalar()
        if latest is None:
            raise ConfigError("no commissions yet: run `growthflow commissions run` first")
        latest = latest if isinstance(latest, date) else date.fromisoformat(str(latest))
        month = f"{latest:%Y-%m}"
    try:
        year, number = (int(part) for part in month.split("-"))
        first = date(year, number, 1)
    except ValueError:
        raise ConfigError(f"--month must be YYYY-MM, not {month!r}") from None
    return month, first, date(year, number, calendar.monthrange(year, number)[1])


def _scope(conn: sa.Connection, scope: str, month: str, first: date, last: date) -> dict:
    days = {"scope": scope, "first": first, "last": last}
    sources = conn.execute(
        sa.text(
            f"SELECT marketing_source, MAX(deal), {_cents('raw_earnings')}, SUM(clicks), "  # noqa: S608
            f"{_cents('commission')}, COUNT(*) FROM commission_source_daily "
            "WHERE scope = :scope AND date BETWEEN :first AND :last GROUP BY marketing_source"
        ),
        days,
    ).all()
    operators = conn.execute(
        sa.text(
            f"SELECT operator, {_cents('raw_earnings')}, {_cents('commission')} "  # noqa: S608
            "FROM commission_operator_monthly WHERE scope = :scope AND month = :month "
            "GROUP BY operator"
        ),
        {"scope": scope, "month": month},
    ).all()
    source_rows = sorted(
        (
            {
                "source": s,
                "deal": deal,
                "raw_earnings": _money(raw),
                "clicks": int(clicks or 0),
                "commission": _money(commission),
                "days": n,
            }
            for s, deal, raw, clicks, commission, n in sources
        ),
        key=lambda r: (-r["commission"], r["source"]),
    )
    top = [r["source"] for r in source_rows[:TOP_SOURCES]]
    sd = schema.source_daily
    bucket = sa.case(
        (sd.c.marketing_source.in_(top), sd.c.marketing_source), else_=sa.literal(OTHER_SOURCES)
    )
    per_day = conn.execute(  # the top sources one by one, the others as one: a few rows a day
        sa.select(sd.c.date, bucket, sa.text(_cents("commission")))
        .where(sd.c.scope == scope, sd.c.date.between(first, last))
        .group_by(sd.c.date, bucket)
    ).all()
    daily: dict[str, dict[str, Decimal]] = defaultdict(dict)
    for day, source, cents in per_day:
        daily[str(day)[:10]][source] = _money(cents)
    return {
        "name": scope,
        "commission": sum((r["commission"] for r in source_rows), Decimal(0)),
        "raw_earnings": sum((r["raw_earnings"] for r in source_rows), Decimal(0)),
        "clicks": sum(r["clicks"] for r in source_rows),
        "source_count": len(source_rows),
        "sources": source_rows[:TABLE_SOURCES],
        "rest": _rest(source_rows[TABLE_SOURCES:]),
        "operators": sorted(
            (
                {"operator": o, "raw_earnings": _money(raw), "commission": _money(c)}
                for o, raw, c in operators
            ),
            key=lambda r: (-r["commission"], r["operator"]),
        ),
        "daily": {day: dict(values) for day, values in sorted(daily.items())},
        "stack": top + ([OTHER_SOURCES] if len(source_rows) > TOP_SOURCES else []),
    }


def _rest(rows: list[dict]) -> dict | None:
    """The sources beyond the table's rows, added up."""
    if not rows:
        return None
    return {
        "sources": len(rows),
        "raw_earnings": sum((r["raw_earnings"] for r in rows), Decimal(0)),
        "clicks": sum(r["clicks"] for r in rows),
        "commission": sum((r["commission"] for r in rows), Decimal(0)),
    }


def _loads(conn: sa.Connection, first: date, last: date) -> tuple[list[dict], list[dict]]:
    """Quarantine per reason and warnings per kind, per file of the month (and snapshots)."""
    f, q, w = schema.files, schema.quarantine, schema.warnings
    in_month = sa.or_(f.c.day.is_(None), f.c.day.between(first, last))
    quarantine = conn.execute(
        sa.select(f.c.name, q.c.reason, sa.func.count())
        .select_from(q.join(f, f.c.file_id == q.c.file_id))
        .where(in_month)
        .group_by(f.c.name, q.c.reason)
        .order_by(f.c.name, q.c.reason)
    ).all()
    warnings = conn.execute(
        sa.select(
            sa.func.coalesce(
                f.c.name,
                sa.case((w.c.origin == "landing", "(landing zone)"), else_="(recomputed days)"),
            ),
            w.c.kind,
            sa.func.sum(w.c.rows),
            sa.func.count(),
        )
        .select_from(w.outerjoin(f, f.c.file_id == w.c.file_id))
        .where(sa.or_(w.c.date.is_(None), w.c.date.between(first, last)))
        .group_by(f.c.name, w.c.origin, w.c.kind)
        .order_by(f.c.name, w.c.kind)
    ).all()
    return (
        [{"file": n, "reason": r, "rows": k} for n, r, k in quarantine],
        [{"file": n, "kind": k, "rows": int(r or 0), "entries": e} for n, k, r, e in warnings],
    )


def gather(engine: sa.Engine, month: str | None = None) -> CommissionsReport:
    if missing_tables(engine, [schema.source_daily.name]):
        raise ConfigError("no commissions yet: run `growthflow commissions run` first")
    with read_only(engine) as conn:
        month, first, last = _month(conn, month)
        scopes = {s: _scope(conn, s, month, first, last) for s in SCOPES}
        quarantine, warnings = _loads(conn, first, last)
    return CommissionsReport(month, first, last, scopes, quarantine, warnings)


def figures(report: CommissionsReport) -> dict:
    from bokeh.models import FactorRange, NumeralTickFormatter
    from bokeh.plotting import figure

    palette = reports.PALETTE
    common = {"sizing_mode": "stretch_width", "toolbar_location": None}
    out = {}
    for name, scope in report.scopes.items():
        days = list(scope["daily"]) or ["—"]
        stack = scope["stack"] or ["none"]
        data = {"day": days}
        for source in stack:
            data[source] = [float(scope["daily"].get(d, {}).get(source, 0)) for d in days]
        fig = figure(
            x_range=FactorRange(*days),
            height=320,
            title=f"Commission per day, by marketing source ({name})",
            **common,
        )
        fig.vbar_stack(
            stack,
            x="day",
            width=0.8,
            source=data,
            color=[
                "#b0b6c0" if source == OTHER_SOURCES else palette[k % len(palette)]
                for k, source in enumerate(stack)
            ],
            legend_label=stack,
        )
        fig.xaxis.major_label_orientation = 0.9
        fig.yaxis.formatter = NumeralTickFormatter(format="0,0")
        fig.legend.label_text_font_size = "8pt"
        fig.add_layout(fig.legend[0], "right")  # beside the bars, not over them
        out[f"daily_{name}"] = fig

        operators = [o["operator"] for o in reversed(scope["operators"])] or ["—"]
        values = [float(o["commission"]) for o in reversed(scope["operators"])] or [0.0]
        fig = figure(
            y_range=FactorRange(*operators),
            height=80 + 22 * len(operators),
            title=f"Commission per operator, {report.month} ({name})",
            **common,
        )
        fig.hbar(y=operators, right=values, height=0.7, color=palette[0])
        fig.xaxis.formatter = NumeralTickFormatter(format="0,0")
        out[f"operators_{name}"] = fig

    reasons: dict[str, int] = defaultdict(int)
    for row in report.quarantine:
        reasons[row["reason"]] += row["rows"]
    labels = sorted(reasons, key=lambda r: reasons[r]) or ["none"]
    fig = figure(
        y_range=FactorRange(*labels),
        height=80 + 26 * len(labels),
        title="Quarantined rows per reason",
        **common,
    )
    fig.hbar(y=labels, right=[reasons.get(r, 0) for r in labels], height=0.7, color=palette[3])
    out["quarantine"] = fig
    return out


def write_commissions_report(
    engine: sa.Engine, path: Path, *, month: str | None = None
) -> CommissionsReport:
    with translate_errors(engine):
        report = gather(engine, month)
    html = reports.render(
        "commissions.html.j2",
        figures(report),
        title=f"Commissions {report.month}",
        scope_names=SCOPES,
        **report.__dict__,
    )
    reports.write(path, html)
    return report
