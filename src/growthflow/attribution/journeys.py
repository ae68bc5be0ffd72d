"""Step 1: build customer journeys in the database.

A journey is every usable session of the converting user strictly before the conversion
timestamp (optionally within ``lookback_days``), ordered by timestamp then session_id, cut
to the ``max_journey_sessions`` most recent. Everything runs as ``INSERT ... SELECT`` into the
run's staging tables (``gf_journeys``, ``gf_journey_sessions``), so no journey data passes
through Python and memory does not grow with the data. The candidate sessions are read once:
the statement that stages them also counts them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from functools import cache

import sqlalchemy as sa

from growthflow.attribution import schema
from growthflow.attribution.report import mark_stale
from growthflow.attribution.rules import InputRules
from growthflow.sql import collate_c


@dataclass(frozen=True)
class JourneyStats:
    conversions: int  # usable conversions whose conv_date is in the range
    journeys: int
    sessions: int
    truncated: int
    without_journey: int


def _before_conversion(dialect: str, conv_ts: str, lookback: bool) -> str:
    """SQL: session ``s`` is strictly earlier than ``conv_ts`` (and within the lookback)."""
    c = collate_c(dialect)
    session_ts = "(s.event_date || ' ' || s.event_time)"
    sql = f"{session_ts}{c} < {conv_ts}{c}"
    if lookback:
        if dialect == "sqlite":
            floor = f"datetime({conv_ts}, :lookback_modifier)"
        else:
            floor = (
                f"to_char(to_timestamp({conv_ts}, 'YYYY-MM-DD HH24:MI:SS') "
                "- make_interval(days => :lookback_days), 'YYYY-MM-DD HH24:MI:SS')"
            )
        sql += f" AND {session_ts}{c} >= {floor}{c}"
    return sql


@cache
def _statements(rules: InputRules, lookback: bool) -> tuple[sa.TextClause, ...]:
    """The journeys step's SQL: stage the conversions, stage their sessions (one pass over
    the candidates, which counts them too), then store each journey's counts."""
    d = rules.dialect
    c = collate_c(d)
    sessions = rules.sessions("s")
    conversions = rules.conversions("c")
    # the time test first: the validity rules (the costlier part) run only on the sessions
    # before the conversion
    in_journey = (
        f"s.user_id = j.user_id AND {_before_conversion(d, 'j.conv_ts', lookback)} "
        f"AND {sessions.valid}"
    )
    # The SQL below is assembled from constant fragments only; all values are bind parameters.
    insert_journeys = sa.text(
        f"""
        INSERT INTO gf_journeys
            (run_id, journey_no, conv_id, user_id, conv_ts, n_candidates, n_sessions)
        SELECT :run_id, ROW_NUMBER() OVER (ORDER BY c.conv_id{c}), c.conv_id, c.user_id,
               c.conv_date || ' ' || c.conv_time, 0, 0
        FROM conversions c
        WHERE c.conv_date BETWEEN :start AND :end AND {conversions.valid}
        """  # noqa: S608
    )
    order = f"s.event_date{c} DESC, s.event_time{c} DESC, s.session_id{c} DESC"
    flags = ", ".join(  # numbers, whatever the column type (valid rows hold 0 or 1)
        f"CAST({rules.number('session_sources', 's', flag)} AS INTEGER) AS {flag}"
        for flag in ("holder_engagement", "closer_engagement", "impression_interaction")
    )
    columns = (
        f"s.session_id, s.event_date || ' ' || s.event_time AS event_ts, s.channel_name, {flags}"
    )
    if d == "postgresql":
        # LATERAL: one index lookup per journey's user. A plain join let PostgreSQL hash a
        # full scan of session_sources and test every row's validity (30 s at scale 10).
        candidates = f"""
            SELECT j.journey_no, t.*
            FROM gf_journeys j CROSS JOIN LATERAL (
                SELECT {columns}, ROW_NUMBER() OVER (ORDER BY {order}) AS rn,
                       count(*) OVER () AS n_candidates
                FROM session_sources s WHERE {in_journey}
            ) t
            WHERE j.run_id = :run_id
        """  # noqa: S608
    else:
        candidates = f"""
            SELECT j.journey_no, {columns},
                   ROW_NUMBER() OVER (PARTITION BY j.journey_no ORDER BY {order}) AS rn,
                   count(*) OVER (PARTITION BY j.journey_no) AS n_candidates
            FROM gf_journeys j JOIN session_sources s ON {in_journey}
            WHERE j.run_id = :run_id
        """  # noqa: S608
    # the most recent :max_sessions candidates, numbered from the earliest kept (0)
    insert_sessions = sa.text(
        f"""
        INSERT INTO gf_journey_sessions
            (run_id, journey_no, position, session_id, event_ts, channel_name,
             holder_engagement, closer_engagement, impression_interaction)
        SELECT :run_id, journey_no,
               CASE WHEN n_candidates > :max_sessions THEN :max_sessions
                    ELSE n_candidates END - rn,
               session_id, event_ts, channel_name,
               holder_engagement, closer_engagement, impression_interaction
        FROM ({candidates}) t
        WHERE rn <= :max_sessions
        """  # noqa: S608
    )
    # Each journey's staged sessions; a journey cut to :max_sessions counts its candidates
    # again (the only ones whose count is not the staged one).
    store_counts = sa.text(
        """
        UPDATE gf_journeys SET n_sessions = x.n, n_candidates = x.n
        FROM (SELECT journey_no, count(*) AS n FROM gf_journey_sessions
              WHERE run_id = :run_id GROUP BY journey_no) x
        WHERE gf_journeys.run_id = :run_id AND gf_journeys.journey_no = x.journey_no
        """
    )
    count_cut = sa.text(
        f"""
        UPDATE gf_journeys AS j SET n_candidates =
            (SELECT count(*) FROM session_sources s WHERE {in_journey})
        WHERE j.run_id = :run_id AND j.n_sessions = :max_sessions
        """  # noqa: S608
    )
    return insert_journeys, insert_sessions, store_counts, count_cut


