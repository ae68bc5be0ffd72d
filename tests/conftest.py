"""Fixtures: every database test runs on SQLite and on the real PostgreSQL server.

PostgreSQL: one throwaway database per test session (created and dropped here), one fresh
schema per test. The server defaults to 127.0.0.1:5432 as user postgres; set
GROWTHFLOW_TEST_POSTGRES_URL to use another. When it cannot be reached the PostgreSQL tests
are skipped locally, and fail under CI (CI=true), so a green CI always means both backends.
"""

from __future__ import annotations

import itertools
import os
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from growthflow.attribution import schema
from growthflow.attribution.models import JourneyBatch
from growthflow.attribution.pipeline import RunConfig, RunSummary, run_attribution
from growthflow.attribution.providers import LocalProvider
from growthflow.database import create_engine

ADMIN_URL = os.environ.get(
    "GROWTHFLOW_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
_schema_numbers = itertools.count()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"growthflow_test_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        message = f"PostgreSQL not reachable at {ADMIN_URL}: {str(exc.orig).strip()}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    url = sa.engine.make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    yield url
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@dataclass
class Db:
    """A database for one test: its URL, schema and engine."""

    url: str
    schema: str | None
    engine: sa.Engine

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def cli_args(self) -> list[str]:
        return ["--db", self.url] + (["--schema", self.schema] if self.schema else [])

    def load(self, sessions=(), conversions=(), costs=()) -> None:
        """Create the contract tables (if missing) and insert rows given as tuples."""
        schema.init_db(self.engine)
        with self.engine.begin() as conn:
            for table, rows in (
                (schema.session_sources, sessions),
                (schema.conversions, conversions),
                (schema.session_costs, costs),
            ):
                if rows:
                    cols = [c.name for c in table.columns]
                    conn.execute(sa.insert(table), [dict(zip(cols, r, strict=True)) for r in rows])

    def create_loose_tables(self, *, text: bool = False) -> None:
        """Input tables the way users build them by hand: no keys, no NOT NULL; with
        ``text``, every column TEXT, as `sqlite3 .import` (or a COPY into text columns)."""
        with self.engine.begin() as conn:
            for table in schema.INPUT_TABLES:
                cols = ", ".join(
                    f"{c.name} {'TEXT' if text else c.type.compile(self.engine.dialect)}"
                    for c in table.columns
                )
                conn.execute(sa.text(f"CREATE TABLE {table.name} ({cols})"))

    def insert_raw(self, sessions=(), conversions=(), costs=()) -> None:
        """Insert rows as given into tables that exist (any keys, any column types)."""
        with self.engine.begin() as conn:
            for table, rows in zip(
                schema.INPUT_TABLES, (sessions, conversions, costs), strict=True
            ):
                if rows:
                    names = [c.name for c in table.columns]
                    placeholders = ", ".join(":" + n for n in names)
                    conn.execute(
                        sa.text(f"INSERT INTO {table.name} VALUES ({placeholders})"),
                        [dict(zip(names, row, strict=True)) for row in rows],
                    )

    def rows(self, sql: str, **params) -> list[tuple]:
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(sql), params)]

    def attribution(self) -> dict[tuple[str, str], float]:
        return {
            (c, s): v
            for c, s, v in self.rows(
                "SELECT conv_id, session_id, ihc FROM attribution_customer_journey"
            )
        }

    def run(self, start: str, end: str, csv_path: Path | None = None, **config) -> RunSummary:
        cfg = RunConfig.build(
            start=date.fromisoformat(start), end=date.fromisoformat(end), **config
        )
        return run_attribution(self.engine, cfg, csv_path=csv_path)


@contextmanager
def sqlite_work(engine: sa.Engine) -> Iterator[list[int]]:
    """Count the SQLite virtual-machine instructions (in thousands) run on ``engine``'s
    connections, every thread's, inside the block: a measure of work that is the same on a
    fast or a slow machine, for tests that check how work grows with the data."""
    count = [0]
    lock = threading.Lock()

    def tick() -> int:
        with lock:
            count[0] += 1
        return 0

    def on_connect(dbapi_conn, _record) -> None:
        dbapi_conn.set_progress_handler(tick, 1000)

    sa.event.listen(engine, "connect", on_connect)
    engine.dispose()  # new connections get the handler
    try:
        yield count
    finally:
        engine.dispose()
        sa.event.remove(engine, "connect", on_connect)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path) -> Iterator[Db]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'test.db'}"
        engine = create_engine(url, create=True)
        yield Db(url, None, engine)
        engine.dispose()
        return
    url = request.getfixturevalue("postgres_url")
    name = f"t{next(_schema_numbers)}_{uuid.uuid4().hex[:6]}"
    engine = create_engine(url, schema=name, create=True)
    yield Db(url, name, engine)
    engine.dispose()
    admin = sa.create_engine(url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
    admin.dispose()


def session(sid, user, day, time, channel="Paid Search Brand", holder=1, closer=1, impression=0):
    return (sid, user, day, time, channel, holder, closer, impression)


def conversion(cid, user, day, time, revenue=100.0):
    return (cid, user, day, time, revenue)


def make_batch(lengths, hours=None, channels=None, holder=None, closer=None, conv_gap_h=1.0):
    """Journeys with the given lengths; ``hours`` are session times in hours (per session)."""
    lengths = np.asarray(lengths)
    n = int(lengths.sum())
    offsets = np.r_[0, np.cumsum(lengths)]
    if hours is None:
        hours = np.concatenate([np.arange(k) * 5.0 for k in lengths]) if n else np.zeros(0)
    base = np.datetime64("2023-09-01T00:00:00")
    ts = base + (np.asarray(hours) * 3600).astype("timedelta64[s]")
    last = ts[offsets[1:] - 1]
    return JourneyBatch(
        batch_no=0,
        conv_ids=np.array([f"c{j}" for j in range(len(lengths))], dtype=object),
        conv_ts=last + np.timedelta64(int(conv_gap_h * 3600), "s"),
        offsets=offsets,
        session_ids=np.array([f"s{i}" for i in range(n)], dtype=object),
        ts=ts,
        channel=np.array(channels if channels is not None else ["A"] * n, dtype=object),
        holder_engagement=np.asarray(holder if holder is not None else [1] * n, dtype=np.int8),
        closer_engagement=np.asarray(closer if closer is not None else [1] * n, dtype=np.int8),
        impression_interaction=np.zeros(n, dtype=np.int8),
    )


class FailingProvider(LocalProvider):
    """The linear model, raising "provider crashed" from its ``fail_on``-th call on: a crash
    half-way through a run (with one batch per transaction, the batches before are stored)."""

    def __init__(self, fail_on: int = 2):
        super().__init__("linear")
        self.calls = 0
        self.fail_on = fail_on

    def attribute(self, batch):
        self.calls += 1
        if self.calls >= self.fail_on:
            raise RuntimeError("provider crashed")
        return super().attribute(batch)
