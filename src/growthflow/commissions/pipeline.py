"""The commissions run: discover -> bronze -> silver -> gold -> archive, under a run lock.

Every step is a plain function over the database (and the landing zone); the state of each
file in ``commission_files`` says what is left to do, so a run after a crash, or a run of the
Airflow DAG's tasks one by one, finishes exactly the work that is missing.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from growthflow.commissions import schema
from growthflow.commissions.bronze import (
    LOADED,
    REJECTED,
    FileLoad,
    bronze_order,
    load_bronze,
    load_file,
)
from growthflow.commissions.config import FeedConfig
from growthflow.commissions.gold import GoldStats, run_combined, run_gold
from growthflow.commissions.landing import Discovery, archive_path, content_hash, discover, move
from growthflow.database import is_postgres, translate_errors
from growthflow.errors import GrowthflowError

if TYPE_CHECKING:  # the silver step imports numpy and pyarrow: only when there is work
    from growthflow.commissions.silver import FileCheck

LIVE_STATES = ("bronze", "silver", "current")  # a file whose rows are, or will be, in gold
_LOCK_KEY = 0x67_66_63_6F  # PostgreSQL advisory lock of growthflow commissions ("gfco")


class RunLocked(GrowthflowError):
    """Another commissions run holds the lock."""


@contextmanager
def run_lock(engine: sa.Engine, wait_seconds: float = 0) -> Iterator[None]:
    """One commissions run at a time per database: a PostgreSQL advisory lock, or a lock file
    beside the SQLite database. Both are released when the process dies, even by kill -9."""
    deadline = time.monotonic() + wait_seconds
    message = (
        "another growthflow commissions run is working on this database; "
        "wait for it to finish (or pass --wait SECONDS)"
    )
    if is_postgres(engine):
        with engine.connect() as conn:
            while not conn.execute(
                sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": _LOCK_KEY}
            ).scalar():
                if time.monotonic() >= deadline:
                    raise RunLocked(message)
                time.sleep(0.2)
            conn.commit()
            try:
                yield
            finally:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": _LOCK_KEY})
                conn.commit()
        return
    database = engine.url.database or ""
    if database in ("", ":memory:"):
        yield
        return
    path = f"{database}.commissions.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise RunLocked(message) from None
                time.sleep(0.2)
        yield
    finally:
        os.close(fd)


@dataclass
class RunSummary:
    discovery: Discovery = field(default_factory=Discovery)
    loads: list[FileLoad] = field(default_factory=list)
    checks: list[FileCheck] = field(default_factory=list)
    gold: GoldStats = field(default_factory=GoldStats)
    archived: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def quarantined(self) -> Counter:
        total = Counter()
        for check in self.checks:
            total.update(check.quarantined)
        return total

    @property
    def warnings(self) -> Counter:
        total = Counter()
        for check in self.checks:
            total.update(check.warnings)
        total.update(self.gold.warnings)
        return total

    def loaded_per_feed(self) -> Counter:
        return Counter(load.item.feed for load in self.loads if load.outcome == LOADED)

    @property
    def rejected(self) -> list[FileLoad]:
        return [load for load in self.loads if load.outcome == REJECTED and load.reason]


def _files_in_state(engine: sa.Engine, state: str) -> int:
    f = schema.files
    with engine.connect() as conn:
        query = sa.select(sa.func.count()).select_from(f).where(f.c.state == state)
        return conn.execute(query).scalar_one()


def archive_files(engine: sa.Engine, loads: list[FileLoad], archive: Path) -> int:
    """Move every landing file whose content is loaded (current or superseded) or rejected
    to the archive; files still waiting for silver or gold stay. Returns the files moved."""
    f = schema.files
    moved = 0
    with engine.connect() as conn:
        for load in loads:
            states = set(
                conn.execute(
                    sa.select(f.c.state).where(
                        f.c.feed == load.item.feed,
                        f.c.name == load.item.name,
                        f.c.content_hash == load.digest,
                    )
                ).scalars()
            )
            if states & {"bronze", "silver"} or not states:
                continue
            if not load.item.path.exists():
                continue
            rejected = states == {"rejected"}
            move(load.item.path, archive_path(archive, load.item, load.digest, rejected))
            moved += 1
    return moved


def run_commissions(
    engine: sa.Engine,
    config: FeedConfig,
    landing: Path,
    archive: Path,
    *,
    wait_seconds: float = 0,
    now: float | None = None,
) -> RunSummary:
    """Process every complete file of the landing zone."""
    summary = RunSummary()
    schema.init_db(engine)
    with run_lock(engine, wait_seconds), translate_errors(engine):
        summary.discovery = discover(landing, config, now)
        summary.seconds["bronze"] = summary.seconds["silver"] = 0.0
        # One file at a time through bronze and silver: memory follows the largest file, not
        # the landing zone. Files left in bronze by an interrupted run are validated after.
        for item in bronze_order(summary.discovery.files):
            t = time.perf_counter()
            load = load_file(engine, config, item)
            summary.loads.append(load)
            summary.seconds["bronze"] += time.perf_counter() - t
            t = time.perf_counter()
            if load.records is not None:
                from growthflow.commissions.silver import validate_file

                summary.checks.append(validate_file(engine, config, load.file_id, load.records))
                load.records = None
            summary.seconds["silver"] += time.perf_counter() - t
        t = time.perf_counter()
        if _files_in_state(engine, "bronze"):
            from growthflow.commissions.silver import validate_pending

            summary.checks.extend(validate_pending(engine, config))
        summary.seconds["silver"] += time.perf_counter() - t
        t = time.perf_counter()
        summary.gold = run_gold(engine, config)
        summary.seconds["gold"] = time.perf_counter() - t
        t = time.perf_counter()
        summary.archived = archive_files(engine, summary.loads, archive)
        summary.seconds["archive"] = time.perf_counter() - t
    return summary


# --- the same steps one at a time, for the Airflow DAG's tasks -----------------------------


def load_feed(
    engine: sa.Engine,
    config: FeedConfig,
    landing: Path,
    feed: str,
    *,
    wait_seconds: float = 0,
    now: float | None = None,
) -> list[FileLoad]:
    """Bronze for one feed: load its complete landing files not loaded yet."""
    schema.init_db(engine)
    items = [item for item in discover(landing, config, now).files if item.feed == feed]
    with run_lock(engine, wait_seconds), translate_errors(engine):
        return load_bronze(engine, config, items)


def validate_loaded(
    engine: sa.Engine, config: FeedConfig, *, wait_seconds: float = 0
) -> list[FileCheck]:
    """Silver for every file loaded to bronze and not validated yet."""
    from growthflow.commissions.silver import validate_pending

    with run_lock(engine, wait_seconds), translate_errors(engine):
        return validate_pending(engine, config)


def compute_gold(
    engine: sa.Engine, config: FeedConfig, *, wait_seconds: float = 0, combined: bool = True
) -> GoldStats:
    """Gold: promote the validated files and recompute the affected days; with
    ``combined=False`` the combined scope's days are left to ``compute_combined``."""
    with run_lock(engine, wait_seconds), translate_errors(engine):
        return run_gold(engine, config, combined=combined)


