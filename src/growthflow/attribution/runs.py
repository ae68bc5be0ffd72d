"""Telling a live run from a dead one, and reclaiming the dead.

A run is ``running`` in ``gf_runs`` from its start until it records its outcome. A process
killed on the way (``kill -9``, a lost machine, an Airflow worker that vanished) never records
one, and its staging rows (journeys, batches, cost days) would stay forever. So every process
working on a run beats in ``gf_run_heartbeats`` every ``BEAT_EVERY_S`` seconds; the next run
marks each ``running`` run whose last beat (or start, before its first beat) is older than
``ABANDONED_AFTER_S`` as ``abandoned`` and deletes its staging rows. Steps of an abandoned
run refuse to go on (:func:`growthflow.attribution.pipeline.load_run_config`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from growthflow.attribution import schema
from growthflow.attribution.journeys import clear_staging
from growthflow.database import read_only

log = logging.getLogger(__name__)

BEAT_EVERY_S = 30.0
# Far above the beat, so a busy database or a task waiting for an Airflow worker between
# two steps is not taken for dead.
ABANDONED_AFTER_S = 30 * 60.0


def utc_now() -> datetime:
    """Now in UTC, to the second: how gf_runs and gf_run_heartbeats write times."""
    return datetime.now(UTC).replace(microsecond=0)


def _beat(engine: sa.Engine, run_id: str) -> None:
    hb, runs = schema.run_heartbeats, schema.runs
    stamp = utc_now().isoformat()
    with engine.begin() as conn:
        status = conn.execute(sa.select(runs.c.status).where(runs.c.run_id == run_id)).scalar()
        if status != "running":  # finished (or reclaimed) meanwhile: nothing to keep alive
            return
        updated = conn.execute(sa.update(hb).where(hb.c.run_id == run_id).values(beat_at=stamp))
        if not updated.rowcount:
            conn.execute(sa.insert(hb).values(run_id=run_id, beat_at=stamp))


@contextmanager
def heartbeat(engine: sa.Engine, run_id: str, every_s: float = BEAT_EVERY_S) -> Iterator[None]:
    """Beat for ``run_id`` while the block runs (a daemon thread, its own connections)."""
    _beat(engine, run_id)
    stop = threading.Event()

    def beat_until_stopped() -> None:
        while not stop.wait(every_s):
            try:
                _beat(engine, run_id)
            except sa.exc.DBAPIError as exc:  # a locked or busy database: try at the next beat
                log.debug("heartbeat of run %s skipped: %s", run_id, exc.__class__.__name__)

    thread = threading.Thread(target=beat_until_stopped, name=f"gf-beat-{run_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def reclaim_abandoned(
    engine: sa.Engine, *, stale_after_s: float = ABANDONED_AFTER_S, now: datetime | None = None
) -> list[str]:
    """Mark every run that stopped beating as ``abandoned`` and delete its staging rows;
    returns their ids. A run that beat within ``stale_after_s`` is left alone."""
    runs, hb = schema.runs, schema.run_heartbeats
    now = now or utc_now()
    with read_only(engine) as conn:
        running = conn.execute(
            sa.select(runs.c.run_id, runs.c.started_at, hb.c.beat_at)
            .select_from(runs.outerjoin(hb, hb.c.run_id == runs.c.run_id))
            .where(runs.c.status == "running")
        ).all()
    limit = now - timedelta(seconds=stale_after_s)
    reclaimed = []
    for run_id, started_at, beat_at in running:
        last = datetime.fromisoformat(beat_at or started_at)
        if (last if last.tzinfo else last.replace(tzinfo=UTC)) >= limit:
            continue
        with engine.begin() as conn:
            # Conditional: two runs reclaiming at once mark (and clear) it only once.
            marked = conn.execute(
                sa.update(runs)
                .where(runs.c.run_id == run_id, runs.c.status == "running")
                .values(status="abandoned", finished_at=now.isoformat())
            ).rowcount
            if marked:
                clear_staging(conn, run_id)
                conn.execute(sa.delete(hb).where(hb.c.run_id == run_id))
                reclaimed.append(run_id)
    if reclaimed:
        log.warning(
            "marked %d run(s) as abandoned (no heartbeat for %d minutes; killed?) and deleted "
            "their staging rows: %s",
            len(reclaimed),
            stale_after_s // 60,
            ", ".join(reclaimed),
        )
    return reclaimed


def end_heartbeat(conn: sa.Connection, run_id: str) -> None:
    """Forget a finished run's beat (in the transaction that records its outcome)."""
    conn.execute(sa.delete(schema.run_heartbeats).where(schema.run_heartbeats.c.run_id == run_id))
