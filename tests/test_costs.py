"""The cost side of the report: cost and session count per (channel_name, event_date).

On SQLite the scan runs as key-range passes on several threads; these tests force many
ranges on small tables and check the result against sums computed here in Python, over
tables with the awkward rows a user's table can hold (NULL channels, days and ids,
unparsable days, costs that are NULL, text or infinite, costs without a session).
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pytest
import sqlalchemy as sa

from growthflow.attribution import costs, schema
from growthflow.attribution.costs import CostScan, aggregate_costs
from growthflow.attribution.demo import generate_demo_data
from growthflow.attribution.rules import InputRules
from growthflow.database import read_only

CHANNELS = ["Paid Search", "Organic", "Display", "Email", None]
DAYS = ["2023-09-01", "2023-09-02", "2023-09-03", "2023-02-30", None]


def awkward_tables(db, n: int = 3000, seed: int = 7):
    """Keyed input tables without NOT NULL, filled with ``n`` sessions of mixed id formats.
    Returns (sessions, costs) as inserted, for the Python reference."""
    rng = np.random.default_rng(seed)
    sqlite = db.dialect == "sqlite"
    with db.engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE session_sources (session_id text PRIMARY KEY, user_id text, "
                "event_date text, event_time text, channel_name text, holder_engagement int, "
                "closer_engagement int, impression_interaction int)"
            )
        )
        real = "real" if sqlite else "double precision"  # PostgreSQL's real has 24 bits
        conn.execute(
            sa.text(f"CREATE TABLE session_costs (session_id text PRIMARY KEY, cost {real})")
        )
        conn.execute(
            sa.text(
                "CREATE TABLE conversions (conv_id text PRIMARY KEY, user_id text, "
                "conv_date text, conv_time text, revenue real)"
            )
        )
    formats = [lambda i: f"{i * 7919 % 100003:08x}", lambda i: f"sess-{i:06d}", lambda i: str(i)]
    ids = [formats[i % 3](i) for i in range(n)]
    rng.shuffle(ids)
    sessions = [
        (
            sid,
            CHANNELS[rng.choice(5, p=[0.4, 0.3, 0.2, 0.08, 0.02])],
            DAYS[rng.choice(5, p=[0.4, 0.3, 0.25, 0.03, 0.02])],
        )
        for sid in ids
    ]
    if sqlite:  # SQLite lets a non-INTEGER primary key hold NULLs
        sessions += [(None, "Organic", "2023-09-01"), (None, None, "2023-09-02")]
    odd = ["n/a", math.inf] if sqlite else [math.nan, math.inf]
    cost_rows = []
    for i, (sid, _, _) in enumerate(sessions):
        if sid is not None and i % 4:
            value = None if i % 11 == 0 else odd[i % 2] if i % 37 == 0 else round(rng.random(), 4)
            cost_rows.append((sid, value))
    cost_rows += [("orphan-1", 5.0), ("orphan-2", 7.0)]  # costs of no session
    with db.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO session_sources VALUES (:sid, 'u', :day, '10:00:00', :ch, 1, 1, 0)"
            ),
            [{"sid": s, "day": d, "ch": c} for s, c, d in sessions],
        )
        conn.execute(
            sa.text("INSERT INTO session_costs VALUES (:sid, :cost)"),
            [{"sid": s, "cost": c} for s, c in cost_rows],
        )
    schema.init_db(db.engine)
    return sessions, dict(cost_rows)


def reference(sessions, cost_of):
    """(channel, day) -> (cost of its sessions' finite numeric costs, sessions)."""
    total: dict = defaultdict(list)
    count: dict = defaultdict(int)
    for sid, channel, day in sessions:
        cost = cost_of.get(sid) if sid is not None else None
        if isinstance(cost, float) and math.isfinite(cost):
            total[channel, day].append(cost)
        count[channel, day] += 1
    return {key: (math.fsum(total[key]), n) for key, n in count.items()}


def staged(db, run_id: str) -> dict:
    return {
        (c, d): (cost, n)
        for c, d, cost, n, dup in db.rows(
            "SELECT channel_name, event_date, cost, sessions, duplicates FROM gf_cost_days "
            "WHERE run_id = :run_id",
            run_id=run_id,
        )
        if dup == 0
    }


# Key ranges are SQLite's plan; PostgreSQL runs one statement (its hash join).
sqlite_only = pytest.mark.parametrize("db", ["sqlite"], indirect=True)


@pytest.mark.parametrize(
    ("db", "ranges", "workers"),
    [("postgresql", 1, 1), ("sqlite", 1, 1), ("sqlite", 7, 1), ("sqlite", 7, 3), ("sqlite", 60, 2)],
    indirect=["db"],
)
def test_costs_per_channel_and_day_match_python_sums(db, ranges, workers):
    sessions, cost_of = awkward_tables(db)
    rules = InputRules.for_engine(db.engine)
    assert not (rules.sessions_dedupe or rules.costs_dedupe)  # the keyed plan is under test
    stats = aggregate_costs(db.engine, "r1", rules, ranges=ranges, workers=workers)
    expected = reference(sessions, cost_of)
    got = staged(db, "r1")
    assert stats.groups == len(expected)
    # Cost rows of no session are counted, with examples, never silently dropped.
    assert [(s.table, s.count, sorted(s.examples)) for s in stats.skipped] == [
        ("session_costs", 2, ["orphan-1", "orphan-2"])
    ]
    assert set(got) == set(expected)
    for key, (cost, n) in expected.items():
        assert got[key][1] == n, key
        assert got[key][0] == pytest.approx(cost, rel=1e-12, abs=1e-12), key


def test_key_range_result_does_not_depend_on_threads(db):
    awkward_tables(db)
    rules = InputRules.for_engine(db.engine)
    aggregate_costs(db.engine, "one", rules, ranges=9, workers=1)
    aggregate_costs(db.engine, "many", rules, ranges=9, workers=4)
    assert staged(db, "one") == staged(db, "many")  # exact: partial sums are added with fsum


@sqlite_only
def test_key_ranges_hold_similar_numbers_of_sessions(db):
    sessions, _ = awkward_tables(db, n=4000)
    with read_only(db.engine) as conn:
        bounds = costs._range_bounds(conn, 8)
        assert bounds == costs._range_bounds(conn, 8)  # deterministic for the same table
    assert bounds == sorted(bounds) and len(set(bounds)) == len(bounds) == 7
    ids = sorted(s for s, _, _ in sessions if s is not None)
    edges = [0, *(sum(1 for i in ids if i < b) for b in bounds), len(ids)]
    sizes = np.diff(edges)
    assert sizes.min() > 0.5 * len(ids) / 8 and sizes.max() < 1.6 * len(ids) / 8, sizes


@sqlite_only
def test_a_cancelled_scan_runs_no_more_passes(db):
    awkward_tables(db)
    scan = CostScan(db.engine, InputRules.for_engine(db.engine), ranges=5)
    # two statements for each of 5 key ranges and the NULL ids; the NULL channels; cost rows
    assert scan.passes == 14
    scan.cancel()
    scan.work()
    assert scan.groups() == []


@sqlite_only
def test_runs_with_many_key_ranges_report_the_same_costs(db, tmp_path, monkeypatch):
    """A whole run: forcing a pass per ~40 sessions gives the same report as one pass, and a
    rerun gives identical CSV bytes."""
    generate_demo_data(db.engine, scale=0.01, seed=11)
    db.run("2023-09-01", "2023-09-10", csv_path=tmp_path / "one.csv")
    one = db.rows("SELECT channel_name, date, cost FROM channel_reporting ORDER BY 1, 2")
    monkeypatch.setattr(costs, "SESSIONS_PER_RANGE", 40)
    monkeypatch.setattr(costs, "MIN_SESSIONS_PER_SEEK", 1)
    summary = db.run("2023-09-01", "2023-09-10", csv_path=tmp_path / "a.csv")
    db.run("2023-09-01", "2023-09-10", csv_path=tmp_path / "b.csv")
    many = db.rows("SELECT channel_name, date, cost FROM channel_reporting ORDER BY 1, 2")
    assert [r[:2] for r in many] == [r[:2] for r in one]
    assert [r[2] for r in many] == pytest.approx([r[2] for r in one], rel=1e-12)
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert summary.report_rows == len(one)
