"""Property-based: small random challenge databases against a plain-Python reference.

hypothesis builds databases of a few users, sessions, conversions and costs, with random bad
rows (impossible dates, hour 24, flags other than 0/1, missing channels, negative or
non-numeric revenues and costs, costs of sessions that do not exist, ids written twice in
tables without keys), as users make them:
typed tables with keys, the same without keys, or every column TEXT (a CSV import). Each is
run on SQLite and on PostgreSQL, and checked:

- the conversions attributed, and the sessions of each journey, are those the reference says;
- Σ ihc = 1 for every attributed conversion;
- channel_reporting's cost per (channel, day) is the sum of the usable session costs;
- every input row is used or counted as skipped (rows in = rows used + rows skipped);
- both databases give the same attribution, report and counts.

And after random edits of sessions and conversions, a rerun (which keeps the journeys whose
fingerprint did not change) stores exactly what recomputing every journey stores.
"""

from __future__ import annotations

import math
import tempfile
import uuid
from collections import defaultdict
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from growthflow.attribution import schema
from growthflow.attribution.pipeline import RunConfig, run_attribution
from growthflow.database import create_engine

from conftest import Db

START, END = date(2023, 9, 1), date(2023, 9, 5)
CHANNELS = ("Paid Search", "Email", "Display")


def sessions_of(users: int, defects: list, min_size: int = 0):
    """Sessions: (user, day, hour, minute, channel index, holder, closer, impression, defect)."""
    return st.lists(
        st.tuples(
            st.integers(0, users - 1),
            st.integers(1, 5),
            st.integers(0, 23),
            st.integers(0, 59),
            st.integers(0, 2),
            st.integers(0, 1),
            st.integers(0, 1),
            st.integers(0, 1),
            st.sampled_from(defects),
        ),
        min_size=min_size,
        max_size=14,
    )


def conversions_of(users: int, days, hours, defects: list, min_size: int, max_size: int):
    """Conversions: (user, day, hour, revenue in cents, defect)."""
    return st.lists(
        st.tuples(
            st.integers(0, users - 1),
            st.integers(*days),
            st.integers(*hours),
            st.integers(0, 50_000),
            st.sampled_from(defects),
        ),
        min_size=min_size,
        max_size=max_size,
    )


sessions_st = sessions_of(4, [None] * 6 + ["date", "hour 24", "flag", "no channel"])
conversions_st = conversions_of(
    4, (1, 5), (0, 23), [None] * 5 + ["negative", "date", "not a number"], 0, 6
)
# A cost per session, by position: (cents, defect); and costs of sessions that do not exist
costs_st = st.lists(
    st.tuples(st.integers(0, 40_000), st.sampled_from([None] * 5 + ["negative", "not a number"])),
    max_size=14,
)
layout_st = st.sampled_from(["typed with keys", "typed without keys", "all TEXT"])


