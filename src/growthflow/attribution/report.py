"""Step 5: rebuild ``channel_reporting`` from the whole attribution table.

One row per (channel_name, event_date) with a session. Costs and attribution are aggregated
separately and joined afterwards, so a session's cost is never multiplied by its number of
attribution rows (a session can sit in several journeys).

The cost side (:func:`growthflow.attribution.costs.aggregate_costs`) is the one full scan of
``session_sources`` in a run and does not depend on the attribution, so it runs while
journeys are attributed and stages one row per (channel_name, event_date) in the run's
``gf_cost_days`` rows; the validity of a channel and date is then checked once per group
rather than once per row. :func:`rebuild_channel_reporting` joins the staged costs with the
attribution, atomically.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

import sqlalchemy as sa

from growthflow.attribution import schema
from growthflow.attribution.quality import SkippedRows, examples
from growthflow.attribution.rules import InputRules
from growthflow.sql import exact_sum


@dataclass
class ReportStats:
    rows: int
    skipped: list[SkippedRows] = field(default_factory=list)


@cache
def _rebuild_statement(rules: InputRules) -> sa.TextClause:
    revenue = rules.number("conversions", "c", "revenue")
    # Constant SQL fragments only; the run id is the one (bound) value.
    return sa.text(
        f"""
        INSERT INTO channel_reporting (channel_name, date, cost, ihc, ihc_revenue)
        SELECT g.channel_name, g.event_date, g.cost,
               COALESCE(a.ihc, 0), COALESCE(a.ihc_revenue, 0)
        FROM gf_cost_days g
        LEFT JOIN (
            SELECT s.channel_name, s.event_date, {exact_sum("a.ihc", rules.dialect)} AS ihc,
                   {exact_sum(f"a.ihc * {revenue}", rules.dialect)} AS ihc_revenue
            FROM attribution_customer_journey a
            JOIN session_sources s ON s.session_id = a.session_id
            JOIN conversions c ON c.conv_id = a.conv_id
            GROUP BY s.channel_name, s.event_date
        ) a ON a.channel_name = g.channel_name AND a.event_date = g.event_date
        WHERE g.run_id = :run_id AND g.sessions > 0 AND {rules.reportable_day("g")}
        """  # noqa: S608
    )


def rebuild_channel_reporting(engine: sa.Engine, run_id: str, rules: InputRules) -> ReportStats:
    """Replace ``channel_reporting`` atomically from the staged costs and all attribution."""
    rebuild = _rebuild_statement(rules)
    reportable = rules.reportable_day("g")
    totals = sa.text(
        "SELECT COALESCE(SUM(CASE WHEN NOT "  # noqa: S608
        f"{reportable} THEN sessions ELSE 0 END), 0), "
        "COALESCE(SUM(duplicates), 0) "
        "FROM gf_cost_days g WHERE run_id = :run_id"
    )
    with engine.begin() as conn:
        conn.execute(sa.delete(schema.channel_reporting))
        conn.execute(rebuild, {"run_id": run_id})
        rows = conn.execute(
            sa.select(sa.func.count()).select_from(schema.channel_reporting)
        ).scalar_one()
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
    return ReportStats(rows=rows, skipped=skipped)
