"""Count the input rows the pipeline skips, per table and reason, with a few example ids.

A check reads what the run reads. Journeys only ever read the sessions of users who convert
in the run's range, so that is the scope of the session check (one index lookup per
converting user, not a table scan). A run with a full report checks every conversion and cost
row; an incremental one the conversions of its range and the cost rows of the sessions of its
report window. The report's own scan counts the sessions it cannot use.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date

import sqlalchemy as sa

from growthflow.attribution.rules import InputRules, TableRules
from growthflow.database import read_only

log = logging.getLogger(__name__)

EXAMPLES = 5


@dataclass
class SkippedRows:
    table: str
    reason: str
    count: int
    examples: list[str] = field(default_factory=list)


def examples(
    conn: sa.Connection,
    source: str,
    alias: str,
    id_column: str,
    bad_sql: str,
    params: dict | None = None,
    cte: str = "",
) -> list[str]:
    """Up to :data:`EXAMPLES` ids of rows of ``source`` matching ``bad_sql`` (constant SQL),
    ``cte`` being an optional WITH clause that defines ``source``."""
    rows = conn.execute(
        sa.text(
            f"{cte}SELECT {alias}.{id_column} FROM {source} {alias} "  # noqa: S608
            f"WHERE {bad_sql} LIMIT :examples"
        ),
        {**(params or {}), "examples": EXAMPLES},
    ).scalars()
    return [str(r) for r in rows]


def count_skipped(
    conn: sa.Connection, rules: TableRules, *, rows: str | None = None, params: dict | None = None
) -> list[SkippedRows]:
    """Rows failing a rule (first failing rule wins), with examples.

    ``rows`` is a query selecting the rows to check (default: the whole table). It is
    materialised first, so the reasons are computed for those rows only, whatever plan the
    database would otherwise choose (without statistics PostgreSQL pushed the reason filter
    into a scan of the whole table).
    """
    params = params or {}
    cte, source = "", rules.table
    if rows is not None:
        cte, source = f"WITH checked AS MATERIALIZED ({rows}) ", "checked"
    counts = conn.execute(
        sa.text(
            f"{cte}SELECT reason, count(*) FROM (SELECT {rules.reason} AS reason "  # noqa: S608
            f"FROM {source} {rules.alias}) r WHERE reason IS NOT NULL GROUP BY reason"
        ),
        params,
    ).all()
    return [
        SkippedRows(
            rules.table,
            reason,
            int(count),
            examples(
                conn,
                source,
                rules.alias,
                rules.id_column,
                f"{rules.reason} = :reason",
                {**params, "reason": reason},
                cte,
            ),
        )
        for reason, count in sorted(counts)
    ]


def check_inputs(
    engine: sa.Engine, rules: InputRules, start: date, end: date, *, full: bool = True
) -> list[SkippedRows]:
    """The conversions (all of them, or with ``full=False`` those dated in [start, end]) and
    the sessions of users converting in [start, end]."""
    users = "SELECT DISTINCT c.user_id FROM conversions c WHERE c.conv_date BETWEEN :start AND :end"
    if rules.dialect == "postgresql":
        # Per-user index lookups. OFFSET 0 keeps PostgreSQL from flattening the LATERAL back
        # into a hash join over a full scan of session_sources.
        converting_users_sessions = (
            f"SELECT s.* FROM ({users}) u CROSS JOIN LATERAL "  # noqa: S608
            "(SELECT * FROM session_sources x WHERE x.user_id = u.user_id OFFSET 0) s"
        )
    else:
        converting_users_sessions = f"SELECT * FROM session_sources WHERE user_id IN ({users})"  # noqa: S608
    in_range = {"start": start.isoformat(), "end": end.isoformat()}
    with read_only(engine) as conn:
        if full:
            skipped = count_skipped(conn, rules.conversions("c"))
        else:
            skipped = count_skipped(
                conn,
                rules.conversions("c"),
                rows="SELECT * FROM conversions WHERE conv_date BETWEEN :start AND :end",
                params=in_range,
            )
        skipped += count_skipped(
            conn,
            rules.sessions("s"),
            rows=converting_users_sessions,
            params=in_range,
        )
    return skipped


def check_costs(engine: sa.Engine, rules: InputRules, window=None) -> list[SkippedRows]:
    """The whole of ``session_costs`` (a full scan, which the pipeline runs beside the
    journeys, together with the cost aggregation), or with a report ``window``
    (:class:`growthflow.attribution.costs.Window`) the cost rows of its sessions."""
    with read_only(engine) as conn:
        if window is None:
            return count_skipped(conn, rules.costs("k"))
        rows = (
            "SELECT * FROM session_costs WHERE session_id IN "  # noqa: S608 (constant SQL)
            f"(SELECT s.session_id FROM {window.sessions(rules.dialect)})"
        )
        return count_skipped(conn, rules.costs("k"), rows=rows, params=window.params())


def log_skipped(skipped: list[SkippedRows]) -> None:
    for s in skipped:
        log.warning(
            "%s: skipping %d row(s): %s (e.g. %s)",
            s.table,
            s.count,
            s.reason,
            ", ".join(s.examples),
        )
