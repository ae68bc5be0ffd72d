"""Step 5: ``channel_reporting``, rebuilt whole or refreshed for the days a run touched.

One row per (channel_name, event_date) with a session. Costs and attribution are aggregated
separately and joined afterwards, so a session's cost is never multiplied by its number of
attribution rows (a session can sit in several journeys).

A full rebuild (:func:`rebuild_channel_reporting` without a window) stages the cost of every
group with the one full scan of ``session_sources`` (:mod:`growthflow.attribution.costs`, run
while journeys are attributed) and joins all attribution. An incremental refresh
(:func:`refresh_channel_reporting`) replaces the rows of a set of days only: the days whose
attribution changed (``gf_report_days``, written with the attribution, so a run that died
before its report is caught up by the next one) plus the run's cost window ([start - window,
end]). Its cost of a group is bit for bit the full scan's, and sums of attribution are exact
(:func:`growthflow.sql.exact_sum`), so a refreshed row equals a rebuilt one. What it does not
see: costs changed on days outside its window (back-filled spend), and sessions whose
channel or date changed after they were attributed; ``growthflow attribution report --full``
rebuilds everything.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cache

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from growthflow.attribution import schema
from growthflow.attribution.costs import Window, aggregate_costs, channels_of
from growthflow.attribution.quality import SkippedRows, check_costs, examples
from growthflow.attribution.rules import InputRules
from growthflow.database import read_only
from growthflow.sql import exact_sum, in_list


@dataclass
class ReportStats:
    rows: int
    skipped: list[SkippedRows] = field(default_factory=list)
    days: int | None = None  # days refreshed; None for a full rebuild


def _insert_ignore(conn: sa.Connection, table: sa.Table):
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing()


def mark_stale(conn: sa.Connection, conv_ids, new_days: Iterable[str] = ()) -> None:
    """Record the report days a change of attribution touches, in the caller's transaction
    (before the change): the event dates of the sessions of ``conv_ids``' stored attribution
    (a list, or a SELECT of conv ids), and ``new_days``, those of the new attribution."""
    a, s, rd = schema.attribution_customer_journey, schema.session_sources, schema.report_days
    old = (
        sa.select(s.c.event_date)
        .select_from(a.join(s, s.c.session_id == a.c.session_id))
        .where(a.c.conv_id.in_(conv_ids), s.c.event_date.is_not(None))
        .distinct()
    )
    conn.execute(_insert_ignore(conn, rd).from_select(["event_date"], old))
    days = sorted(set(new_days))
    if days:
        conn.execute(_insert_ignore(conn, rd), [{"event_date": d} for d in days])


def report_is_empty(engine: sa.Engine) -> bool:
    with read_only(engine) as conn:
        return conn.execute(sa.select(schema.channel_reporting.c.date).limit(1)).first() is None


@cache
def _rebuild_statement(rules: InputRules, window: bool) -> sa.TextClause:
    revenue = rules.number("conversions", "c", "revenue")
    if window:  # the attribution of the window's sessions only, found by session
        sessions = "session_sources s"
        if rules.dialect == "sqlite":
            sessions += " INDEXED BY gf_ix_session_sources_channel_day"
        attributed = f"""
            FROM {sessions}
            JOIN attribution_customer_journey a ON a.session_id = s.session_id
            JOIN conversions c ON c.conv_id = a.conv_id
            WHERE {Window.sessions("s", rules.dialect)}"""
    else:
        attributed = """
            FROM attribution_customer_journey a
            JOIN session_sources s ON s.session_id = a.session_id
            JOIN conversions c ON c.conv_id = a.conv_id"""
    # Constant SQL fragments only; the run id (and the window) are bound values.
    return sa.text(
        f"""
        INSERT INTO channel_reporting (channel_name, date, cost, ihc, ihc_revenue)
        SELECT g.channel_name, g.event_date, g.cost,
               COALESCE(a.ihc, 0), COALESCE(a.ihc_revenue, 0)
        FROM gf_cost_days g
        LEFT JOIN (
            SELECT s.channel_name, s.event_date, {exact_sum("a.ihc", rules.dialect)} AS ihc,
                   {exact_sum(f"a.ihc * {revenue}", rules.dialect)} AS ihc_revenue
            {attributed}
            GROUP BY s.channel_name, s.event_date
        ) a ON a.channel_name = g.channel_name AND a.event_date = g.event_date
        WHERE g.run_id = :run_id AND g.sessions > 0 AND {rules.reportable_day("g")}
        """  # noqa: S608
    )


def rebuild_channel_reporting(
    engine: sa.Engine, run_id: str, rules: InputRules, window: Window | None = None
) -> ReportStats:
    """Replace ``channel_reporting`` atomically from the staged costs and the attribution:
    all of it, or (with ``window``) the rows of the window's days, whose staleness marks in
    ``gf_report_days`` are cleared in the same transaction."""
    reportable = rules.reportable_day("g")
    totals = sa.text(
        "SELECT COALESCE(SUM(CASE WHEN NOT "  # noqa: S608
        f"{reportable} THEN sessions ELSE 0 END), 0), "
        "COALESCE(SUM(duplicates), 0) "
        "FROM gf_cost_days g WHERE run_id = :run_id"
    )
    cr, rd = schema.channel_reporting, schema.report_days
    params = {"run_id": run_id}
    with engine.begin() as conn:
        if window is None:
            conn.execute(sa.delete(rd))
            conn.execute(sa.delete(cr))
        else:
            params.update(window.params(rules.dialect))
            days = sa.text(in_list("event_date", "days", rules.dialect))
            conn.execute(sa.delete(rd).where(days), params)
            conn.execute(
                sa.delete(cr).where(sa.text(in_list("date", "days", rules.dialect))), params
            )
        conn.execute(_rebuild_statement(rules, window is not None), params)
        count = sa.select(sa.func.count()).select_from(cr)
        if window is not None:
            count = count.where(sa.text(in_list("date", "days", rules.dialect)))
        rows = conn.execute(count, params).scalar_one()
        unreportable, duplicates = conn.execute(totals, {"run_id": run_id}).one()
        skipped = []
        for table, alias, reason, count, bad_sql in (
            (
                "session_sources",
                "s",
                "missing channel_name or unparsable event_date",
                unreportable,
                f"NOT {rules.reportable_day('s')}",
            ),
            (
                "session_sources",
                "s",
                "duplicate session_id",
                duplicates,
                f"NOT {dict(rules.sessions('s').rules).get('duplicate session_id')}",
            ),
        ):
            if count:
                ids = examples(conn, table, alias, "session_id", bad_sql)
                skipped.append(SkippedRows(table, f"{reason} (report)", int(count), ids))
    return ReportStats(
        rows=rows, skipped=skipped, days=None if window is None else len(window.days)
    )


def window_days(start: date, end: date, before: int = 0) -> list[str]:
    """The days [start - before, end], as ISO text."""
    return [(start + timedelta(days=i)).isoformat() for i in range(-before, (end - start).days + 1)]


def report_window(engine: sa.Engine, days: Iterable[str] = ()) -> Window:
    """``days`` and every day marked stale in ``gf_report_days``, on every channel."""
    with read_only(engine) as conn:
        stale = set(conn.execute(sa.select(schema.report_days.c.event_date)).scalars())
        channels = channels_of(conn)
    return Window(channels=channels, days=tuple(sorted(stale.union(days))))


def refresh_channel_reporting(
    engine: sa.Engine, run_id: str, rules: InputRules, days: Iterable[str] = ()
) -> ReportStats:
    """The incremental report: the rows of ``days`` and of the stale days, from the costs of
    their groups (checked, then staged under ``run_id``), replaced in one transaction."""
    window = report_window(engine, days)
    skipped = check_costs(engine, rules, window)
    stats = aggregate_costs(engine, run_id, rules, window=window)
    report = rebuild_channel_reporting(engine, run_id, rules, window)
    report.skipped = skipped + stats.skipped + report.skipped
    return report


def full_channel_reporting(engine: sa.Engine, run_id: str, rules: InputRules) -> ReportStats:
    """The whole report from a full scan (costs checked and staged under ``run_id``)."""
    skipped = check_costs(engine, rules)
    stats = aggregate_costs(engine, run_id, rules)
    report = rebuild_channel_reporting(engine, run_id, rules)
    report.skipped = skipped + stats.skipped + report.skipped
    return report