def lookback_params(dialect: str, lookback_days: int | None) -> dict:
    if lookback_days is None:
        return {}
    if dialect == "sqlite":
        return {"lookback_modifier": f"-{int(lookback_days)} days"}
    return {"lookback_days": int(lookback_days)}


def clear_staging(conn: sa.Connection, run_id: str, tables=schema.STAGING_TABLES) -> None:
    """Delete a run's staging rows (by default of every step)."""
    for table in tables:
        conn.execute(sa.delete(table).where(table.c.run_id == run_id))


def build_journeys(
    engine: sa.Engine,
    run_id: str,
    start: date,
    end: date,
    *,
    rules: InputRules,
    max_journey_sessions: int = 100,
    lookback_days: int | None = None,
    prune: bool = True,
) -> JourneyStats:
    """Stage the journeys of every usable conversion with ``start <= conv_date <= end``.

    Rerunning the step for the same ``run_id`` replaces its staging rows. Conversions in the
    range that no longer have any session lose their stored attribution here, so a rerun
    with a shorter lookback never leaves stale rows behind (not with ``prune=False``: the HTML
    report stages journeys to read them, never to change the stored attribution).
    """
    statements = _statements(rules, lookback_days is not None)
    insert_journeys, insert_sessions, store_counts, count_cut = statements
    params = {
        "run_id": run_id,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "max_sessions": max_journey_sessions,
        **lookback_params(rules.dialect, lookback_days),
    }
    j = schema.journeys
    with engine.begin() as conn:
        # Only this step's staging: the report's cost rows may be staged concurrently.
        clear_staging(conn, run_id, (schema.batches, schema.journey_sessions, schema.journeys))
        conn.execute(insert_journeys, params)
        if rules.dialect == "postgresql":  # plan the next joins with this run's row counts
            conn.execute(sa.text("ANALYZE gf_journeys"))
        conn.execute(insert_sessions, params)
        if rules.dialect == "postgresql":
            conn.execute(sa.text("ANALYZE gf_journey_sessions"))
        conn.execute(store_counts, params)
        conn.execute(count_cut, params)
        no_journey = sa.select(j.c.conv_id).where(j.c.run_id == run_id, j.c.n_sessions == 0)
        if prune:
            mark_stale(conn, no_journey)  # their report days lose that attribution
            for table in schema.ATTRIBUTION_TABLES:
                conn.execute(sa.delete(table).where(table.c.conv_id.in_(no_journey)))
        row = conn.execute(
            sa.select(
                sa.func.count(),
                sa.func.count().filter(j.c.n_sessions > 0),
                sa.func.coalesce(sa.func.sum(j.c.n_sessions), 0),
                sa.func.count().filter(j.c.n_candidates > j.c.n_sessions),
                sa.func.count().filter(j.c.n_sessions == 0),
            ).where(j.c.run_id == run_id)
        ).one()
    return JourneyStats(*(int(v) for v in row))
