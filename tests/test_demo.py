"""Demo data: deterministic per seed, and shaped like the challenge database."""

from __future__ import annotations

import hashlib
import re
from datetime import date

import pytest

from growthflow.attribution import demo
from growthflow.attribution.journeys import build_journeys
from growthflow.attribution.rules import InputRules
from growthflow.database import create_engine


def fingerprint(engine) -> str:
    digest = hashlib.sha256()
    with engine.connect() as conn:
        for table in ("session_sources", "conversions", "session_costs"):
            for row in conn.exec_driver_sql(f"SELECT * FROM {table} ORDER BY 1"):
                digest.update(repr(tuple(row)).encode())
    return digest.hexdigest()


def test_same_seed_same_data(tmp_path):
    engines = [create_engine(f"sqlite:///{tmp_path / f'{i}.db'}", create=True) for i in range(3)]
    for engine, seed in zip(engines, (11, 11, 12), strict=True):
        demo.generate_demo_data(engine, scale=0.01, seed=seed)
    a, b, c = (fingerprint(e) for e in engines)
    assert a == b != c


def test_rows_are_written_in_id_order_across_units(tmp_path, monkeypatch):
    """Each unit's sessions and costs are written in id order, above the units before it, so
    the id indexes are appended to (a unit used to rewrite the whole index: scale 10 took
    139 s); the ids stay 64-hex, unique, and spread over the whole id space."""
    monkeypatch.setattr(demo, "SESSIONS_PER_UNIT", 4_000)
    monkeypatch.setattr(demo, "CONVERSIONS_PER_UNIT", 40)
    engine = create_engine(f"sqlite:///{tmp_path / 'units.db'}", create=True)
    stats = demo.generate_demo_data(engine, scale=4, seed=3)
    assert stats.sessions == 16_000
    with engine.connect() as conn:
        for table in ("session_sources", "session_costs"):
            ids = conn.exec_driver_sql(f"SELECT session_id FROM {table} ORDER BY rowid")
            ids = ids.scalars().all()
            assert ids == sorted(ids) and len(set(ids)) == len(ids)
            assert all(re.fullmatch(r"[0-9a-f]{64}", i) for i in ids)
            heads = [int(i[0], 16) for i in ids]
            assert set(heads) == set(range(16))  # the whole space, not one slice of it
        orphans = conn.exec_driver_sql(
            "SELECT COUNT(*) FROM session_costs k LEFT JOIN session_sources s "
            "ON s.session_id = k.session_id WHERE s.session_id IS NULL"
        ).scalar()
        assert orphans == 0


def test_shape_of_the_challenge(tmp_path, monkeypatch):
    # The full 2,000 conversions, with fewer browsing-only sessions to keep the test fast.
    monkeypatch.setattr(demo, "SESSIONS_PER_UNIT", 30_000)
    engine = create_engine(f"sqlite:///{tmp_path / 'shape.db'}", create=True)
    stats = demo.generate_demo_data(engine, scale=1, seed=42)
    assert (stats.sessions, stats.conversions) == (30_000, 2_000)
    with engine.connect() as conn:
        q = conn.exec_driver_sql
        assert q("SELECT COUNT(DISTINCT channel_name) FROM session_sources").scalar() == 16
        days = q(
            "SELECT MIN(event_date), MAX(event_date), COUNT(DISTINCT event_date) "
            "FROM session_sources"
        ).one()
        assert tuple(days) == ("2023-09-01", "2023-09-10", 10)
        ids = q("SELECT session_id FROM session_sources LIMIT 50").scalars().all()
        ids += q("SELECT conv_id FROM conversions LIMIT 50").scalars().all()
        assert all(re.fullmatch(r"[0-9a-f]{64}", i) for i in ids)
        holder = q("SELECT AVG(holder_engagement) FROM session_sources").scalar()
        assert 0.8 < holder < 0.95
        free = q(
            "SELECT COUNT(*) FROM session_sources s LEFT JOIN session_costs k "
            "ON k.session_id = s.session_id WHERE s.channel_name = 'Organic Traffic' "
            "AND k.cost IS NOT NULL"
        ).scalar()
        assert free == 0
        paid = q(
            "SELECT AVG(k.cost) FROM session_sources s JOIN session_costs k "
            "ON k.session_id = s.session_id WHERE s.channel_name = 'Paid Search Non Brand'"
        ).scalar()
        assert 0.5 < paid < 2.0
    journeys = build_journeys(
        engine, "shape", date(2023, 9, 1), date(2023, 9, 10), rules=InputRules.for_engine(engine)
    )
    with engine.connect() as conn:
        lengths = (
            conn.exec_driver_sql("SELECT n_sessions FROM gf_journeys WHERE n_sessions > 0")
            .scalars()
            .all()
        )
    assert journeys.conversions == 2_000
    assert lengths.count(1) / len(lengths) == pytest.approx(0.58, abs=0.04)
    assert 25 <= max(lengths) <= 45
    assert 0 < journeys.without_journey < 100  # about 2 %
