"""channel_reporting and the CSV export, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import os
from datetime import date

import pytest
import sqlalchemy as sa

from growthflow.attribution import schema
from growthflow.attribution.demo import generate_demo_data
from growthflow.attribution.export import HEADER, export_csv
from growthflow.attribution.pipeline import RunConfig, run_attribution

from conftest import conversion, session


def report(db):
    return {
        (ch, d): (cost, ihc, rev)
        for ch, d, cost, ihc, rev in db.rows(
            "SELECT channel_name, date, cost, ihc, ihc_revenue FROM channel_reporting"
        )
    }


@pytest.fixture
def small(db):
    db.load(
        sessions=[
            session("a1", "u", "2023-09-01", "10:00:00", "Paid"),
            session("a2", "u", "2023-09-02", "10:00:00", "Organic"),
            session("b1", "v", "2023-09-02", "09:00:00", "Paid"),
            session("n1", "x", "2023-09-02", "09:00:00", "Display"),  # cost, never attributed
            session("n2", "x", "2023-09-03", "09:00:00", "Paid"),  # NULL cost row
            session("n3", "x", "2023-09-03", "10:00:00", "Paid"),  # no cost row
        ],
        conversions=[
            conversion("cu", "u", "2023-09-02", "11:00:00", 200.0),
            conversion("cv", "v", "2023-09-02", "12:00:00", 50.0),
        ],
        costs=[("a1", 1.5), ("a2", None), ("b1", 2.0), ("n1", 4.0), ("n2", None)],
    )
    return db


def test_channel_reporting_rows_and_totals(small, tmp_path):
    db = small
    db.run("2023-09-01", "2023-09-30", model="linear")
    rows = report(db)
    assert set(rows) == {
        ("Paid", "2023-09-01"),
        ("Organic", "2023-09-02"),
        ("Paid", "2023-09-02"),
        ("Display", "2023-09-02"),
        ("Paid", "2023-09-03"),
    }
    assert rows[("Paid", "2023-09-01")] == pytest.approx((1.5, 0.5, 100.0))
    assert rows[("Organic", "2023-09-02")] == pytest.approx((0.0, 0.5, 100.0))
    assert rows[("Paid", "2023-09-02")] == pytest.approx((2.0, 1.0, 50.0))
    assert rows[("Display", "2023-09-02")] == pytest.approx((4.0, 0.0, 0.0))  # cost, no credit
    assert rows[("Paid", "2023-09-03")] == pytest.approx((0.0, 0.0, 0.0))  # NULL and missing
    total_cost = db.rows("SELECT SUM(cost) FROM session_costs")[0][0]
    assert sum(r[0] for r in rows.values()) == pytest.approx(total_cost)
    assert sum(r[1] for r in rows.values()) == pytest.approx(2.0)  # attributed conversions
    assert sum(r[2] for r in rows.values()) == pytest.approx(250.0)  # their revenue


def test_csv_format(small, tmp_path):
    small.run("2023-09-01", "2023-09-30", model="linear", csv_path=tmp_path / "out.csv")
    text = (tmp_path / "out.csv").read_text()
    lines = text.splitlines()
    assert lines[0] == ",".join(HEADER)
    assert lines[1:] == [
        "Display,2023-09-02,4.0,0.0,0.0,,0.0",
        "Organic,2023-09-02,0.0,0.5,100.0,0.0,",
        "Paid,2023-09-01,1.5,0.5,100.0,3.0,66.66666666666667",
        "Paid,2023-09-02,2.0,1.0,50.0,2.0,25.0",
        "Paid,2023-09-03,0.0,0.0,0.0,,",
    ]
    assert "inf" not in text and "nan" not in text.lower()
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "out.csv").stat().st_mode & 0o777 == 0o666 & ~umask
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # none left


def test_a_session_in_two_journeys_counts_its_cost_once(db):
    db.load(
        sessions=[session("s1", "u", "2023-09-01", "10:00:00", "Paid")],
        conversions=[
            conversion("c1", "u", "2023-09-02", "10:00:00", 10.0),
            conversion("c2", "u", "2023-09-03", "10:00:00", 30.0),
        ],
        costs=[("s1", 5.0)],
    )
    db.run("2023-09-01", "2023-09-30")
    assert report(db) == {("Paid", "2023-09-01"): pytest.approx((5.0, 2.0, 40.0))}


def snapshot(db):
    tables = (
        "attribution_customer_journey",
        "channel_reporting",
        "gf_attribution_detail",
        "gf_attributed_conversions",
    )
    return {
        t: db.rows(f"SELECT * FROM {t} ORDER BY 1, 2")
        if t != "gf_attributed_conversions"
        else db.rows("SELECT conv_id, model, fingerprint FROM gf_attributed_conversions ORDER BY 1")
        for t in tables
    }


def test_rerun_gives_identical_tables_and_csv_bytes(db, tmp_path):
    generate_demo_data(db.engine, scale=0.01, seed=3)
    first = db.run("2023-09-01", "2023-09-07", csv_path=tmp_path / "a.csv")
    before = snapshot(db)
    second = db.run("2023-09-01", "2023-09-07", csv_path=tmp_path / "b.csv")
    assert snapshot(db) == before
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert first.rows_written > 0 and (second.rows_written, second.unchanged) == (0, first.journeys)
    # recomputed and rewritten, it is the same again
    cfg = RunConfig.build(start=date(2023, 9, 1), end=date(2023, 9, 7))
    third = run_attribution(db.engine, cfg, csv_path=tmp_path / "c.csv", recompute=True)
    assert (third.rows_written, third.unchanged) == (first.rows_written, 0)
    assert snapshot(db) == before
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "c.csv").read_bytes()
    assert len(before["attribution_customer_journey"]) == first.sessions
    # An overlapping range replaces only its own conversions, never duplicates them.
    db.run("2023-09-05", "2023-09-10")
    keys = db.rows("SELECT conv_id, session_id FROM attribution_customer_journey")
    assert len(keys) == len(set(keys))
    per_conversion = db.rows(
        "SELECT conv_id, SUM(ihc) FROM attribution_customer_journey GROUP BY conv_id"
    )
    assert all(abs(total - 1) < 1e-9 for _, total in per_conversion)


def test_demo_totals_match_inputs(db, tmp_path):
    generate_demo_data(db.engine, scale=0.02, seed=5)
    summary = db.run("2023-09-01", "2023-09-10", csv_path=tmp_path / "r.csv")
    (cost_total,) = db.rows("SELECT SUM(cost) FROM session_costs")[0]
    (n_attributed,) = db.rows("SELECT COUNT(DISTINCT conv_id) FROM attribution_customer_journey")[0]
    (revenue,) = db.rows(
        "SELECT SUM(revenue) FROM conversions WHERE conv_id IN "
        "(SELECT conv_id FROM attribution_customer_journey)"
    )[0]
    cost, ihc, ihc_revenue = db.rows(
        "SELECT SUM(cost), SUM(ihc), SUM(ihc_revenue) FROM channel_reporting"
    )[0]
    assert cost == pytest.approx(cost_total, rel=1e-12)
    assert ihc == pytest.approx(n_attributed, rel=1e-12)
    assert ihc == pytest.approx(summary.journeys, rel=1e-12)
    assert ihc_revenue == pytest.approx(revenue, rel=1e-12)
    with open(tmp_path / "r.csv") as f:
        rows = list(csv.DictReader(f))
    assert (
        len(rows) == summary.report_rows == db.rows("SELECT COUNT(*) FROM channel_reporting")[0][0]
    )
    assert [(r["channel_name"], r["date"]) for r in rows] == sorted(
        (r["channel_name"], r["date"]) for r in rows
    )


def test_export_without_rerun(small, tmp_path):
    small.run("2023-09-01", "2023-09-30", model="linear", csv_path=tmp_path / "run.csv")
    assert export_csv(small.engine, tmp_path / "export.csv") == 5
    assert (tmp_path / "run.csv").read_bytes() == (tmp_path / "export.csv").read_bytes()


def test_init_db_never_alters_existing_tables(db):
    with db.engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE channel_reporting (channel_name text, date text, "
                "cost real, ihc real, ihc_revenue real, note text)"
            )
        )
    schema.init_db(db.engine)
    schema.init_db(db.engine)
    cols = [c["name"] for c in sa.inspect(db.engine).get_columns("channel_reporting")]
    assert cols == ["channel_name", "date", "cost", "ihc", "ihc_revenue", "note"]


@pytest.mark.parametrize("db", ["postgresql"], indirect=True)
def test_init_db_refreshes_statistics_that_went_stale(db):
    """An attribution table analysed while empty, then filled, is analysed again by the next
    run's init_db (with autovacuum off, as on this machine's server, nothing else would), so
    each batch's delete by conv_id is an index lookup rather than a full scan."""
    schema.init_db(db.engine)  # analyses the empty attribution tables

    def reltuples() -> float:
        return db.rows(
            "SELECT reltuples FROM pg_class WHERE relname = 'attribution_customer_journey' "
            "AND relnamespace = to_regnamespace(current_schema())"
        )[0][0]

    assert reltuples() <= 0
    with db.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO attribution_customer_journey "
                "SELECT 'c' || (i / 4), 's' || i, 0.25 FROM generate_series(0, 19999) i"
            )
        )
    with db.engine.connect() as conn:  # make the row counts visible to other sessions now
        conn.execute(sa.text("SELECT pg_stat_force_next_flush()"))
        conn.commit()
    schema.init_db(db.engine)
    assert reltuples() == pytest.approx(20_000, rel=0.05)
    with db.engine.connect() as conn:
        plan = "\n".join(
            conn.execute(
                sa.text(
                    "EXPLAIN DELETE FROM attribution_customer_journey "
                    "WHERE conv_id = ANY(ARRAY['c1', 'c2', 'c3'])"
                )
            ).scalars()
        )
    assert "Index" in plan and "Seq Scan" not in plan, plan


def test_own_tables_from_another_version_give_a_clear_message(db):
    from growthflow.errors import DatabaseError

    schema.init_db(db.engine)
    with db.engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE gf_attribution_detail ADD COLUMN model text"))
    with pytest.raises(DatabaseError, match="gf_attribution_detail were created by another"):
        schema.init_db(db.engine)


@pytest.mark.parametrize(
    "model", ["ihc", "linear", "first-touch", "last-touch", "position-based", "time-decay"]
)
def test_stored_ihc_sums_to_one_per_conversion_for_every_model(db, model):
    generate_demo_data(db.engine, scale=0.01, seed=8)
    summary = db.run("2023-09-01", "2023-09-10", model=model)
    sums = db.rows("SELECT conv_id, SUM(ihc) FROM attribution_customer_journey GROUP BY conv_id")
    assert len(sums) == summary.journeys > 0
    assert all(abs(total - 1) < 1e-12 for _, total in sums)
    (stored_model,) = db.rows("SELECT DISTINCT model FROM gf_attributed_conversions")[0]
    assert stored_model == f"local:{model}"
