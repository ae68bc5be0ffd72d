"""Run bookkeeping: failures, concurrency with readers, batch-by-batch storage."""

from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa

from growthflow.attribution.pipeline import RunConfig, run_attribution
from growthflow.database import read_only

from conftest import FailingProvider, conversion, session


def load_three_users(db):
    db.load(
        sessions=[session(f"s{u}", f"u{u}", "2023-09-01", "10:00:00") for u in range(3)],
        conversions=[conversion(f"c{u}", f"u{u}", "2023-09-02", "10:00:00") for u in range(3)],
        costs=[("s0", 1.0)],
    )


def config(**kw):
    return RunConfig.build(start=date(2023, 9, 1), end=date(2023, 9, 30), **kw)


@pytest.mark.parametrize("rows_per_transaction", [1, 250_000])
def test_a_failed_run_is_recorded_keeps_stored_batches_and_leaves_no_staging(
    db, monkeypatch, rows_per_transaction
):
    monkeypatch.setattr(
        "growthflow.attribution.attribute.ROWS_PER_TRANSACTION", rows_per_transaction
    )
    load_three_users(db)
    # one batch per transaction: the second call fails; else the one transaction's call does
    provider = FailingProvider(fail_on=2 if rows_per_transaction == 1 else 1)
    with pytest.raises(RuntimeError, match="provider crashed"):
        run_attribution(db.engine, config(max_journeys=1), provider=provider)
    assert db.rows("SELECT status FROM gf_runs") == [("failed",)]
    for table in ("gf_journeys", "gf_journey_sessions", "gf_batches", "gf_cost_days"):
        assert db.rows(f"SELECT count(*) FROM {table}") == [(0,)]
    # Whole batches per transaction: with one batch per transaction the first batch is
    # stored; with the default all three share the failed transaction. Nothing partial.
    assert len(db.attribution()) == (1 if rows_per_transaction == 1 else 0)
    summary = run_attribution(db.engine, config(max_journeys=1))
    assert summary.batches == 3 and len(db.attribution()) == 3


def test_a_reader_holding_a_snapshot_does_not_break_a_run(db):
    load_three_users(db)
    with read_only(db.engine) as reader:
        reader.execute(sa.text("SELECT count(*) FROM session_sources")).scalar()  # opens a read
        summary = run_attribution(db.engine, config(max_journeys=1))
        assert summary.rows_written == 3
        reader.rollback()
    assert db.rows("SELECT SUM(ihc) FROM channel_reporting") == [(3.0,)]


def test_a_later_run_reclaims_runs_that_stopped_beating_and_spares_live_ones(db):
    """Issue 10 item 10: after kill -9 a run stayed 'running' forever with its staging rows."""
    from datetime import UTC, datetime, timedelta

    from growthflow.attribution.batches import plan_batches
    from growthflow.attribution.journeys import build_journeys
    from growthflow.attribution.pipeline import start_run
    from growthflow.attribution.rules import InputRules
    from growthflow.attribution.runs import heartbeat

    load_three_users(db)
    run_attribution(db.engine, config())  # creates the tables
    rules = InputRules.for_engine(db.engine)
    long_ago = (datetime.now(UTC) - timedelta(hours=2)).isoformat(timespec="seconds")
    for run_id in ("dead-before-first-beat", "dead-after-beats", "alive"):
        start_run(db.engine, run_id, config())
        build_journeys(db.engine, run_id, date(2023, 9, 1), date(2023, 9, 30), rules=rules)
        plan_batches(db.engine, run_id, max_journeys=100, max_sessions=3000)
    with db.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE gf_runs SET started_at = :t WHERE run_id LIKE 'dead%'"), {"t": long_ago}
        )
        conn.execute(
            sa.text("INSERT INTO gf_run_heartbeats VALUES ('dead-after-beats', :t)"),
            {"t": long_ago},
        )
        conn.execute(
            sa.text("UPDATE gf_runs SET started_at = :t WHERE run_id = 'alive'"), {"t": long_ago}
        )

    def staged(run_id):
        return sum(
            db.rows(f"SELECT COUNT(*) FROM {t} WHERE run_id = '{run_id}'")[0][0]
            for t in ("gf_journeys", "gf_journey_sessions", "gf_batches")
        )

    with heartbeat(db.engine, "alive"):  # started long ago, but beating now
        run_attribution(db.engine, config())
    status = dict(db.rows("SELECT run_id, status FROM gf_runs"))
    assert status["dead-before-first-beat"] == status["dead-after-beats"] == "abandoned"
    assert staged("dead-before-first-beat") == staged("dead-after-beats") == 0
    assert status["alive"] == "running" and staged("alive") > 0
    assert db.rows("SELECT run_id FROM gf_run_heartbeats") == [("alive",)]
    assert sorted(status.values()).count("succeeded") == 2