def build(sessions, conversions, costs, orphans, layout, dups=((), (), ())):
    """The three tables' rows, and what the reference makes of them. ``dups``: positions of
    the sessions, conversions and costs written twice (tables without keys only); every row
    of a repeated id is a bad row."""
    text = layout == "all TEXT"
    keyless = layout != "typed with keys"
    twice_s, twice_c, twice_k = (
        {i for i in positions if i < size} if keyless else set()
        for positions, size in zip(
            dups, (len(sessions), len(conversions), min(len(costs), len(sessions))), strict=True
        )
    )
    s_rows, c_rows, k_rows = [], [], []
    usable_sessions = []  # (user, ts, session_id)
    placeable = {}  # session_id -> (channel, day): where its cost is reported
    for i, (user, day, hour, minute, ch, holder, closer, impression, defect) in enumerate(sessions):
        sid = f"s{i:02d}"
        if defect == "no channel" and layout == "typed with keys":
            defect = "flag"  # the contract's channel_name is NOT NULL
        day_text = "2023-02-30" if defect == "date" else f"2023-09-{day:02d}"
        time_text = "24:00:00" if defect == "hour 24" else f"{hour:02d}:{minute:02d}:00"
        channel = None if defect == "no channel" else CHANNELS[ch]
        holder = 2 if defect == "flag" else holder
        row = (sid, f"u{user}", day_text, time_text, channel, holder, closer, impression)
        s_rows += [row, row] if i in twice_s else [row]
        if i in twice_s:  # neither in journeys nor in the report
            continue
        if defect is None:
            usable_sessions.append((f"u{user}", datetime(2023, 9, day, hour, minute), sid))
        if defect in (None, "hour 24", "flag"):  # the money was spent: reported
            placeable[sid] = (channel, day_text)
    attributed = {}  # conv_id -> sessions of its journey
    usable_conversions = 0
    for j, (user, day, hour, cents, defect) in enumerate(conversions):
        cid = f"c{j}"
        revenue: object = cents / 100
        if defect == "negative":
            revenue = -(cents + 1) / 100
        if defect == "not a number":
            revenue = "abc" if text else math.inf  # typed: infinity is no finite number either
        day_text = "2023-09-31" if defect == "date" else f"2023-09-{day:02d}"
        row = (cid, f"u{user}", day_text, f"{hour:02d}:30:00", revenue)
        c_rows += [row, row] if j in twice_c else [row]
        if defect is None and j not in twice_c:
            usable_conversions += 1
            ts = datetime(2023, 9, day, hour, 30)
            journey = sorted((t, s) for u, t, s in usable_sessions if u == f"u{user}" and t < ts)
            if journey:
                attributed[cid] = {s for _, s in journey}
    expected_cost = defaultdict(int)  # (channel, day) -> cents
    usable_costs = 0
    for i, (cents, defect) in enumerate(costs[: len(sessions)]):
        sid = f"s{i:02d}"
        cost: object = cents / 100
        if defect == "negative":
            cost = -(cents + 1) / 100
        if defect == "not a number":
            cost = "abc" if text else math.inf  # typed: infinity is no finite number either
        k_rows += [(sid, cost), (sid, cost)] if i in twice_k else [(sid, cost)]
        if defect is None and i not in twice_k:
            usable_costs += 1
            if sid in placeable:
                expected_cost[placeable[sid]] += cents
    for n, cents in enumerate(orphans):  # sessions that do not exist
        k_rows.append((f"orphan{n}", cents / 100))
    reference = {
        "attributed": attributed,
        "cost": {key: cents for key, cents in expected_cost.items() if cents},
        "usable_conversions": usable_conversions,
        "usable_costs": usable_costs,
    }
    return (s_rows, c_rows, k_rows), reference


def load(engine, layout, tables):
    db = Db("", None, engine)
    if layout == "typed with keys":
        schema.init_db(engine)
    else:
        db.create_loose_tables(text=layout == "all TEXT")
    if layout == "all TEXT":
        tables = [[tuple(None if v is None else str(v) for v in r) for r in t] for t in tables]
    db.insert_raw(*tables)


def outcome(engine, summary):
    def rows(sql):
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(sql))]

    journeys = defaultdict(dict)
    for conv, sid, ihc in rows("SELECT conv_id, session_id, ihc FROM attribution_customer_journey"):
        journeys[conv][sid] = ihc
    report = {
        (channel, day): cost
        for channel, day, cost in rows("SELECT channel_name, date, cost FROM channel_reporting")
    }
    skipped = defaultdict(int)
    for s in summary.skipped:
        skipped[s.table, s.reason] += s.count
    return dict(journeys), report, dict(skipped), summary.conversions


@pytest.fixture(scope="module")
def engines(postgres_url):
    """Makes a fresh SQLite file and PostgreSQL schema for one example, dropped after it."""
    folder = Path(tempfile.mkdtemp(prefix="gf-props-"))
    admin = sa.create_engine(postgres_url)

    @contextmanager
    def fresh():
        name = f"p_{uuid.uuid4().hex[:10]}"
        made = {
            "sqlite": create_engine(f"sqlite:///{folder / name}.db", create=True),
            "postgresql": create_engine(postgres_url, schema=name, create=True),
        }
        try:
            yield made
        finally:
            for engine in made.values():
                engine.dispose()
            with admin.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
            (folder / f"{name}.db").unlink(missing_ok=True)

    yield fresh
    admin.dispose()


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    sessions=sessions_st,
    conversions=conversions_st,
    costs=costs_st,
    orphans=st.lists(st.integers(0, 9_999), max_size=2),
    layout=layout_st,
    dups=st.tuples(*[st.lists(st.integers(0, 13), max_size=2)] * 3),
)
def test_random_databases_match_the_reference_on_both_databases(
    engines, sessions, conversions, costs, orphans, layout, dups
):
    tables, reference = build(sessions, conversions, costs, orphans, layout, dups)
    results = {}
    with engines() as made:
        for name, engine in made.items():
            load(engine, layout, tables)
            summary = run_attribution(engine, RunConfig.build(start=START, end=END))
            results[name] = outcome(engine, summary)
    for name, (journeys, report, skipped, converted) in results.items():
        # the conversions attributed and their journeys' sessions
        assert {c: set(s) for c, s in journeys.items()} == reference["attributed"], name
        for conv, shares in journeys.items():  # Σ ihc = 1 per attributed conversion
            assert math.isclose(sum(shares.values()), 1.0, abs_tol=1e-9), (name, conv)
        # the report's cost is the usable costs of placeable sessions, per channel and day
        expected = {key: cents / 100 for key, cents in reference["cost"].items()}
        assert {k: v for k, v in report.items() if v} == pytest.approx(expected), name
        # rows in = rows used + rows counted as skipped
        c_skipped = sum(n for (table, _), n in skipped.items() if table == "conversions")
        assert converted == reference["usable_conversions"], name
        assert len(tables[1]) == converted + c_skipped, (name, skipped)
        k_skipped = sum(n for (table, _), n in skipped.items() if table == "session_costs")
        assert len(tables[2]) == reference["usable_costs"] + k_skipped, (name, skipped)

    sqlite, postgres = results["sqlite"], results["postgresql"]
    assert sqlite[0].keys() == postgres[0].keys()
    for conv, shares in sqlite[0].items():
        assert shares == pytest.approx(postgres[0][conv], abs=1e-12)
    assert sqlite[1] == pytest.approx(postgres[1], abs=1e-9)
    assert sqlite[2:] == postgres[2:]


