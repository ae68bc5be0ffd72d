"""Incremental attribution runs (issue 11): a run refreshes the channel_reporting rows of the
days it touched, and they equal a full rebuild's whenever the inputs outside its window did
not change; `report --full` restores the rest; the work of a daily run follows the day."""

from __future__ import annotations

import random
import subprocess
import sys
from datetime import date, timedelta

import pytest
import sqlalchemy as sa

from growthflow.attribution import schema
from growthflow.attribution.demo import generate_demo_data
from growthflow.attribution.pipeline import RunConfig, run_attribution, update_report
from growthflow.database import create_engine

from conftest import FailingProvider, conversion, session, sqlite_work

CHANNELS = ("Paid", "Organic", "Display", "Email")
DAY0 = date(2023, 9, 1)


def day(n: int) -> str:
    return (DAY0 + timedelta(days=n)).isoformat()


def report(db) -> dict:
    """channel_reporting exactly as stored (no rounding: a refresh must equal a rebuild)."""
    return {
        (ch, d): (cost, ihc, rev)
        for ch, d, cost, ihc, rev in db.rows(
            "SELECT channel_name, date, cost, ihc, ihc_revenue FROM channel_reporting"
        )
    }


def rebuilt(db) -> dict:
    """The report a full rebuild gives, leaving the database's report (and its stale days)
    as they were."""
    saved = {
        t: db.rows(f"SELECT * FROM {t.name}")
        for t in (schema.channel_reporting, schema.report_keys)
    }
    update_report(db.engine, full=True)
    after = report(db)
    with db.engine.begin() as conn:
        for table, rows in saved.items():
            conn.execute(sa.delete(table))
            names = [c.name for c in table.columns]
            if rows:
                conn.execute(sa.insert(table), [dict(zip(names, r, strict=True)) for r in rows])
    return after


