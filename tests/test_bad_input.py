"""Rows the pipeline cannot use are counted per reason and skipped; the run goes on."""

from __future__ import annotations

import logging

import pytest
import sqlalchemy as sa

from growthflow.attribution.costs import ORPHAN_REASON
from growthflow.database import create_engine

from conftest import Db, conversion, session, sqlite_work


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


def _work_of_a_keyless_run(tmp_path, n: int) -> int:
    """SQLite work (see conftest.sqlite_work) of a whole run on keyless tables with ``n``
    sessions."""
    url = f"sqlite:///{tmp_path / f'keyless_{n}.db'}"
    db = Db(url, None, create_engine(url, create=True))
    db.create_loose_tables()
    users = n // 4
    db.load(
        sessions=[
            session(f"s{i:07d}", f"u{i % users}", f"2023-09-{1 + i % 20:02d}", "10:00:00")
            for i in range(n)
        ],
        conversions=[
            conversion(f"c{u}", f"u{u}", "2023-09-25", "10:00:00") for u in range(0, users, 2)
        ],
        costs=[(f"s{i:07d}", 0.5) for i in range(0, n, 2)]
        + [(f"orphan{i}", 1.0) for i in range(n // 10)],
    )
    with sqlite_work(db.engine) as work:
        db.run("2023-09-01", "2023-09-30")
    db.engine.dispose()
    return work[0]


def test_keyless_tables_keep_a_run_near_linear(tmp_path):
    """Tables without any key or index (as users create them by hand) must not make any query
    quadratic: four times the rows may cost about four times the work, not sixteen."""
    small = _work_of_a_keyless_run(tmp_path, 2_000)
    large = _work_of_a_keyless_run(tmp_path, 8_000)
    assert large / small < 6, (small, large)


def _load_text_tables(db, sessions=(), conversions=(), costs=()) -> None:
    """The input tables as `sqlite3 .import` (or a COPY into text columns) makes them: every
    column TEXT, no keys, values inserted as the text given."""
    from growthflow.attribution import schema

    db.create_loose_tables(text=True)
    db.insert_raw(
        *([tuple(map(_as_text, r)) for r in rows] for rows in (sessions, conversions, costs))
    )
    schema.init_db(db.engine)


def _random_inputs(seed: int):
    import random

    rng = random.Random(seed)

    def amount():
        return float(rng.randint(0, 400)) if rng.random() < 0.4 else rng.randint(1, 40000) / 100

    sessions, costs, conversions = [], [], []
    for i in range(300):
        user = f"u{rng.randint(0, 40)}"
        day = f"2023-09-{rng.randint(1, 20):02d}"
        time = f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}"
        channel = rng.choice(["Paid Search", "Email", "Display", "Affiliate"])
        sessions.append(
            session(f"s{i}", user, day, time, channel, rng.randint(0, 1), rng.randint(0, 1), 0)
        )
        if rng.random() < 0.8:
            costs.append((f"s{i}", amount()))
    for j in range(60):
        day = f"2023-09-{rng.randint(5, 25):02d}"
        conversions.append(conversion(f"c{j}", f"u{rng.randint(0, 40)}", day, "12:00:00", amount()))
    return sessions, conversions, costs


def _as_text(value):
    if value is None:
        return None
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


def _figures(db, summary):
    return (
        summary.conversions,
        sorted(db.attribution().items()),
        db.rows(
            "SELECT channel_name, date, cost, ihc, ihc_revenue FROM channel_reporting "
            "ORDER BY channel_name, date"
        ),
        sorted(skipped(summary).items()),
    )


@pytest.mark.parametrize("seed", range(2))
def test_numbers_written_as_text_give_the_figures_of_a_typed_database(db, seed):
    """A challenge database imported from CSV has only TEXT columns: revenue '12.5', cost
    '150', flags '1' are the same numbers as in a typed database (issue 10, item 2)."""
    sessions, conversions, costs = _random_inputs(seed)
    db.create_loose_tables()
    db.load(sessions=sessions, conversions=conversions, costs=costs)
    typed = _figures(db, db.run("2023-09-01", "2023-09-30"))
    assert typed[0] > 0 and typed[2]
    with db.engine.begin() as conn:
        for name in ("session_sources", "conversions", "session_costs"):
            conn.execute(sa.text(f"DROP TABLE {name}"))
        conn.execute(sa.text("DELETE FROM attribution_customer_journey"))
        conn.execute(sa.text("DELETE FROM channel_reporting"))
    _load_text_tables(db, sessions, conversions, costs)
    if db.dialect == "sqlite":
        assert db.rows("SELECT DISTINCT typeof(revenue) FROM conversions") == [("text",)]
    assert _figures(db, db.run("2023-09-01", "2023-09-30")) == typed


def test_a_negative_cost_is_a_counted_bad_row_not_a_refund(db):
    """Issue 10 item 18: -20 was summed into channel_reporting without being counted."""
    db.load(
        sessions=[
            session("s1", "u", "2023-09-01", "10:00:00"),
            session("s2", "u", "2023-09-01", "11:00:00"),
            session("s3", "u", "2023-09-01", "12:00:00"),
        ],
        conversions=[conversion("c1", "u", "2023-09-02", "10:00:00", 10.0)],
        costs=[("s1", 5.0), ("s2", -20.0), ("s3", 0.0)],
    )
    counts = skipped(db.run("2023-09-01", "2023-09-30"))
    assert counts[("session_costs", "cost negative or not a number")] == 1
    assert db.rows("SELECT cost FROM channel_reporting WHERE date = '2023-09-01'") == [(5.0,)]


def test_text_that_is_not_a_number_is_a_bad_row(db):
    _load_text_tables(
        db,
        sessions=[
            session("s1", "u", "2023-09-01", "10:00:00", holder="1", closer="1", impression="0"),
            session("s2", "u", "2023-09-01", "11:00:00", holder="yes", closer="1", impression="0"),
            session(
                "s3", "u", "2023-09-01", "12:00:00", holder=" 1 ", closer="1.0", impression="0"
            ),
        ],
        conversions=[
            conversion("c1", "u", "2023-09-02", "10:00:00", " 12.5 "),
            conversion("c2", "u", "2023-09-02", "11:00:00", "12.5abc"),
            conversion("c3", "u", "2023-09-02", "12:00:00", "NaN"),
            conversion("c4", "u", "2023-09-02", "13:00:00", "1e400"),
        ],
        costs=[("s1", "150"), ("s2", "abc"), ("s3", "3.2")],
    )
    summary = db.run("2023-09-01", "2023-09-30")
    counts = skipped(summary)
    assert counts[("conversions", "revenue missing, negative or not a number")] == 3
    assert counts[("session_sources", "engagement flag not 0/1")] == 1
    assert counts[("session_costs", "cost negative or not a number")] == 1
    assert summary.conversions == 1
    assert sorted(db.attribution()) == [("c1", "s1"), ("c1", "s3")]
    [(cost, revenue)] = db.rows("SELECT SUM(cost), SUM(ihc_revenue) FROM channel_reporting")
    assert cost == pytest.approx(153.2) and revenue == pytest.approx(12.5)


@pytest.mark.parametrize("column", ["event_time", "conv_time"])
def test_hour_24_is_an_unparsable_time(db, column, tmp_path):
    """SQLite's time() reads '24:00:00' back unchanged; it is no time of day (item 3)."""
    late = "24:00:00"
    db.load(
        sessions=[
            session("s1", "u", "2023-09-01", "10:00:00"),
            session("s2", "u", "2023-09-01", late if column == "event_time" else "11:00:00"),
        ],
        conversions=[
            conversion("c1", "u", "2023-09-02", late if column == "conv_time" else "10:00:00")
        ],
    )
    summary = db.run("2023-09-01", "2023-09-30")
    table = "session_sources" if column == "event_time" else "conversions"
    assert skipped(summary)[(table, f"unparsable {column}")] == 1


def test_errors_of_the_raw_cursor_paths_are_one_clear_message(db):
    """bulk_insert and fetch_tuples use the driver's cursor directly (speed); a driver error
    there still becomes one DatabaseError message, as any statement's does."""
    from growthflow.attribution import schema
    from growthflow.database import bulk_insert, fetch_tuples, translate_errors
    from growthflow.errors import DatabaseError

    db.load()
    lost = sa.Table("gf_no_such_table", sa.MetaData(), sa.Column("x", sa.Integer))
    with pytest.raises(DatabaseError, match="cannot use database .*gf_no_such_table"):
        with translate_errors(db.engine), db.engine.begin() as conn:
            bulk_insert(conn, lost, [(1,)])
    with pytest.raises(DatabaseError, match="cannot use database .*gf_no_such_table"):
        with translate_errors(db.engine), db.engine.connect() as conn:
            fetch_tuples(conn, sa.select(lost.c.x).where(lost.c.x == sa.bindparam("v")), {"v": 1})
    with db.engine.connect() as conn:  # and the path itself works on both databases
        assert (
            fetch_tuples(
                conn,
                sa.select(schema.runs.c.run_id).where(
                    schema.runs.c.status.in_(sa.bindparam("s", expanding=True))
                ),
                {"s": ["running", "failed"]},
            )
            == []
        )
