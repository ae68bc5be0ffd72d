"""The commissions tables: files registry, bronze, silver (one table per role), quarantine,
warnings, gold, and growthflow's internal helpers (prefix ``gf_``).

Money in silver and internal tables is an exact integer of 1/10,000 (columns ``*_e4``) or of
cents (``*_cents``); gold tables show money as NUMERIC(18, 2), rounded half-up (away from
zero) when written. Days are DATE (ISO text on SQLite).
"""

from __future__ import annotations

import sqlalchemy as sa

from growthflow.commissions.config import ROLES, ColumnType
from growthflow.database import translate_errors

metadata = sa.MetaData()
TEXT = sa.Text()
MONEY = sa.Numeric(18, 2)
BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

files = sa.Table(
    "commission_files",
    metadata,
    sa.Column("file_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("feed", TEXT, nullable=False),
    sa.Column("day", sa.Date),  # NULL for snapshot feeds
    sa.Column("content_hash", TEXT, nullable=False),  # SHA-256 of the bytes
    sa.Column("name", TEXT, nullable=False),  # path in the landing zone
    sa.Column("size", BIGINT, nullable=False),
    # bronze (loaded raw) -> silver (validated) -> current | superseded; or rejected
    sa.Column("state", TEXT, nullable=False),
    sa.Column("loaded_at", TEXT, nullable=False),
    sa.Column("header", TEXT),
    sa.Column("records", sa.Integer),
    sa.Column("blank_lines", sa.Integer),
    sa.Column("silver_rows", sa.Integer),
    sa.Column("quarantined_rows", sa.Integer),
    sa.Column("reason", TEXT),  # why a file was rejected
    sa.Column("detail", TEXT),
)
sa.Index("gf_ix_commission_files_feed_day", files.c.feed, files.c.day, files.c.state)

bronze = sa.Table(
    "commission_bronze",
    metadata,
    sa.Column("file_id", sa.Integer, primary_key=True),
    sa.Column("line", sa.Integer, primary_key=True),  # the header is line 1
    sa.Column("raw", TEXT, nullable=False),  # the record exactly as in the file
    sqlite_with_rowid=False,
)

file_days = sa.Table(  # the days each daily file's silver rows fall on
    "gf_commission_file_days",
    metadata,
    sa.Column("file_id", sa.Integer, primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
)

quarantine = sa.Table(
    "commission_quarantine",
    metadata,
    sa.Column("file_id", sa.Integer, primary_key=True),
    sa.Column("line", sa.Integer, primary_key=True),
    sa.Column("feed", TEXT, nullable=False),
    sa.Column("reason", TEXT, nullable=False),
    sa.Column("raw", TEXT, nullable=False),
)

warnings = sa.Table(
    "commission_warnings",
    metadata,
    sa.Column("kind", TEXT, nullable=False),
    sa.Column("feed", TEXT, nullable=False),
    sa.Column("date", sa.Date),
    sa.Column("subject", TEXT, nullable=False),
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("file_id", sa.Integer),  # an example row
    sa.Column("line", sa.Integer),
    # who owns the row: 'file' (gone with its file), 'day' (recomputed with the day's gold),
    # 'landing' (recomputed by every gold step)
    sa.Column("origin", TEXT, nullable=False),
)
sa.Index("gf_ix_commission_warnings_date", warnings.c.origin, warnings.c.date)
sa.Index("gf_ix_commission_warnings_file", warnings.c.file_id)


def _silver_columns(kind: ColumnType, name: str) -> list[sa.Column]:
    if kind == "money":
        return [sa.Column(f"{name}_e4", BIGINT)]
    if kind == "integer":
        return [sa.Column(name, BIGINT)]
    if kind == "name":
        return [sa.Column(name, TEXT), sa.Column(f"{name}_key", TEXT)]
    if kind == "deal":
        return [
            sa.Column("deal", TEXT),
            sa.Column("deal_kind", TEXT),
            sa.Column("deal_fee_e4", BIGINT),
            sa.Column("deal_per_click", sa.SmallInteger),
        ]
    return [sa.Column(name, TEXT)]


# Daily silver tables are clustered by the key the gold rules group on (day first), so a
# day's rows are one range and aggregate without a sort.
_CLUSTER = {
    "earnings": ("marketing_source", "operator_key"),
    "clicks": ("voluum_brand_key",),
    "running_totals": ("marketing_source", "operator_key"),
}


_LOOKUP = {"deals": "marketing_source", "brand_map": "voluum_brand_key"}


def _silver_table(role_name: str) -> sa.Table:
    role = ROLES[role_name]
    columns = [
        sa.Column("file_id", sa.Integer, nullable=False),
        sa.Column("line", sa.Integer, nullable=False),
    ]
    if role.kind == "daily":
        columns.append(sa.Column("day", sa.Date, nullable=False))
    columns.append(sa.Column("feed", TEXT, nullable=False))
    for name, kind in {**role.fields, **role.optional}.items():
        columns.extend(_silver_columns(kind, name))
    key = (
        ("day", *_CLUSTER[role_name], "file_id", "line")
        if role.kind == "daily"
        else ("file_id", "line")
    )
    table = sa.Table(
        role.table, metadata, *columns, sa.PrimaryKeyConstraint(*key), sqlite_with_rowid=False
    )
    if role_name in _LOOKUP:  # snapshots are joined by their key
        sa.Index(f"gf_ix_{role.table}_key", table.c[_LOOKUP[role_name]])
    return table


silver = {name: _silver_table(name) for name in ROLES}

# --- gold ----------------------------------------------------------------------------------
source_daily = sa.Table(
    "commission_source_daily",
    metadata,
    sa.Column("scope", TEXT, primary_key=True),
    sa.Column("date", sa.Date, primary_key=True),
    sa.Column("marketing_source", TEXT, primary_key=True),
    sa.Column("deal", TEXT, nullable=False),
    sa.Column("raw_earnings", MONEY, nullable=False),
    sa.Column("clicks", BIGINT, nullable=False),
    sa.Column("commission", MONEY, nullable=False),
)
sa.Index("gf_ix_commission_source_daily_date", source_daily.c.date)

operator_monthly = sa.Table(
    "commission_operator_monthly",
    metadata,
    sa.Column("scope", TEXT, primary_key=True),
    sa.Column("month", TEXT, primary_key=True),  # YYYY-MM
    sa.Column("operator", TEXT, primary_key=True),
    sa.Column("raw_earnings", MONEY, nullable=False),
    sa.Column("commission", MONEY, nullable=False),
)

scraper_amounts = sa.Table(
    "scraper_daily_amounts",
    metadata,
    sa.Column("date", sa.Date, primary_key=True),
    sa.Column("marketing_source", TEXT, primary_key=True),
    sa.Column("operator", TEXT, primary_key=True),
    sa.Column("previous_date", sa.Date),
    sa.Column("previous_total", MONEY),
    sa.Column("total", MONEY, nullable=False),
    sa.Column("amount", MONEY),  # NULL for a baseline: a first reading yields no amount
    sa.Column("rule", TEXT, nullable=False),  # baseline | delta | delta over N days | reset
)

# --- internal, exact ------------------------------------------------------------------------
readings = sa.Table(  # one reading per counter and day (the last row wins), and its amount
    "gf_commission_readings",
    metadata,
    sa.Column("marketing_source", TEXT, primary_key=True),
    sa.Column("operator", TEXT, primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("total_e4", BIGINT, nullable=False),
    sa.Column("readings", sa.Integer, nullable=False),  # rows of that counter that day
    sa.Column("file_id", sa.Integer, nullable=False),
    sa.Column("line", sa.Integer, nullable=False),
    sa.Column("previous_day", sa.Date),
    sa.Column("previous_total_e4", BIGINT),
    sa.Column("amount_e4", BIGINT),
    sa.Column("rule", TEXT),
)
sa.Index("gf_ix_commission_readings_day", readings.c.day)

operator_daily = sa.Table(  # each source-day's commission shared among its operators
    "gf_commission_operator_daily",
    metadata,
    sa.Column("scope", TEXT, primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("operator", TEXT, primary_key=True),
    sa.Column("month", TEXT, nullable=False),
    sa.Column("raw_e4", BIGINT, nullable=False),
    sa.Column("commission_cents", BIGINT, nullable=False),
)
sa.Index("gf_ix_commission_operator_daily_month", operator_daily.c.month)

stale_days = sa.Table(  # days a scope's gold waits for (the combined scope on its own DAG)
    "gf_commission_stale_days",
    metadata,
    sa.Column("scope", TEXT, primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
)

GOLD_TABLES = (source_daily, operator_monthly, scraper_amounts)


def init_db(engine: sa.Engine) -> None:
    """Create the tables that do not exist yet."""
    with translate_errors(engine), engine.begin() as conn:
        metadata.create_all(conn, checkfirst=True)
