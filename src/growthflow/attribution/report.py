"""Step 5: ``channel_reporting``, rebuilt whole or refreshed for the days a run touched.

One row per (channel_name, event_date) with a session. Costs and attribution are aggregated
separately and joined afterwards, so a session's cost is never multiplied by its number of
attribution rows (a session can sit in several journeys).

A full rebuild (:func:`rebuild_channel_reporting` without a window) stages the cost of every
group with the one full scan of ``session_sources`` (:mod:`growthflow.attribution.costs`, run
while journeys are attributed) and joins all attribution. An incremental refresh
(:func:`refresh_channel_reporting`) replaces the rows of a set of (channel, day) groups only:
those whose attribution changed (``gf_report_keys``, written with the attribution, so a run
that died before its report is caught up by the next one) plus every channel on the days of
the run's cost window ([start - window, end]). Its cost of a group is bit for bit the full
scan's, and sums of attribution are exact (:func:`growthflow.sql.exact_sum`), so a refreshed
row equals a rebuilt one. What it does not see: costs changed on days outside its window
(back-filled spend), and sessions added, deleted or moved outside it; ``growthflow
attribution report --full`` rebuilds everything.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cache

import sqlalchemy as sa

from growthflow.attribution import schema
from growthflow.attribution.costs import Window, aggregate_costs, channels_of
from growthflow.attribution.quality import SkippedRows, check_costs, examples
from growthflow.attribution.rules import InputRules
from growthflow.database import insert_ignore, read_only
from growthflow.sql import exact_sum


@dataclass
class ReportStats:
    rows: int
    skipped: list[SkippedRows] = field(default_factory=list)
    days: int | None = None  # days with a group refreshed; None for a full rebuild
    groups: int | None = None  # (channel, day) groups refreshed


def mark_stale(conn: sa.Connection, conv_ids, new_keys: Iterable[tuple[str, str]] = ()) -> None:
    """Record the report groups a change of attribution touches, in the caller's transaction
    (before the change): the (channel, event_date) groups of ``conv_ids``' stored attribution
    (a list, or a SELECT of conv ids), and ``new_keys``, those of the new one."""
    k, rk = schema.attribution_keys, schema.report_keys
    old = sa.select(k.c.channel_name, k.c.event_date).where(k.c.conv_id.in_(conv_ids)).distinct()
    conn.execute(insert_ignore(conn, rk).from_select(["channel_name", "event_date"], old))
    keys = sorted(set(new_keys))
    if keys:
        conn.execute(
            insert_ignore(conn, rk), [{"channel_name": c, "event_date": d} for c, d in keys]
        )


def report_is_empty(engine: sa.Engine) -> bool:
    with read_only(engine) as conn:
        return conn.execute(sa.select(schema.channel_reporting.c.date).limit(1)).first() is None


@cache
def _rebuild_statement(rules: InputRules, window: bool) -> sa.TextClause:
    revenue = rules.number("conversions", "c", "revenue")
    group = "a" if window else "s"  # the table holding the session's channel and day
    if window:  # the attribution of the window's groups, by index (gf_attribution_keys)
        attributed = """
            FROM gf_report_window w
            JOIN gf_attribution_keys a
              ON a.channel_name = w.channel_name AND a.event_date = w.event_date
            JOIN conversions c ON c.conv_id = a.conv_id
            WHERE w.run_id = :window"""
    else:
        attributed = """
            FROM attribution_customer_journey a
            JOIN session_sources s ON s.session_id = a.session_id
            JOIN conversions c ON c.conv_id = a.conv_id"""
    # Constant SQL fragments only; the run id (and the window) are bound values. The
    # attribution is aggregated once (MATERIALIZED): without statistics of the staged costs
    # PostgreSQL planned the aggregate once per staged row (107 s instead of ~1 s).
    return sa.text(
        f"""
        WITH attributed AS MATERIALIZED (
            SELECT {group}.channel_name, {group}.event_date,
                   {exact_sum("a.ihc", rules.dialect)} AS ihc,
                   {exact_sum(f"a.ihc * {revenue}", rules.dialect)} AS ihc_revenue
            {attributed}
            GROUP BY {group}.channel_name, {group}.event_date
        )
        INSERT INTO channel_reporting (channel_name, date, cost, ihc, ihc_revenue)
        SELECT g.channel_name, g.event_date, g.cost,
               COALESCE(x.ihc, 0), COALESCE(x.ihc_revenue, 0)
        FROM gf_cost_days g
        LEFT JOIN attributed x
          ON x.channel_name = g.channel_name AND x.event_date = g.event_date
        WHERE g.run_id = :run_id AND g.sessions > 0 AND {rules.reportable_day("g")}
        """  # noqa: S608
    )


def rebuild_channel_reporting(
    engine: sa.Engine, run_id: str, rules: InputRules, window: Window | None = None
) -> ReportStats:
    """Replace ``channel_reporting`` atomically from the staged costs and the attribution:
    all of it, or (with ``window``) the rows of the window's groups, whose staleness marks in
    ``gf_report_keys`` are cleared in the same transaction."""
    reportable = rules.reportable_day("g")
    totals = sa.text(
        "SELECT COALESCE(SUM(CASE WHEN NOT "  # noqa: S608
        f"{reportable} THEN sessions ELSE 0 END), 0), "
        "COALESCE(SUM(duplicates), 0) "
        "FROM gf_cost_days g WHERE run_id = :run_id"
    )
    cr, rk, w = schema.channel_reporting, schema.report_keys, schema.report_window
    params = {"run_id": run_id}
    in_window = None
    with engine.begin() as conn:
        if window is None:
            conn.execute(sa.delete(rk))
            conn.execute(sa.delete(cr))
        else:
            params.update(window.params())

            def in_window(table: sa.Table, date_column: str, costs: int | None = None):
                where = [
                    w.c.run_id == window.run_id,
                    w.c.channel_name == table.c.channel_name,
                    w.c.event_date == table.c[date_column],
                ]
                if costs is not None:
                    where.append(w.c.costs == costs)
                return sa.exists().where(*where)

            # groups whose attribution only changed keep their cost: staged from their row
            kept = sa.select(
                sa.literal(run_id),
                cr.c.channel_name,
                cr.c.date,
                cr.c.cost,
                sa.literal(1),
                sa.literal(0),
            ).where(in_window(cr, "date", costs=0))
            cd = schema.cost_days
            conn.execute(
                sa.insert(cd).from_select(
                    ["run_id", "channel_name", "event_date", "cost", "sessions", "duplicates"],
                    kept,
                )
            )
            conn.execute(sa.delete(rk).where(in_window(rk, "event_date")))
            conn.execute(sa.delete(cr).where(in_window(cr, "date")))
        conn.execute(_rebuild_statement(rules, window is not None), params)
        count = sa.select(sa.func.count()).select_from(cr)
        if in_window is not None:
            count = count.where(in_window(cr, "date"))
        rows = conn.execute(count).scalar_one()
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
    if window is None:
        return ReportStats(rows=rows, skipped=skipped)
    return ReportStats(rows=rows, skipped=skipped, days=window.days, groups=window.groups)


def window_days(start: date, end: date, before: int = 0) -> list[str]:
    """The days [start - before, end], as ISO text."""
    return [(start + timedelta(days=i)).isoformat() for i in range(-before, (end - start).days + 1)]


def stage_window(engine: sa.Engine, run_id: str, days: Iterable[str] = ()) -> Window:
    """Stage the groups an incremental report refreshes under ``run_id``: every channel on
    each of ``days`` (their costs computed again), and every group marked stale in
    ``gf_report_keys`` (only its attribution changed: its stored cost stands, unless it has
    no row yet)."""
    w, rk, cr = schema.report_window, schema.report_keys, schema.channel_reporting
    days = sorted(set(days))
    with engine.begin() as conn:
        conn.execute(sa.delete(w).where(w.c.run_id == run_id))
        rows = [
            {"run_id": run_id, "channel_name": c, "event_date": d, "costs": 1}
            for c in channels_of(conn)
            for d in days
        ]
        if rows:
            conn.execute(sa.insert(w), rows)
        # (SQLite parses INSERT ... SELECT ... ON CONFLICT only with a WHERE in the SELECT)
        reported = sa.exists().where(
            cr.c.channel_name == rk.c.channel_name, cr.c.date == rk.c.event_date
        )
        stale = sa.select(
            sa.literal(run_id),
            rk.c.channel_name,
            rk.c.event_date,
            sa.case((reported, 0), else_=1),
        ).where(rk.c.channel_name.is_not(None))
        conn.execute(
            insert_ignore(conn, w).from_select(
                ["run_id", "channel_name", "event_date", "costs"], stale
            )
        )
        groups, n_days, cost_groups = conn.execute(
            sa.select(
                sa.func.count(),
                sa.func.count(sa.distinct(w.c.event_date)),
                sa.func.coalesce(sa.func.sum(w.c.costs), 0),
            ).where(w.c.run_id == run_id)
        ).one()
    return Window(run_id, int(groups), int(n_days), int(cost_groups))


def refresh_channel_reporting(
    engine: sa.Engine, run_id: str, rules: InputRules, days: Iterable[str] = ()
) -> ReportStats:
    """The incremental report: the rows of every channel on ``days`` and of the stale groups,
    from the costs of those groups (checked, then staged under ``run_id``), replaced in one
    transaction."""
    window = stage_window(engine, run_id, days)
    # keyless cost tables need the full check (duplicates); otherwise the scan counts bad costs
    skipped = check_costs(engine, rules, window) if rules.costs_dedupe else []
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