class History:
    """Random sessions, conversions and costs, day by day: users come back over several days,
    some convert twice, costs are awkward binary fractions, a few sessions have no cost."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.n = 0

    def day(self, n: int, users: int = 12, prefix: str = "u") -> tuple[list, list, list]:
        rng, sessions, conversions, costs = self.rng, [], [], []
        for _ in range(users):
            user = f"{prefix}{rng.randrange(30)}"
            for _ in range(rng.randint(1, 4)):
                self.n += 1
                sid = f"s{self.n:05d}"
                t = f"{rng.randrange(0, 23):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}"
                sessions.append(
                    session(sid, user, day(n), t, rng.choice(CHANNELS), rng.randint(0, 1))
                )
                if rng.random() < 0.8:
                    costs.append((sid, round(rng.random() * 3, 6) / 7))
            if rng.random() < 0.4:
                self.n += 1
                conversions.append(
                    conversion(f"c{self.n:05d}", user, day(n), "23:30:00", rng.random() * 300)
                )
        return sessions, conversions, costs


def run(db, start: int, end: int, **config):
    cfg = RunConfig.build(
        start=DAY0 + timedelta(days=start), end=DAY0 + timedelta(days=end), **config
    )
    return run_attribution(db.engine, cfg)


@pytest.mark.parametrize("seed", range(3))
def test_an_incremental_run_equals_a_full_rebuild(db, seed):
    history = History(seed)
    for n in range(6):
        db.load(*history.day(n))
    first = run(db, 0, 5)
    assert first.report_days is None  # no report yet: a full one
    assert report(db) == rebuilt(db)

    # A new day whose journeys reach back into earlier days, then a daily run.
    db.load(*history.day(6, users=20))
    daily = run(db, 6, 6)
    assert daily.report_days is not None
    assert report(db) == rebuilt(db)

    # Another model over an old range: the attribution of old days changes, old and new rows.
    again = run(db, 2, 3, model="linear")
    assert again.report_days is not None
    assert report(db) == rebuilt(db)

    # A conversion moved before all its sessions (to day 0, 00:00:00) loses its journey: its
    # attribution is deleted, from days outside the run's range [day 0, day 0].
    cid = db.rows(
        "SELECT a.conv_id FROM attribution_customer_journey a JOIN session_sources s "
        "ON s.session_id = a.session_id WHERE s.event_date > :d ORDER BY a.conv_id LIMIT 1",
        d=day(1),
    )[0][0]
    with db.engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE conversions SET conv_date = :d, conv_time = '00:00:00' WHERE conv_id = :c"
            ),
            {"d": day(0), "c": cid},
        )
    assert run(db, 0, 0).without_journey >= 1
    assert not db.rows("SELECT 1 FROM attribution_customer_journey WHERE conv_id = :c", c=cid)
    assert report(db) == rebuilt(db)
    assert db.rows("SELECT * FROM gf_report_keys") == []


def test_costs_outside_the_window_need_a_full_report(db, tmp_path):
    history = History(7)
    for n in range(4):
        db.load(*history.day(n))
    run(db, 0, 3)
    full = report(db)
    sid, channel = db.rows(
        "SELECT s.session_id, s.channel_name FROM session_sources s JOIN session_costs k "
        "ON k.session_id = s.session_id WHERE s.event_date = :d LIMIT 1",
        d=day(0),
    )[0]
    with db.engine.begin() as conn:  # spend back-filled on day 0
        conn.execute(
            sa.text("UPDATE session_costs SET cost = cost + 1000 WHERE session_id = :s"),
            {"s": sid},
        )
    db.load(*history.day(4, prefix="new"))  # new users: their journeys stay on day 4
    assert run(db, 4, 4).report_days == 1
    assert report(db)[(channel, day(0))] == full[(channel, day(0))]  # not seen
    run(db, 4, 4, report_window_days=4)  # a wider window sees it
    assert report(db)[(channel, day(0))][0] == pytest.approx(full[(channel, day(0))][0] + 1000)
    assert report(db) == rebuilt(db)

    with db.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE session_costs SET cost = cost + 1000 WHERE session_id = :s"),
            {"s": sid},
        )
    cli = subprocess.run(
        [sys.executable, "-m", "growthflow", "attribution", "report", "--full", *db.cli_args()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 0, cli.stderr
    assert "rebuilt" in cli.stdout
    assert report(db)[(channel, day(0))][0] == pytest.approx(full[(channel, day(0))][0] + 2000)
    assert report(db) == rebuilt(db)


def test_a_run_that_dies_before_its_report_is_caught_up_by_the_next(db, monkeypatch):
    # one batch per transaction: the first batch's attribution commits before the failure
    monkeypatch.setattr("growthflow.attribution.attribute.ROWS_PER_TRANSACTION", 1)
    history = History(3)
    for n in range(5):
        db.load(*history.day(n, users=25))
    run(db, 0, 4)
    cfg = RunConfig.build(start=DAY0, end=DAY0 + timedelta(days=4), max_journeys=3)
    with pytest.raises(RuntimeError, match="provider crashed"):
        run_attribution(db.engine, cfg, provider=FailingProvider())
    assert report(db) != rebuilt(db)  # the first batch's attribution changed, not the report
    assert db.rows("SELECT * FROM gf_report_keys")  # ... and its days wait
    db.load(*history.day(5))
    run(db, 5, 5)  # another range: it refreshes the waiting days too
    assert report(db) == rebuilt(db)


def _work_of_a_daily_run(tmp_path, days: int) -> int:
    engine = create_engine(f"sqlite:///{tmp_path / f'history_{days}.db'}", create=True)
    generate_demo_data(engine, scale=0.03, days=days, seed=5)
    last = DAY0 + timedelta(days=days - 1)
    run_attribution(engine, RunConfig.build(start=DAY0, end=last - timedelta(days=1)))
    with sqlite_work(engine) as work:
        summary = run_attribution(engine, RunConfig.build(start=last, end=last))
    assert summary.report_days is not None and summary.conversions > 0
    engine.dispose()
    return work[0]


def test_the_work_of_a_daily_run_follows_the_day_not_the_history(tmp_path):
    """The same daily volume, 4 or 16 days of history: a 1-day run does about the same work
    (SQLite VM instructions, the same on any machine). Before: the report and the checks
    read the whole history (the work grew about 4x)."""
    short, long = _work_of_a_daily_run(tmp_path, 4), _work_of_a_daily_run(tmp_path, 16)
    assert long / short < 1.5, (short, long)


def test_a_failing_batch_rolls_back_its_whole_transaction(db):
    """Local models write whole batches per transaction (issue 11 item 4): a failure leaves
    every conversion with its old attribution, never a mix."""
    history = History(4)
    for n in range(4):
        db.load(*history.day(n, users=25))
    run(db, 0, 3)
    before = db.attribution()
    cfg = RunConfig.build(start=DAY0, end=DAY0 + timedelta(days=3), max_journeys=3)
    with pytest.raises(RuntimeError, match="provider crashed"):  # several batches, one call
        run_attribution(db.engine, cfg, provider=FailingProvider(fail_on=1))
    assert db.attribution() == before
    assert db.rows("SELECT * FROM gf_report_keys") == []


def test_a_database_attributed_by_an_earlier_version_gets_its_attribution_keys(db):
    """gf_attribution_keys is new: a database attributed before it existed has it filled from
    attribution_customer_journey, so a later incremental run still finds the old groups."""
    history = History(9)
    for n in range(5):
        db.load(*history.day(n))
    run(db, 0, 4)
    with db.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE gf_attribution_keys"))
    run(db, 1, 2, model="first-touch")  # replaces attribution on old days
    assert db.rows("SELECT count(*) FROM gf_attribution_keys") == db.rows(
        "SELECT count(*) FROM attribution_customer_journey"
    )
    assert report(db) == rebuilt(db)


def test_a_rerun_keeps_what_did_not_change_and_recomputes_what_did(db, tmp_path, monkeypatch):
    """A local model's rerun rewrites only the conversions whose journey, time or revenue,
    model or parameters changed; the rest keeps its stored rows (and the run that wrote them).
    Whatever it keeps or rewrites, attribution and report equal a recomputation's."""
    history = History(11)
    for n in range(5):
        db.load(*history.day(n, users=20))
    first = run(db, 0, 4)
    assert first.unchanged == 0 and first.rows_written == first.sessions > 0
    stored = db.attribution()
    writers = db.rows("SELECT conv_id, run_id FROM gf_attributed_conversions ORDER BY conv_id")

    again = run(db, 0, 4)
    assert (again.rows_written, again.unchanged) == (0, again.journeys)
    assert db.attribution() == stored
    assert db.rows("SELECT conv_id, run_id FROM gf_attributed_conversions ORDER BY conv_id") == (
        writers
    )
    assert report(db) == rebuilt(db)

    # Three sessions change channel: only the journeys holding them are recomputed (their
    # ids deleted a chunk of one id at a time).
    monkeypatch.setattr("growthflow.attribution.attribute.IDS_PER_STATEMENT", 1)
    sids = [s for (s,) in db.rows("SELECT DISTINCT session_id FROM attribution_customer_journey")]
    sids = sorted(sids)[:3]
    sizes = dict(
        db.rows("SELECT conv_id, count(*) FROM attribution_customer_journey GROUP BY conv_id")
    )
    touched = {c for (c, s) in stored if s in sids}
    with db.engine.begin() as conn:
        for sid in sids:
            conn.execute(
                sa.text(
                    "UPDATE session_sources SET channel_name = 'Podcast' WHERE session_id = :s"
                ),
                {"s": sid},
            )
    moved = run(db, 0, 4)
    assert len(touched) >= 2 and moved.unchanged == moved.journeys - len(touched)
    assert moved.rows_written == sum(sizes[c] for c in touched)
    assert report(db) == rebuilt(db)
    assert any(channel == "Podcast" for channel, _ in report(db))

    # A conversion's revenue changes: its attribution is rewritten and its report groups
    # (days before the run's range too) follow.
    cid = sorted(sizes)[-1]
    with db.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE conversions SET revenue = revenue + 1000 WHERE conv_id = :c"),
            {"c": cid},
        )
    revenue = run(db, 0, 4)
    assert (revenue.unchanged, revenue.rows_written) == (revenue.journeys - 1, sizes[cid])
    assert report(db) == rebuilt(db)

    # Other parameters (or another model) recompute everything; so does recompute=True.
    params = tmp_path / "params.toml"
    params.write_text("[ihc]\nholder_edge_power = 2.0\n")
    reparam = run(db, 0, 4, params_path=params)
    assert (reparam.unchanged, reparam.rows_written) == (0, reparam.sessions)
    assert db.attribution() != stored
    assert report(db) == rebuilt(db)
    recomputed = db.attribution()
    cfg = RunConfig.build(start=DAY0, end=DAY0 + timedelta(days=4), params_path=params)
    forced = run_attribution(db.engine, cfg, recompute=True)
    assert (forced.unchanged, forced.rows_written) == (0, forced.sessions)
    assert db.attribution() == recomputed