def compute_combined(
    engine: sa.Engine, config: FeedConfig, *, wait_seconds: float = 0
) -> GoldStats:
    """The combined scope of the days the gold step left stale for it."""
    schema.init_db(engine)
    with run_lock(engine, wait_seconds), translate_errors(engine):
        return run_combined(engine, config)


def archive_landing(
    engine: sa.Engine,
    config: FeedConfig,
    landing: Path,
    archive: Path,
    *,
    wait_seconds: float = 0,
    now: float | None = None,
) -> int:
    """Move every landing file whose content is loaded or rejected to the archive."""
    loads = [
        FileLoad(item, content_hash(item.path.read_bytes()), "")
        for item in discover(landing, config, now).files
    ]
    with run_lock(engine, wait_seconds), translate_errors(engine):
        return archive_files(engine, loads, archive)


def day_loaded(engine: sa.Engine, feed: str, day: date) -> bool:
    """Whether a file of ``feed`` for ``day`` is loaded already (it may be archived)."""
    schema.init_db(engine)
    f = schema.files
    with engine.connect() as conn:
        return (
            conn.execute(
                sa.select(sa.func.count())
                .select_from(f)
                .where(f.c.feed == feed, f.c.day == day, f.c.state.in_(LIVE_STATES))
            ).scalar_one()
            > 0
        )
