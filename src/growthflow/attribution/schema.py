"""Tables of the attribution pipeline.

The five challenge tables keep the exact contract (names, columns, keys). Everything
growthflow adds lives in tables prefixed ``gf_`` next to them: per-session phase values and
the model of each stored attribution, the run log, and the staging tables of a run (journeys,
their sessions, and the batch plan), keyed by ``run_id`` so that steps running as separate
processes (CLI or Airflow tasks) hand data to each other through the database.

``REAL`` is SQLite's 8-byte float. PostgreSQL's ``real`` is only 4 bytes, so on PostgreSQL the
tables growthflow creates use ``double precision`` to keep revenue and ihc exact.
"""

from __future__ import annotations

import sqlalchemy as sa

from growthflow.database import (
    has_lookup_index,
    insert_ignore,
    missing_columns,
    missing_tables,
    sort_threads,
    translate_errors,
)
from growthflow.errors import DatabaseError

FLOAT = sa.REAL().with_variant(sa.Double(), "postgresql")
TEXT = sa.Text()

metadata = sa.MetaData()

# --- the challenge contract -------------------------------------------------------------
session_sources = sa.Table(
    "session_sources",
    metadata,
    sa.Column("session_id", TEXT, primary_key=True),
    sa.Column("user_id", TEXT, nullable=False),
    sa.Column("event_date", TEXT, nullable=False),
    sa.Column("event_time", TEXT, nullable=False),
    sa.Column("channel_name", TEXT, nullable=False),
    sa.Column("holder_engagement", sa.Integer, nullable=False),
    sa.Column("closer_engagement", sa.Integer, nullable=False),
    sa.Column("impression_interaction", sa.Integer, nullable=False),
)
conversions = sa.Table(
    "conversions",
    metadata,
    sa.Column("conv_id", TEXT, primary_key=True),
    sa.Column("user_id", TEXT, nullable=False),
    sa.Column("conv_date", TEXT, nullable=False),
    sa.Column("conv_time", TEXT, nullable=False),
    sa.Column("revenue", FLOAT, nullable=False),
)
session_costs = sa.Table(
    "session_costs",
    metadata,
    sa.Column("session_id", TEXT, primary_key=True),
    sa.Column("cost", FLOAT, nullable=True),
)
attribution_customer_journey = sa.Table(
    "attribution_customer_journey",
    metadata,
    sa.Column("conv_id", TEXT, primary_key=True),
    sa.Column("session_id", TEXT, primary_key=True),
    sa.Column("ihc", FLOAT, nullable=False),
    sqlite_with_rowid=False,
)
channel_reporting = sa.Table(
    "channel_reporting",
    metadata,
    sa.Column("channel_name", TEXT, primary_key=True),
    sa.Column("date", TEXT, primary_key=True),
    sa.Column("cost", FLOAT),
    sa.Column("ihc", FLOAT),
    sa.Column("ihc_revenue", FLOAT),
)

INPUT_TABLES = (session_sources, conversions, session_costs)
OUTPUT_TABLES = (attribution_customer_journey, channel_reporting)

# --- growthflow's own tables --------------------------------------------------------------
attribution_detail = sa.Table(
    "gf_attribution_detail",
    metadata,
    sa.Column("conv_id", TEXT, primary_key=True),
    sa.Column("session_id", TEXT, primary_key=True),
    sa.Column("initializer", FLOAT),
    sa.Column("holder", FLOAT),
    sa.Column("closer", FLOAT),
    sqlite_with_rowid=False,
)
# One row per conversion with stored attribution: who computed it, in which run, and (for
# the IHC API) a fingerprint of exactly what was sent, so a rerun can skip what is done.
attributed_conversions = sa.Table(
    "gf_attributed_conversions",
    metadata,
    sa.Column("conv_id", TEXT, primary_key=True),
    sa.Column("model", TEXT, nullable=False),
    sa.Column("run_id", TEXT, nullable=False),
    sa.Column("fingerprint", TEXT),
    sqlite_with_rowid=False,
)
# Every stored attribution row with its session's report group (channel, day), so an
# incremental report sums the attribution of a few groups through an index, without reading
# their sessions. Written and deleted with attribution_customer_journey.
attribution_keys = sa.Table(
    "gf_attribution_keys",
    metadata,
    sa.Column("conv_id", TEXT, primary_key=True),
    sa.Column("session_id", TEXT, primary_key=True),
    sa.Column("channel_name", TEXT, nullable=False),
    sa.Column("event_date", TEXT, nullable=False),
    sa.Column("ihc", FLOAT, nullable=False),
    sqlite_with_rowid=False,
)
sa.Index(
    "gf_ix_attribution_keys_group",
    attribution_keys.c.channel_name,
    attribution_keys.c.event_date,
    attribution_keys.c.conv_id,
    attribution_keys.c.ihc,
)

