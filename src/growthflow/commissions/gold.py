"""The gold step: promote validated files and recompute the affected days, in one transaction.

Promotion is where a correction replaces the earlier file: for every (feed, day) with a newly
validated file, the newest becomes current and every earlier version is superseded, its
silver and quarantine rows deleted. The days whose inputs changed (the old and the new
file's days; every day when a snapshot changed) are then recomputed by the SQL models in
``sql/``, in the same transaction, so a reader sees the old gold tables or the new ones.

The ``combined`` scope can be left to a step of its own (``run_combined``, the Airflow DAG
scheduled on the gold Assets): the gold step then writes the events and scrapers scopes and
records the days it recomputed as stale for combined (``gf_commission_stale_days``); the
combined step recomputes exactly those days, in one transaction. A gold step that writes every
scope catches up the stale days too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cache
from importlib import resources

import sqlalchemy as sa

from growthflow.commissions import schema
from growthflow.commissions.config import FeedConfig
from growthflow.errors import InputDataError

MODELS = (  # run in this order; each file is one rule, readable on its own
    "operator_keys",
    "readings",
    "scraper_amounts",
    "earnings",
    "clicks",
    "source_daily",
    "operator_daily",
    "operator_monthly",
    "day_warnings",
    "stale_days",
)
SCOPES = ("events", "scrapers", "combined")
# the models about the days' inputs (readings, scraper amounts, warnings): run by the gold
# step, not by the combined step, which reads what the gold step left
_INPUT_MODELS = ("readings", "scraper_amounts", "day_warnings")

_MACROS = {
    "sqlite": {
        "month": lambda x: f"substr({x}, 1, 7)",
        "clustered": lambda _: "WITHOUT ROWID",
        "bytewise": lambda x: x,
        "days_between": lambda a, b: f"CAST(julianday({a}) - julianday({b}) AS INTEGER)",
        "product": lambda a, b: f"(({a}) * ({b}))",
        "floormod": lambda p, d: f"(((({p}) % ({d})) + ({d})) % ({d}))",
        "floordiv": lambda p, d: f"((({p}) - (((({p}) % ({d})) + ({d})) % ({d}))) / ({d}))",
        # 1/10,000 -> cents, half-up (away from zero); integer division truncates
        "cents": lambda x: (
            f"(CASE WHEN ({x}) >= 0 THEN (({x}) + 50) / 100 ELSE -((50 - ({x})) / 100) END)"
        ),
    },
    "postgresql": {
        "month": lambda x: f"to_char({x}, 'YYYY-MM')",
        "clustered": lambda _: "",
        "bytewise": lambda x: f'{x} COLLATE "C"',
        "days_between": lambda a, b: f"({a} - {b})",
        "product": lambda a, b: f"(CAST({a} AS numeric) * ({b}))",
        "floormod": lambda p, d: f"mod(mod({p}, {d}) + ({d}), {d})",
        "floordiv": lambda p, d: f"div(({p}) - mod(mod({p}, {d}) + ({d}), {d}), {d})",
        "cents": lambda x: (
            f"(CASE WHEN ({x}) >= 0 THEN div(({x}) + 50, 100) ELSE -div(50 - ({x}), 100) END)"
        ),
    },
}
_MACROS["sqlite"]["money"] = _MACROS["postgresql"]["money"] = lambda x: f"(({x}) / 100.0)"
_MACRO_START = re.compile(r"@(\w+)\(")


def expand(sql: str, dialect: str) -> str:
    """Expand ``@name(arg, ...)`` macros (nested ones too) for a dialect."""
    macros = _MACROS[dialect]
    out, pos = [], 0
    while m := _MACRO_START.search(sql, pos):
        out.append(sql[pos : m.start()])
        depth, i, args, start = 1, m.end(), [], m.end()
        while depth:
            ch = sql[i]
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
            elif ch == "," and depth == 1:
                args.append(sql[start:i])
                start = i + 1
            i += 1
        args.append(sql[start : i - 1])
        out.append(macros[m[1]](*(expand(a.strip(), dialect) for a in args)))
        pos = i
    out.append(sql[pos:])
    return "".join(out)


@cache
def statements(model: str, dialect: str) -> tuple[str, ...]:
    text = resources.files("growthflow.commissions").joinpath(f"sql/{model}.sql").read_text()
    sql = expand(text, dialect)
    return tuple(s.strip() for s in re.split(r";\s*(?:\n|$)", sql) if _has_code(s))


def _has_code(sql: str) -> bool:
    return any(line.strip() and not line.strip().startswith("--") for line in sql.splitlines())


@dataclass
class GoldStats:
    promoted: int = 0
    superseded: int = 0
    days: int = 0
    months: int = 0
    scopes: list[str] = field(default_factory=list)  # the scopes written
    rows: dict[str, int] = field(default_factory=dict)  # gold rows written per table
    warnings: dict[str, int] = field(default_factory=dict)  # warning kinds of those days


def _promote(conn: sa.Connection, config: FeedConfig) -> tuple[list, list, bool]:
    """Make the newest validated file of each (feed, day) current; returns the promoted and
    superseded (file_id, feed) pairs, and whether a snapshot changed."""
    f = schema.files
    pending = conn.execute(
        sa.select(f.c.file_id, f.c.feed, f.c.day).where(f.c.state == "silver").order_by(f.c.file_id)
    ).all()
    if not pending:
        return [], [], False
    newest: dict[tuple, int] = {}
    for file_id, feed, day in pending:
        newest[(feed, day)] = file_id
    promoted = [(fid, feed) for (feed, _day), fid in newest.items()]
    superseded = [(fid, feed) for fid, feed, day in pending if newest[(feed, day)] != fid]
    for (feed, day), fid in newest.items():
        older = conn.execute(
            sa.select(f.c.file_id).where(
                f.c.feed == feed,
                f.c.day.is_(None) if day is None else f.c.day == day,
                f.c.state == "current",
            )
        ).scalars()
        superseded.extend((old, feed) for old in older if old != fid)
    for fid, feed in superseded:
        _drop_file_rows(conn, config, fid, feed)
    conn.execute(
        sa.update(f)
        .where(f.c.file_id.in_([fid for fid, _ in superseded]))
        .values(state="superseded")
    )
    conn.execute(
        sa.update(f).where(f.c.file_id.in_([fid for fid, _ in promoted])).values(state="current")
    )
    snapshot = any(config.feeds[feed].kind == "snapshot" for _fid, feed in promoted)
    return promoted, superseded, snapshot


def _drop_file_rows(conn: sa.Connection, config: FeedConfig, file_id: int, feed: str) -> None:
    table = schema.silver[config.feeds[feed].role]
    condition = table.c.file_id == file_id
    if "day" in table.c:  # the clustered key starts with the day: delete day by day
        days = sa.select(schema.file_days.c.day).where(schema.file_days.c.file_id == file_id)
        condition = sa.and_(table.c.day.in_(days), condition)
    conn.execute(sa.delete(table).where(condition))
    conn.execute(sa.delete(schema.quarantine).where(schema.quarantine.c.file_id == file_id))
    w = schema.warnings
    conn.execute(sa.delete(w).where(w.c.file_id == file_id, w.c.origin == "file"))


def _affected_days(conn: sa.Connection, file_ids: list[int], everything: bool) -> list[date]:
    fd, f = schema.file_days, schema.files
    if everything:
        query = (
            sa.select(fd.c.day)
            .join(f, f.c.file_id == fd.c.file_id)
            .where(sa.or_(f.c.state == "current", fd.c.file_id.in_(file_ids)))
        )
    else:
        query = sa.select(fd.c.day).where(fd.c.file_id.in_(file_ids))
    return sorted(set(conn.execute(query).scalars()))


def run_gold(
    engine: sa.Engine, config: FeedConfig, *, full: bool = False, combined: bool = True
) -> GoldStats:
    """Promote validated files and recompute every affected day (all days with ``full``).
    With ``combined=False`` the combined scope is left to ``run_combined``."""
    stats = GoldStats()
    dialect = engine.dialect.name
    scopes = SCOPES if combined else ("events", "scrapers")
    with engine.begin() as conn:
        promoted, superseded, snapshot = _promote(conn, config)
        stats.promoted, stats.superseded = len(promoted), len(superseded)
        changed = [fid for fid, _ in promoted + superseded]
        days = _affected_days(conn, changed, everything=snapshot or full)
        totals = [
            fid
            for fid, feed in promoted + superseded
            if config.feeds[feed].role == "running_totals"
        ]
        reading_days = days if snapshot or full else _affected_days(conn, totals, False)
        days = sorted(set(days) | set(_stale_days(conn, scopes)))
        if days:
            _recompute(conn, config, days, reading_days, dialect, stats, scopes)
        _landing_warnings(conn, config)
    return stats


def run_combined(engine: sa.Engine, config: FeedConfig) -> GoldStats:
    """The combined scope of every day the gold step left stale for it, in one transaction."""
    stats = GoldStats()
    with engine.begin() as conn:
        days = _stale_days(conn, ("combined",))
        if days:
            _recompute(conn, config, days, [], engine.dialect.name, stats, ("combined",))
    return stats


def _stale_days(conn: sa.Connection, scopes: tuple[str, ...]) -> list[date]:
    stale = schema.stale_days
    query = sa.select(stale.c.day).where(stale.c.scope.in_(scopes)).distinct()
    return list(conn.execute(query).scalars())


def _recompute(
    conn,
    config: FeedConfig,
    days: list[date],
    reading_days: list[date],
    dialect: str,
    stats: GoldStats,
    scopes: tuple[str, ...],
):
    for statement in statements("temp_tables", dialect):
        conn.execute(sa.text(statement))
    try:
        conn.execute(
            sa.insert(sa.table("gf_tmp_scopes", sa.column("scope"))),
            [{"scope": scope} for scope in scopes],
        )
        for name, values in (("gf_tmp_days", days), ("gf_tmp_reading_days", reading_days)):
            if values:
                table = sa.table(name, sa.column("day", sa.Date))
                conn.execute(sa.insert(table), [{"day": d} for d in values])
            # Statistics of the day lists, so the planner walks the days and seeks each one in
            # the history (keyed by day), instead of scanning the history and probing the
            # days: a corrected day then costs a day, not the whole history.
            conn.execute(sa.text(f"ANALYZE {'temp.' if dialect == 'sqlite' else ''}{name}"))
        params = {"rate_e4": config.rate_e4}
        inputs = "events" in scopes  # the gold step, not the combined step
        for model in MODELS:
            if model in _INPUT_MODELS and not inputs:
                continue
            for statement in statements(model, dialect):
                conn.execute(sa.text(statement), params)
        _check_exact(conn)
        all_days = conn.execute(sa.text("SELECT day FROM gf_tmp_days")).scalars().all()
        months = sorted({str(d)[:7] for d in all_days})
        stats.days, stats.months = len(all_days), len(months)
        sd, om, sa_ = schema.source_daily, schema.operator_monthly, schema.scraper_amounts
        stats.scopes = list(scopes)
        recomputed = sa.select(sa.column("day")).select_from(sa.table("gf_tmp_days"))
        counts = {
            sd: sa.and_(sd.c.date.in_(recomputed), sd.c.scope.in_(scopes)),
            sa_: sa_.c.date.in_(recomputed) if inputs else None,
            om: sa.and_(om.c.month.in_(months), om.c.scope.in_(scopes)),
        }
        for table, where in counts.items():
            if where is not None:
                stats.rows[table.name] = conn.execute(
                    sa.select(sa.func.count()).select_from(table).where(where)
                ).scalar_one()
        if not inputs:
            return
        stats.warnings = dict(
            conn.execute(
                sa.text(
                    "SELECT kind, COUNT(*) FROM commission_warnings WHERE origin = 'day' "
                    "AND date IN (SELECT day FROM gf_tmp_days) GROUP BY kind"
                )
            ).all()
        )
    finally:
        for name in (
            "days",
            "scopes",
            "reading_days",
            "counters",
            "operator_keys",
            "earnings",
            "clicks",
            "activity",
            "source_day",
        ):
            conn.execute(sa.text(f"DROP TABLE IF EXISTS gf_tmp_{name}"))


_INT64_MAX = 2**63 - 1


def _check_exact(conn: sa.Connection) -> None:
    """SQLite's integers are 64-bit and its arithmetic turns to floats, silently, beyond: refuse
    amounts whose shares (commission x raw earnings) could leave that range. PostgreSQL
    computes the shares in NUMERIC and needs no such limit."""
    if conn.dialect.name != "sqlite":
        return
    commission, raw = conn.execute(
        sa.text(
            "SELECT (SELECT MAX(ABS(commission_cents)) FROM gf_tmp_source_day),"
            " (SELECT MAX(ABS(raw_e4)) FROM gf_tmp_earnings)"
        )
    ).one()
    inexact = conn.execute(
        sa.text(
            "SELECT COUNT(*) FROM gf_tmp_source_day WHERE typeof(commission_cents) <> 'integer'"
        )
    ).scalar_one()
    if inexact or (commission or 0) * max(raw or 0, 1) > _INT64_MAX:
        raise InputDataError(
            "commissions this large cannot be shared among operators exactly on SQLite "
            "(beyond its 64-bit integers); use PostgreSQL for such amounts"
        )


def _landing_warnings(conn: sa.Connection, config: FeedConfig) -> None:
    """A daily feed's missing days between its first and last loaded file."""
    w, f = schema.warnings, schema.files
    conn.execute(sa.delete(w).where(w.c.origin == "landing"))
    rows = []
    for feed in config.feeds.values():
        if feed.kind != "daily":
            continue
        loaded = set(
            conn.execute(
                sa.select(f.c.day).where(f.c.feed == feed.name, f.c.state == "current")
            ).scalars()
        )
        if len(loaded) < 2:
            continue
        first, last = min(loaded), max(loaded)
        kind = "missing file (required feed)" if feed.required else "missing file (optional feed)"
        for offset in range((last - first).days):
            day = first + timedelta(days=offset)
            if day not in loaded:
                rows.append(
                    {
                        "kind": kind,
                        "feed": feed.name,
                        "date": day,
                        "subject": f"{feed.name}/{day.isoformat()}.csv",
                        "rows": 0,
                        "file_id": None,
                        "line": None,
                        "origin": "landing",
                    }
                )
    if rows:
        conn.execute(sa.insert(w), rows)
