"""Run bookkeeping: failures, concurrency with readers, batch-by-batch storage."""

from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa

from growthflow.attribution.pipeline import RunConfig, run_attribution
from growthflow.attribution.providers import LocalProvider
from growthflow.database import read_only

from conftest import conversion, session


class FailingProvider(LocalProvider):
    """Attributes the first batch, then fails: a crash half-way through a run."""

    def __init__(self):
        super().__init__("linear")
        self.calls = 0

    def attribute(self, batch):
        self.calls += 1
        if self.calls > 1:
            raise RuntimeError("provider crashed")
        return super().attribute(batch)


def load_three_users(db):
    db.load(
        sessions=[session(f"s{u}", f"u{u}", "2023-09-01", "10:00:00") for u in range(3)],
        conversions=[conversion(f"c{u}", f"u{u}", "2023-09-02", "10:00:00") for u in range(3)],
        costs=[("s0", 1.0)],
    )


def config(**kw):
    return RunConfig.build(start=date(2023, 9, 1), end=date(2023, 9, 30), **kw)


def test_a_failed_run_is_recorded_keeps_stored_batches_and_leaves_no_staging(db):
    load_three_users(db)
    provider = FailingProvider()
    with pytest.raises(RuntimeError, match="provider crashed"):
        run_attribution(db.engine, config(max_journeys=1), provider=provider)
    assert db.rows("SELECT status FROM gf_runs") == [("failed",)]
    for table in ("gf_journeys", "gf_journey_sessions", "gf_batches", "gf_cost_days"):
        assert db.rows(f"SELECT count(*) FROM {table}") == [(0,)]
    # The first batch was stored in its own transaction; nothing partial of the others.
    assert len(db.attribution()) == 1
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