# Every table holding a conversion's stored attribution, replaced together.
ATTRIBUTION_TABLES = (
    attribution_customer_journey,
    attribution_detail,
    attributed_conversions,
    attribution_keys,
)
runs = sa.Table(
    "gf_runs",
    metadata,
    sa.Column("run_id", TEXT, primary_key=True),
    sa.Column("started_at", TEXT, nullable=False),
    sa.Column("finished_at", TEXT),
    sa.Column("status", TEXT, nullable=False),
    sa.Column("start_date", TEXT, nullable=False),
    sa.Column("end_date", TEXT, nullable=False),
    sa.Column("config", TEXT, nullable=False),
    sa.Column("summary", TEXT),
)
# A run's processes beat here while they work (every 30 s): a run marked running whose beat
# stopped was killed (kill -9, a lost machine), and the next run reclaims it.
run_heartbeats = sa.Table(
    "gf_run_heartbeats",
    metadata,
    sa.Column("run_id", TEXT, primary_key=True),
    sa.Column("beat_at", TEXT, nullable=False),
)
journeys = sa.Table(
    "gf_journeys",
    metadata,
    sa.Column("run_id", TEXT, primary_key=True),
    sa.Column("journey_no", sa.Integer, primary_key=True),
    sa.Column("conv_id", TEXT, nullable=False),
    sa.Column("user_id", TEXT, nullable=False),
    sa.Column("conv_ts", TEXT, nullable=False),
    sa.Column("n_candidates", sa.Integer, nullable=False),
    sa.Column("n_sessions", sa.Integer, nullable=False),
    sqlite_with_rowid=False,
)
journey_sessions = sa.Table(
    "gf_journey_sessions",
    metadata,
    sa.Column("run_id", TEXT, primary_key=True),
    sa.Column("journey_no", sa.Integer, primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True),
    sa.Column("session_id", TEXT, nullable=False),
    sa.Column("event_ts", TEXT, nullable=False),
    sa.Column("channel_name", TEXT, nullable=False),
    sa.Column("holder_engagement", sa.Integer, nullable=False),
    sa.Column("closer_engagement", sa.Integer, nullable=False),
    sa.Column("impression_interaction", sa.Integer, nullable=False),
    sqlite_with_rowid=False,
)
batches = sa.Table(
    "gf_batches",
    metadata,
    sa.Column("run_id", TEXT, primary_key=True),
    sa.Column("batch_no", sa.Integer, primary_key=True),
    sa.Column("journey_no", sa.Integer, primary_key=True),
    sqlite_with_rowid=False,
)

cost_days = sa.Table(
    "gf_cost_days",
    metadata,
    sa.Column("run_id", TEXT, nullable=False, index=True),
    sa.Column("channel_name", TEXT),
    sa.Column("event_date", TEXT),
    sa.Column("cost", FLOAT, nullable=False),
    sa.Column("sessions", sa.Integer, nullable=False),
    sa.Column("duplicates", sa.Integer, nullable=False),
)

# The (channel, day) keys whose channel_reporting rows may be stale: those of the sessions of
# every attribution replaced or deleted (old and new), written in the same transaction as the
# attribution; the next report refreshes them and deletes them in one transaction.
report_keys = sa.Table(
    "gf_report_keys",
    metadata,
    sa.Column("channel_name", TEXT, primary_key=True),
    sa.Column("event_date", TEXT, primary_key=True),
)
# The (channel, day) groups a run's incremental report refreshes (staging); `costs` = 1 for
# the groups whose cost is computed again (the cost window), 0 for those whose stored cost
# stands (their attribution changed, not their inputs).
report_window = sa.Table(
    "gf_report_window",
    metadata,
    sa.Column("run_id", TEXT, primary_key=True),
    sa.Column("channel_name", TEXT, primary_key=True),
    sa.Column("event_date", TEXT, primary_key=True),
    sa.Column("costs", sa.Integer, nullable=False),
)
STAGING_TABLES = (journeys, journey_sessions, batches, cost_days, report_window)

