"""Step 5: rebuild ``channel_reporting`` from the whole attribution table.

One row per (channel_name, event_date) with a session. Costs and attribution are aggregated
separately and joined afterwards, so a session's cost is never multiplied by its number of
attribution rows (a session can sit in several journeys).

The cost side (:func:`aggregate_costs`) is the one full scan of ``session_sources`` in a run
and does not depend on the attribution, so it can run while journeys are attributed. It
groups every session by (channel_name, event_date) in one read-only query (on SQLite streamed
from a covering index in that order, with no sort) and stages the small result in the run's
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
from growthflow.database import bulk_insert, read_only
from growthflow.sql import finite_number


@dataclass
class ReportStats:
    rows: int
    skipped: list[SkippedRows] = field(default_factory=list)


@cache
def _statements(rules: InputRules) -> tuple[sa.TextClause, sa.TextClause]:
    sqlite = rules.dialect == "sqlite"
    # SQLite: stream groups from our covering index, and look costs up in the covering
    # (session_id, cost) index instead of the key index, which needs a second lookup.
    sessions_hint = " INDEXED BY gf_ix_session_sources_channel_day" if sqlite else ""
    costs_hint = " INDEXED BY gf_ix_session_costs_cost" if sqlite else ""
    # Costs that are not finite numbers count as 0 (check_inputs counts and reports them).
    usable_cost = finite_number("k.cost", rules.dialect)
    sessions, duplicates = "COUNT(*)", "0"
    if rules.sessions_dedupe:  # a keyless table: rows sharing a session_id are not reported
        unique = dict(rules.sessions("s").rules)["duplicate session_id"]
        usable_cost = f"{usable_cost} AND {unique}"
        sessions = f"SUM(CASE WHEN {unique} THEN 1 ELSE 0 END)"
        duplicates = f"SUM(CASE WHEN {unique} THEN 0 ELSE 1 END)"
    cost_join = "k.session_id = s.session_id"
    if rules.costs_dedupe:  # a keyless cost table: duplicated session_ids count as 0
        cost_join += " AND " + dict(rules.costs("k").rules)["duplicate session_id"]
    cost = f"CASE WHEN {usable_cost} THEN k.cost END"
    cost_sum = f"TOTAL({cost})" if sqlite else f"COALESCE(SUM({cost}), 0)"
    # Constant SQL fragments only; the run id is the one (bound) value.
    aggregate = sa.text(
        f"""
        SELECT s.channel_name, s.event_date, {cost_sum}, {sessions}, {duplicates}
        FROM session_sources s{sessions_hint}
        LEFT JOIN session_costs k{costs_hint} ON {cost_join}
        GROUP BY s.channel_name, s.event_date
        """  # noqa: S608
    )
    rebuild = sa.text(
        f"""
        INSERT INTO channel_reporting (channel_name, date, cost, ihc, ihc_revenue)
        SELECT g.channel_name, g.event_date, g.cost,
               COALESCE(a.ihc, 0), COALESCE(a.ihc_revenue, 0)
        FROM gf_cost_days g
        LEFT JOIN (
            SELECT s.channel_name, s.event_date, SUM(a.ihc) AS ihc,
                   SUM(a.ihc * c.revenue) AS ihc_revenue
            FROM attribution_customer_journey a
            JOIN session_sources s ON s.session_id = a.session_id
            JOIN conversions c ON c.conv_id = a.conv_id
            GROUP BY s.channel_name, s.event_date
        ) a ON a.channel_name = g.channel_name AND a.event_date = g.event_date
        WHERE g.run_id = :run_id AND g.sessions > 0 AND {rules.reportable_day("g")}
        """  # noqa: S608
    )
    return aggregate, rebuild


def aggregate_costs(engine: sa.Engine, run_id: str, rules: InputRules) -> int:
    """Stage the run's costs per (channel_name, event_date); returns the number of groups.

    The scan is a plain read; only its result (one row per channel and day) is written, in a
    short transaction, so on SQLite it never holds the write lock while it scans.
    """
    aggregate, _ = _statements(rules)
    with read_only(engine) as conn:
        groups = conn.execute(aggregate).all()
    g = schema.cost_days
    with engine.begin() as conn:
        conn.execute(sa.delete(g).where(g.c.run_id == run_id))
        bulk_insert(conn, g, ((run_id, *row) for row in groups))
    return len(groups)


def rebuild_channel_reporting(engine: sa.Engine, run_id: str, rules: InputRules) -> ReportStats:
    """Replace ``channel_reporting`` atomically from the staged costs and all attribution."""
    _, rebuild = _statements(rules)
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
