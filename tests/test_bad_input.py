"""Rows the pipeline cannot use are counted per reason and skipped; the run goes on."""

from __future__ import annotations

import logging

import pytest
import sqlalchemy as sa

from growthflow.attribution.costs import ORPHAN_REASON

from conftest import conversion, session


def skipped(summary):
    return {(s.table, s.reason): s.count for s in summary.skipped}


def test_bad_rows_are_counted_and_skipped(db, caplog):
    nan = float("nan")
    db.create_loose_tables()
    db.load(
        sessions=[
            session("ok1", "u", "2023-09-01", "10:00:00"),
            session("bad_date", "u", "2023-02-30", "10:00:00"),
            session("bad_date2", "u", "2023/09/01", "10:00:00"),
            session("bad_time", "u", "2023-09-01", "25:00:00"),
            session("bad_time2", "u", "2023-09-01", "9:00"),
            session("bad_flag", "u", "2023-09-01", "11:00:00", holder=2),
            session("ok2", "w", "2023-09-01", "10:00:00"),
            session("elsewhere", "nobody", "2023-09-01", "10:00:00"),
        ],
        conversions=[
            conversion("c_ok", "u", "2023-09-02", "10:00:00", 10.0),
            conversion("c_neg", "w", "2023-09-02", "10:00:00", -5.0),
            conversion("c_nan", "w", "2023-09-02", "11:00:00", nan),
            conversion("c_date", "w", "2023-13-02", "10:00:00", 1.0),
            conversion("c_time", "w", "2023-09-02", "10:61:00", 1.0),
        ],
        costs=[("ok1", 1.0), ("bad_time", 2.0)],
    )
    with caplog.at_level(logging.WARNING):
        summary = db.run("2023-09-01", "2023-09-30")
    counts = skipped(summary)
    assert counts[("session_sources", "unparsable event_date")] == 2
    assert counts[("session_sources", "unparsable event_time")] == 2
    assert counts[("session_sources", "engagement flag not 0/1")] == 1
    assert counts[("conversions", "revenue missing, negative or not a number")] == 2
    assert counts[("conversions", "unparsable conv_date")] == 1
    assert counts[("conversions", "unparsable conv_time")] == 1
    assert summary.conversions == 1 and summary.journeys == 1
    assert db.attribution() == {("c_ok", "ok1"): 1.0}
    assert "c_neg" in caplog.text and "bad_flag" in caplog.text  # first ids are logged
    # The spend of a session with a bad time is still real: reported under its channel/day.
    assert db.rows("SELECT cost FROM channel_reporting WHERE date = '2023-09-01'") == [(3.0,)]
    # Rows whose day cannot be placed are not reported, and are counted.
    assert ("session_sources", "missing channel_name or unparsable event_date (report)") in counts


def test_keyless_user_tables_with_duplicate_ids(db):
    db.create_loose_tables()
    db.load(
        sessions=[
            session("s1", "u", "2023-09-01", "10:00:00"),
            session("dup", "u", "2023-09-01", "11:00:00"),
            session("dup", "u", "2023-09-01", "12:00:00"),
            session("s2", "u", "2023-09-01", "13:00:00", channel=None),
        ],
        conversions=[
            conversion("c1", "u", "2023-09-02", "10:00:00"),
            conversion("cd", "u", "2023-09-02", "10:00:00"),
            conversion("cd", "u", "2023-09-03", "10:00:00"),
        ],
        costs=[("s1", 1.0), ("s1", 1.0), ("dup", 3.0), ("ghost", 2.0)],
    )
    summary = db.run("2023-09-01", "2023-09-30")
    counts = skipped(summary)
    assert counts[("session_costs", ORPHAN_REASON)] == 1  # a cost of no session
    assert counts[("session_sources", "duplicate session_id")] == 2
    assert counts[("session_sources", "missing channel_name")] == 1
    assert counts[("conversions", "duplicate conv_id")] == 2
    assert counts[("session_costs", "duplicate session_id")] == 2
    assert counts[("session_sources", "duplicate session_id (report)")] == 2
    assert db.attribution() == {("c1", "s1"): 1.0}
    # s1's duplicated cost rows count as 0; dup sessions are not reported at all.
    assert db.rows("SELECT channel_name, cost FROM channel_reporting") == [
        ("Paid Search Brand", 0.0)
    ]


@pytest.mark.parametrize("missing", ["conversions", "session_costs"])
def test_missing_input_table_is_one_clear_error(db, missing):
    from growthflow.errors import DatabaseError

    db.load(sessions=[session("s", "u", "2023-09-01", "10:00:00")])
    with db.engine.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE {missing}"))
    with pytest.raises(DatabaseError, match=f"missing input tables: {missing}"):
        db.run("2023-09-01", "2023-09-30")


def test_missing_column_is_one_clear_error(db):
    from growthflow.errors import DatabaseError

    db.load()
    with db.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE conversions"))
        conn.execute(
            sa.text("CREATE TABLE conversions (conv_id text, user_id text, conv_date text)")
        )
    with pytest.raises(DatabaseError, match="conversions lacks conv_time, revenue"):
        db.run("2023-09-01", "2023-09-30")