# --- the data-driven models (markov, shapley): what a run learned, kept per run ----------------
# One row per channel and run: its removal effect (markov) or Shapley value (shapley; the other
# is NULL) and its credited share of the window's conversions and revenue. The touchpoint
# attribution of the run shares each conversion by these credits.
model_channel_credit = sa.Table(
    "gf_model_channel_credit",
    metadata,
    sa.Column("run_id", TEXT, primary_key=True),
    sa.Column("model", TEXT, nullable=False),
    sa.Column("channel_name", TEXT, primary_key=True),
    sa.Column("removal_effect", FLOAT),
    sa.Column("shapley_value", FLOAT),
    sa.Column("conversions", FLOAT, nullable=False),
    sa.Column("revenue", FLOAT, nullable=False),
    # the same on the revenue: the removal effect on the expected revenue (markov), the
    # Shapley value of the revenue per path (shapley)
    sa.Column("revenue_effect", FLOAT),
)
# What the model was trained on, and the chain's conversion probability from start.
model_runs = sa.Table(
    "gf_model_runs",
    metadata,
    sa.Column("run_id", TEXT, primary_key=True),
    sa.Column("model", TEXT, nullable=False),
    sa.Column("settings", TEXT, nullable=False),  # order / value kind, as JSON
    sa.Column("train_start", TEXT, nullable=False),
    sa.Column("train_end", TEXT, nullable=False),
    sa.Column("distinct_paths", sa.Integer, nullable=False),
    sa.Column("conversions", sa.Integer, nullable=False),
    sa.Column("null_paths", sa.Integer, nullable=False),
    sa.Column("revenue", FLOAT, nullable=False),
    sa.Column("conversion_probability", FLOAT),  # markov
    sa.Column("merged_channels", TEXT),  # shapley: the channels merged into (other), as JSON
)
# The Markov chain's transition counts; states are the last `order` channels joined by " > ",
# and (start), (conversion), (null).
markov_transitions = sa.Table(
    "gf_markov_transitions",
    metadata,
    sa.Column("run_id", TEXT, primary_key=True),
    sa.Column("from_state", TEXT, primary_key=True),
    sa.Column("to_state", TEXT, primary_key=True),
    sa.Column("transitions", sa.BigInteger, nullable=False),
)
MODEL_TABLES = (model_channel_credit, model_runs, markov_transitions)

# Indexes growthflow adds to the user's tables (never columns or rows). The journey query
# looks sessions up by user in time order, and conversions by date.
USER_TABLE_INDEXES = (
    sa.Index(
        "gf_ix_session_sources_user_ts",
        session_sources.c.user_id,
        session_sources.c.event_date,
        session_sources.c.event_time,
    ),
    sa.Index("gf_ix_conversions_date", conversions.c.conv_date),
    # Covering index in report order: the report's GROUP BY streams with no sort.
    sa.Index(
        "gf_ix_session_sources_channel_day",
        session_sources.c.channel_name,
        session_sources.c.event_date,
        session_sources.c.session_id,
    ),
    # Covering index: the report looks up every session's cost, and with the cost in the
    # index SQLite needs one B-tree search per session instead of two.
    sa.Index("gf_ix_session_costs_cost", session_costs.c.session_id, session_costs.c.cost),
)
# Lookups by id (the orphan-cost check, the report's joins from the attribution): a table
# created without a key gets an index on its id, so no query degrades into a scan per row.
ID_LOOKUPS = ((session_sources, "session_id"), (conversions, "conv_id"))
OWN_TABLE_INDEXES = (sa.Index("gf_ix_journeys_conv", journeys.c.run_id, journeys.c.conv_id),)