# Databases with journeys (late conversions, few bad rows), and 1-4 edits between two runs:
# (what, which row, value)
busy_sessions_st = sessions_of(3, [None] * 12 + ["date", "hour 24", "flag"], min_size=4)
late_conversions_st = conversions_of(3, (3, 5), (12, 23), [None] * 8 + ["negative"], 1, 4)
edits_st = st.lists(
    st.tuples(
        st.sampled_from(["channel", "time", "flag", "delete", "revenue", "conv_time"]),
        st.integers(0, 99),
        st.integers(0, 59),
    ),
    min_size=1,
    max_size=4,
)


def _edit(engine, tables, edits, text: bool) -> None:
    sessions, conversions = [r[0] for r in tables[0]], [r[0] for r in tables[1]]
    with engine.begin() as conn:
        for what, which, value in edits:
            if what in ("revenue", "conv_time"):
                if not conversions:
                    continue
                cid = conversions[which % len(conversions)]
                if what == "revenue":
                    column, new = "revenue", value * 7.25
                else:
                    column, new = "conv_time", f"{value % 24:02d}:{value:02d}:00"
                sql = f"UPDATE conversions SET {column} = :v WHERE conv_id = :id"  # noqa: S608
            else:
                if not sessions:
                    continue
                sid = sessions[which % len(sessions)]
                column, new = {
                    "channel": ("channel_name", CHANNELS[value % len(CHANNELS)]),
                    "time": ("event_time", f"{value % 24:02d}:{value:02d}:00"),
                    "flag": ("closer_engagement", value % 2),
                    "delete": (None, None),
                }[what]
                sql = (
                    "DELETE FROM session_sources WHERE session_id = :id"
                    if column is None
                    else f"UPDATE session_sources SET {column} = :v WHERE session_id = :id"  # noqa: S608
                )
            v = str(new) if text and new is not None else new
            conn.execute(
                sa.text(sql), {"v": v, "id": cid if what in ("revenue", "conv_time") else sid}
            )


def _stored(engine) -> dict:
    with engine.connect() as conn:
        return {
            table: sorted(tuple(r) for r in conn.execute(sa.text(f"SELECT * FROM {table}")))  # noqa: S608
            for table in (
                "attribution_customer_journey",
                "gf_attribution_detail",
                "gf_attribution_keys",
                "channel_reporting",
            )
        }


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    sessions=busy_sessions_st,
    conversions=late_conversions_st,
    costs=costs_st,
    layout=st.sampled_from(["typed with keys", "all TEXT"]),
    edits=edits_st,
)
def test_a_rerun_after_edits_equals_a_recomputation(
    engines, sessions, conversions, costs, layout, edits
):
    """Whatever changed between two runs, the rerun (which keeps the journeys it finds
    unchanged) stores exactly what recomputing every journey stores: attribution, phases,
    report keys and channel_reporting."""
    tables, _ = build(sessions, conversions, costs, [], layout)
    config = RunConfig.build(start=START, end=END)
    with engines() as made:
        for name, engine in made.items():
            load(engine, layout, tables)
            run_attribution(engine, config)
            _edit(engine, tables, edits, layout == "all TEXT")
            rerun = run_attribution(engine, config)
            kept = _stored(engine)
            forced = run_attribution(engine, config, recompute=True)
            assert _stored(engine) == kept, (name, edits)
            assert forced.unchanged == 0 and forced.rows_written == forced.sessions, name
            assert rerun.rows_written <= rerun.sessions, name
