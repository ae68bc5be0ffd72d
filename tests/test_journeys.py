"""Journey rules, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date

import pytest

from growthflow.attribution.journeys import build_journeys
from growthflow.attribution.rules import InputRules

from conftest import conversion, session


def staged(db, run_id="r1", **kw):
    rules = InputRules.for_engine(db.engine)
    stats = build_journeys(
        db.engine,
        run_id,
        date.fromisoformat(kw.pop("start", "2023-09-01")),
        date.fromisoformat(kw.pop("end", "2023-09-30")),
        rules=rules,
        **kw,
    )
    journeys = {}
    for conv_id, _position, session_id in db.rows(
        "SELECT j.conv_id, s.position, s.session_id FROM gf_journeys j "
        "JOIN gf_journey_sessions s ON s.run_id = j.run_id AND s.journey_no = j.journey_no "
        "WHERE j.run_id = :r ORDER BY j.conv_id, s.position",
        r=run_id,
    ):
        journeys.setdefault(conv_id, []).append(session_id)
    return stats, journeys


def test_sessions_strictly_before_conversion_in_time_order(db):
    db.load(
        sessions=[
            session("s3", "u", "2023-09-02", "10:00:00"),
            session("s1", "u", "2023-09-01", "23:59:59"),
            session("s2", "u", "2023-09-02", "09:59:59"),
            session("at", "u", "2023-09-02", "12:00:00"),  # exactly at the conversion: out
            session("after", "u", "2023-09-03", "00:00:00"),
            session("other", "v", "2023-09-01", "08:00:00"),  # another user
        ],
        conversions=[conversion("c", "u", "2023-09-02", "12:00:00")],
    )
    stats, journeys = staged(db)
    assert journeys == {"c": ["s1", "s2", "s3"]}
    assert (stats.conversions, stats.journeys, stats.sessions) == (1, 1, 3)


def test_equal_timestamps_are_ordered_by_session_id(db):
    db.load(
        sessions=[session(sid, "u", "2023-09-01", "10:00:00") for sid in ("b", "c", "a", "B")],
        conversions=[conversion("c1", "u", "2023-09-01", "11:00:00")],
    )
    _, journeys = staged(db)
    assert journeys["c1"] == ["B", "a", "b", "c"]  # byte order on both backends


def test_two_conversions_of_one_user_share_sessions(db):
    db.load(
        sessions=[
            session("s1", "u", "2023-09-01", "10:00:00"),
            session("s2", "u", "2023-09-02", "10:00:00"),
            session("s3", "u", "2023-09-03", "10:00:00"),
        ],
        conversions=[
            conversion("c1", "u", "2023-09-02", "11:00:00"),
            conversion("c2", "u", "2023-09-03", "11:00:00"),
        ],
    )
    _, journeys = staged(db)
    assert journeys == {"c1": ["s1", "s2"], "c2": ["s1", "s2", "s3"]}
    summary = db.run("2023-09-01", "2023-09-30")
    assert summary.rows_written == 5
    attribution = db.attribution()
    assert len(attribution) == 5
    assert sum(v for (c, _), v in attribution.items() if c == "c1") == pytest.approx(1.0, abs=1e-12)
    assert sum(v for (c, _), v in attribution.items() if c == "c2") == pytest.approx(1.0, abs=1e-12)


def test_conversions_without_earlier_sessions_are_counted_not_attributed(db):
    db.load(
        sessions=[session("late", "u", "2023-09-05", "10:00:00")],
        conversions=[
            conversion("c1", "u", "2023-09-02", "11:00:00"),
            conversion("c2", "nobody", "2023-09-02", "11:00:00"),
        ],
    )
    summary = db.run("2023-09-01", "2023-09-30")
    assert (summary.conversions, summary.journeys, summary.without_journey) == (2, 0, 2)
    assert db.attribution() == {}


def test_range_boundaries_are_inclusive(db):
    db.load(
        sessions=[session(f"s{d}", f"u{d}", "2023-08-01", "10:00:00") for d in range(1, 6)],
        conversions=[
            conversion(f"c{d}", f"u{d}", f"2023-09-0{d}", t)
            for d, t in (
                (1, "23:59:59"),
                (2, "00:00:00"),
                (3, "12:00:00"),
                (4, "23:59:59"),
                (5, "00:00:00"),
            )
        ],
    )
    _, journeys = staged(db, start="2023-09-02", end="2023-09-04")
    assert sorted(journeys) == ["c2", "c3", "c4"]


def test_long_journeys_keep_their_most_recent_sessions(db):
    sessions = [
        session(f"s{i:03d}", "u", "2023-09-01", f"{i // 60:02d}:{i % 60:02d}:00")
        for i in range(105)
    ]
    db.load(
        sessions=sessions + [session("x1", "w", "2023-09-01", "00:00:00")],
        conversions=[
            conversion("c", "u", "2023-09-02", "00:00:00"),
            conversion("short", "w", "2023-09-02", "00:00:00"),
        ],
    )
    stats, journeys = staged(db)
    assert len(journeys["c"]) == 100
    assert journeys["c"] == [f"s{i:03d}" for i in range(5, 105)]
    assert stats.truncated == 1
    stats, journeys = staged(db, run_id="r2", max_journey_sessions=3)
    assert journeys["c"] == ["s102", "s103", "s104"]
    assert stats.truncated == 1 and journeys["short"] == ["x1"]


def test_lookback_days_keeps_only_recent_sessions(db):
    db.load(
        sessions=[
            session("old", "u", "2023-09-01", "11:59:59"),
            session("edge", "u", "2023-09-01", "12:00:00"),  # exactly 7 days: kept
            session("new", "u", "2023-09-07", "12:00:00"),
        ],
        conversions=[conversion("c", "u", "2023-09-08", "12:00:00")],
    )
    _, journeys = staged(db, lookback_days=7)
    assert journeys == {"c": ["edge", "new"]}


def test_shorter_lookback_removes_stale_attribution(db):
    db.load(
        sessions=[session("old", "u", "2023-08-01", "10:00:00")],
        conversions=[conversion("c", "u", "2023-09-08", "12:00:00")],
    )
    db.run("2023-09-01", "2023-09-30")
    assert db.attribution() == {("c", "old"): 1.0}
    summary = db.run("2023-09-01", "2023-09-30", lookback_days=7)
    assert summary.without_journey == 1
    assert db.attribution() == {}


def test_empty_range_is_not_an_error(db, tmp_path):
    db.load(
        sessions=[session("s", "u", "2023-09-01", "10:00:00", channel="Organic Traffic")],
        conversions=[conversion("c", "u", "2023-09-02", "10:00:00")],
        costs=[("s", 2.5)],
    )
    summary = db.run("2024-01-01", "2024-01-31", csv_path=tmp_path / "r.csv")
    assert (summary.conversions, summary.journeys, summary.batches) == (0, 0, 0)
    assert summary.report_rows == 1  # the report still covers every channel and day
    assert (
        (tmp_path / "r.csv")
        .read_text()
        .splitlines()[1]
        .startswith("Organic Traffic,2023-09-01,2.5,0.0,0.0,,0.0")
    )


def test_staging_rows_are_removed_after_a_run(db):
    db.load(
        sessions=[session("s", "u", "2023-09-01", "10:00:00")],
        conversions=[conversion("c", "u", "2023-09-02", "10:00:00")],
    )
    summary = db.run("2023-09-01", "2023-09-30")
    for table in ("gf_journeys", "gf_journey_sessions", "gf_batches", "gf_cost_days"):
        assert db.rows(f"SELECT count(*) FROM {table}") == [(0,)]
    assert db.rows("SELECT status FROM gf_runs WHERE run_id = :r", r=summary.run_id) == [
        ("succeeded",)
    ]
    assert db.rows("SELECT conv_id, model, run_id FROM gf_attributed_conversions") == [
        ("c", "local:ihc", summary.run_id)
    ]
    assert db.rows("SELECT * FROM gf_attribution_detail") == [("c", "s", 1.0, 0.0, 1.0)]