def init_db(engine: sa.Engine, *, inputs: bool = True, indexes: bool = True) -> None:
    """Create whatever is missing, idempotently; never alter an existing table.

    With ``inputs=False`` the input tables must already exist (a run refuses to invent
    empty source tables); their columns are checked either way. With ``indexes=False`` the
    indexes growthflow adds to the input tables are left to a later call (``demo-data``
    leaves them to the first run, as on a user's database).
    """
    with translate_errors(engine):
        if not inputs:
            missing = missing_tables(engine, (t.name for t in INPUT_TABLES))
            if missing:
                raise DatabaseError(
                    f"missing input tables: {', '.join(missing)} (load them, or run "
                    "`growthflow attribution init-db` / `growthflow attribution demo-data`)"
                )
        new_keys = bool(missing_tables(engine, [attribution_keys.name]))
        with engine.begin() as conn:
            metadata.create_all(conn, checkfirst=True)
        check_columns(engine)
        if new_keys:  # a database attributed by an earlier version: index what it holds
            _backfill_attribution_keys(engine)
        # SQLite sorts an index's keys with helper threads: at scale 10 (4.5M sessions) the
        # two session indexes took 19.7 s with one thread, 13.7 s with two
        with engine.begin() as conn, sort_threads(conn):
            for index in (USER_TABLE_INDEXES if indexes else ()) + OWN_TABLE_INDEXES:
                index.create(conn, checkfirst=True)
        for table, column in ID_LOOKUPS if indexes else ():
            if not has_lookup_index(engine, table.name, column):
                with engine.begin() as conn:  # constant names
                    conn.execute(
                        sa.text(
                            f"CREATE INDEX IF NOT EXISTS gf_ix_{table.name}_{column} "
                            f"ON {table.name} ({column})"
                        )
                    )
        if engine.dialect.name == "postgresql":
            analyze_if_stale(engine, [t.name for t in INPUT_TABLES + ATTRIBUTION_TABLES])


def _backfill_attribution_keys(engine: sa.Engine) -> None:
    a, s, k = attribution_customer_journey, session_sources, attribution_keys
    if missing_tables(engine, [a.name, s.name]):
        return
    rows = (
        sa.select(a.c.conv_id, a.c.session_id, s.c.channel_name, s.c.event_date, a.c.ihc)
        .select_from(a.join(s, s.c.session_id == a.c.session_id))
        .where(s.c.channel_name.is_not(None), s.c.event_date.is_not(None))
    )
    with engine.begin() as conn:
        conn.execute(
            insert_ignore(conn, k).from_select(
                ["conv_id", "session_id", "channel_name", "event_date", "ihc"], rows
            )
        )


def analyze_if_stale(engine: sa.Engine, tables: list[str]) -> None:
    """ANALYZE the tables whose statistics are missing or stale, by autovacuum's default rule
    (rows changed since the last analysis > 50 + 10 % of the live rows).

    PostgreSQL plans badly without statistics: seconds instead of milliseconds for the journey
    and check queries, and a full scan for every batch's delete by conv_id. A table loaded in
    bulk, or an attribution table analysed while it was still empty, has none that fit until
    autovacuum comes by, and a server may run without autovacuum at all (the scale-10 attribute
    step took 16.3 s instead of 4.9 s, each delete scanning the whole table).
    """
    with engine.begin() as conn:
        stale = conn.execute(
            sa.text(
                "SELECT relname FROM pg_stat_user_tables WHERE schemaname = current_schema() "
                "AND relname = ANY(:tables) AND ((last_analyze IS NULL AND last_autoanalyze "
                "IS NULL) OR n_mod_since_analyze > 50 + 0.1 * n_live_tup)"
            ),
            {"tables": tables},
        ).scalars()
        for name in stale.all():
            conn.execute(sa.text(f'ANALYZE "{name}"'))


def check_columns(engine: sa.Engine) -> None:
    """Fail with one message when a table lacks a column of the contract, or when one of
    growthflow's own tables was created by another version (its columns differ)."""
    problems = []
    for table in INPUT_TABLES + OUTPUT_TABLES:
        absent = missing_columns(engine, table.name, (c.name for c in table.columns))
        if absent:
            problems.append(f"{table.name} lacks {', '.join(absent)}")
    if problems:
        raise DatabaseError("tables do not match the attribution contract: " + "; ".join(problems))
    inspector = sa.inspect(engine)
    outdated = [
        table.name
        for table in metadata.sorted_tables
        if table.name.startswith("gf_")
        and {c["name"].lower() for c in inspector.get_columns(table.name)}
        != {c.name for c in table.columns}
    ]
    if outdated:
        raise DatabaseError(
            f"growthflow's own tables {', '.join(outdated)} were created by another version of "
            "growthflow; drop them (they hold run bookkeeping only) and they are recreated"
        )
