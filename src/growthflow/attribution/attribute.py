"""Steps 3 and 4: attribute each planned batch and store it.

Each batch is read from the run's staging tables, attributed by a provider, checked, and
stored in one transaction that first deletes whatever was stored for exactly the batch's
conversions, so rerunning a batch (or a whole run) replaces rows and never duplicates them.

A local model's stored attribution carries a fingerprint of what decided it (the journey, the
conversion's time and revenue, the model and its settings): a rerun keeps, without
recomputing or rewriting anything, the conversions whose fingerprint is unchanged, and
``recompute=True`` (the CLI's ``--force``) replaces them all.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import sqlalchemy as sa

from growthflow.attribution import schema
from growthflow.attribution.models import Attribution, JourneyBatch
from growthflow.attribution.providers import Provider
from growthflow.attribution.report import mark_stale
from growthflow.database import bulk_insert, fetch_tuples

SUM_TOLERANCE = 1e-9


class AttributionCheckError(RuntimeError):
    """A provider returned numbers that break the attribution invariants (a bug, not input)."""


@dataclass
class AttributeStats:
    batches: int = 0
    journeys: int = 0
    sessions: int = 0
    rows_written: int = 0
    unchanged: int = 0  # journeys whose stored attribution was up to date (kept)


def _batch_query() -> sa.Select:
    b, j, js = schema.batches, schema.journeys, schema.journey_sessions
    return (
        sa.select(
            j.c.journey_no,
            j.c.conv_id,
            j.c.conv_ts,
            js.c.session_id,
            js.c.event_ts,
            js.c.channel_name,
            js.c.holder_engagement,
            js.c.closer_engagement,
            js.c.impression_interaction,
        )
        .select_from(
            b.join(j, sa.and_(j.c.run_id == b.c.run_id, j.c.journey_no == b.c.journey_no)).join(
                js, sa.and_(js.c.run_id == b.c.run_id, js.c.journey_no == b.c.journey_no)
            )
        )
        .where(b.c.run_id == sa.bindparam("run_id"))
        .order_by(b.c.journey_no, js.c.position)
    )


BATCH_QUERY = _batch_query().where(schema.batches.c.batch_no == sa.bindparam("batch_no"))
BATCHES_QUERY = _batch_query().where(
    schema.batches.c.batch_no.in_(sa.bindparam("batch_nos", expanding=True))
)


def load_batch(conn: sa.Connection, run_id: str, batch_no: int) -> JourneyBatch:
    rows = conn.execute(BATCH_QUERY, {"run_id": run_id, "batch_no": batch_no}).all()
    if not rows:
        raise LookupError(f"run {run_id} has no batch {batch_no}")
    return _journey_batch(rows, batch_no)


def load_batches(conn: sa.Connection, run_id: str, batch_nos: list[int]) -> JourneyBatch:
    """The journeys of several planned batches as one batch (for local models, which do not
    care how the API would have split them)."""
    rows = fetch_tuples(conn, BATCHES_QUERY, {"run_id": run_id, "batch_nos": batch_nos})
    if not rows:
        raise LookupError(f"run {run_id} has no batches {batch_nos[0]}..{batch_nos[-1]}")
    return _journey_batch(rows, batch_nos[0])


def _journey_batch(rows: list, batch_no: int) -> JourneyBatch:
    cols = list(zip(*rows, strict=True))
    journey_no = np.asarray(cols[0], dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, journey_no[1:] != journey_no[:-1]])
    return JourneyBatch(
        batch_no=batch_no,
        conv_ids=np.asarray(cols[1], dtype=object)[starts],
        conv_ts=np.asarray(cols[2], dtype="datetime64[s]")[starts],
        offsets=np.r_[starts, len(rows)].astype(np.int64),
        session_ids=np.asarray(cols[3], dtype=object),
        ts=np.asarray(cols[4], dtype="datetime64[s]"),
        channel=np.asarray(cols[5], dtype=object),
        holder_engagement=np.asarray(cols[6], dtype=np.int8),
        closer_engagement=np.asarray(cols[7], dtype=np.int8),
        impression_interaction=np.asarray(cols[8], dtype=np.int8),
    )


def check_attribution(batch: JourneyBatch, result: Attribution) -> None:
    if len(result.ihc) != batch.n_sessions:
        raise AttributionCheckError(f"batch {batch.batch_no}: result length mismatch")
    if not np.all(np.isfinite(result.ihc)) or result.ihc.min() < 0:
        raise AttributionCheckError(f"batch {batch.batch_no}: ihc outside [0, 1]")
    sums = batch.journey_sum(result.ihc)
    worst = int(np.argmax(np.abs(sums - 1.0)))
    if abs(sums[worst] - 1.0) > SUM_TOLERANCE:
        raise AttributionCheckError(
            f"batch {batch.batch_no}: ihc of conversion {batch.conv_ids[worst]} sums to "
            f"{sums[worst]!r}, not 1"
        )


def journey_fingerprints(batch: JourneyBatch, revenue: list, context: str) -> list[str]:
    """Per journey, a hash of everything its stored attribution and its report rows derive
    from: the provider's ``context``, the conversion (id, time, revenue) and every session's
    id, time, channel and flags, in order."""
    sessions = [
        f"{s}\x1f{t}\x1f{c}\x1f{h}{k}{i}"
        for s, t, c, h, k, i in zip(
            batch.session_ids.tolist(),
            batch.ts.astype(str).tolist(),
            batch.channel.tolist(),
            batch.holder_engagement.tolist(),
            batch.closer_engagement.tolist(),
            batch.impression_interaction.tolist(),
            strict=True,
        )
    ]
    seed = hashlib.blake2b(context.encode(), digest_size=16)
    out = []
    for conv, ts, rev, start, end in zip(
        batch.conv_ids.tolist(),
        batch.conv_ts.astype(str).tolist(),
        revenue,
        batch.offsets[:-1].tolist(),
        batch.offsets[1:].tolist(),
        strict=True,
    ):
        digest = seed.copy()
        digest.update("\x1e".join([f"{conv}\x1f{ts}\x1f{rev!r}", *sessions[start:end]]).encode())
        out.append(digest.hexdigest())
    return out


def _stored_query() -> sa.Select:
    b, j, c, ac = schema.batches, schema.journeys, schema.conversions, schema.attributed_conversions
    return (
        sa.select(j.c.conv_id, c.c.revenue, ac.c.fingerprint)
        .select_from(
            b.join(j, sa.and_(j.c.run_id == b.c.run_id, j.c.journey_no == b.c.journey_no))
            .join(c, c.c.conv_id == j.c.conv_id)
            .outerjoin(ac, ac.c.conv_id == j.c.conv_id)
        )
        .where(b.c.run_id == sa.bindparam("run_id"))
        .where(b.c.batch_no.in_(sa.bindparam("batch_nos", expanding=True)))
    )


STORED_QUERY = _stored_query()


def _stored_fingerprints(
    conn: sa.Connection, run_id: str, batch_nos: list[int]
) -> dict[str, tuple[object, str | None]]:
    """conv_id -> (revenue as the driver reads it, stored fingerprint or None) of the
    batches' conversions."""
    rows = fetch_tuples(conn, STORED_QUERY, {"run_id": run_id, "batch_nos": batch_nos})
    return {conv: (revenue, stored) for conv, revenue, stored in rows}


def _nullable(values: np.ndarray) -> list:
    return [None if v != v else v for v in values.tolist()]  # NaN -> NULL


def store_attribution(
    conn: sa.Connection,
    run_id: str,
    batch: JourneyBatch,
    result: Attribution,
    model: str,
    fingerprints: list[str] | None = None,
    batch_nos: list[int] | None = None,
) -> int:
    """Replace the stored attribution of the batch's conversions (caller owns the transaction).
    With ``batch_nos`` (the planned batches the batch holds), their conversions are found in
    the run's staging tables, set-based, instead of listed one by one.

    Returns the number of ``attribution_customer_journey`` rows written.
    """
    conv_ids = batch.conv_ids.tolist()
    if batch_nos is not None:
        b, j = schema.batches, schema.journeys
        whichs: list = [
            sa.select(j.c.conv_id)
            .join(b, sa.and_(b.c.run_id == j.c.run_id, b.c.journey_no == j.c.journey_no))
            .where(b.c.run_id == run_id, b.c.batch_no.in_(batch_nos))
        ]
    else:  # a list of ids, in chunks below SQLite's limit of bound parameters per statement
        whichs = [
            conv_ids[i : i + IDS_PER_STATEMENT] for i in range(0, len(conv_ids), IDS_PER_STATEMENT)
        ]
    channels = batch.channel.tolist()
    days = batch.ts.astype("datetime64[D]").astype(str).tolist()
    new_keys = list(zip(channels, days, strict=True))
    for n, which in enumerate(whichs):
        mark_stale(conn, which, new_keys if n == 0 else ())  # old and new groups
        for table in schema.ATTRIBUTION_TABLES:
            conn.execute(sa.delete(table).where(table.c.conv_id.in_(which)))
    conv = batch.conv_id_per_session().tolist()
    sessions = batch.session_ids.tolist()
    written = bulk_insert(
        conn,
        schema.attribution_customer_journey,
        zip(conv, sessions, result.ihc.tolist(), strict=True),
    )
    bulk_insert(
        conn,
        schema.attribution_keys,
        zip(conv, sessions, channels, days, result.ihc.tolist(), strict=True),
    )
    bulk_insert(
        conn,
        schema.attribution_detail,
        zip(
            conv,
            sessions,
            _nullable(result.initializer),
            _nullable(result.holder),
            _nullable(result.closer),
            strict=True,
        ),
    )
    n = batch.n_journeys
    bulk_insert(
        conn,
        schema.attributed_conversions,
        zip(conv_ids, [model] * n, [run_id] * n, fingerprints or [None] * n, strict=True),
    )
    return written


IDS_PER_STATEMENT = 10_000

# A local model's batches are written in transactions of about this many attribution rows:
# one commit per batch cost ~10-30 ms each (WAL pages of four tables and their indexes), and
# a transaction of whole batches still leaves every conversion with either its old or its new
# attribution if the process dies. Memory does not grow with it (rows go to the database as
# each batch is done).
ROWS_PER_TRANSACTION = 250_000


def attribute_batches(
    engine: sa.Engine,
    run_id: str,
    batch_nos: Iterable[int],
    provider: Provider,
    *,
    on_batch: Callable[[JourneyBatch], None] | None = None,
    rows_per_transaction: int | None = None,
    recompute: bool = False,
) -> AttributeStats:
    """Attribute and store the given batches of a run with a local provider: whole batches
    per transaction (about ``rows_per_transaction`` attribution rows each, default
    :data:`ROWS_PER_TRANSACTION`), each transaction's batches loaded, attributed and stored
    as one (the per-batch statements cost more than the model). ``on_batch`` is called once
    per planned batch stored, with the journeys stored with it.

    With a provider that has a ``context``, the journeys whose stored fingerprint matches are
    kept as stored (not recomputed, not rewritten) unless ``recompute``."""
    limit = rows_per_transaction or ROWS_PER_TRANSACTION
    context = getattr(provider, "context", None)
    stats = AttributeStats()
    for group in _transactions(engine, run_id, list(batch_nos), limit):
        with engine.begin() as conn:
            batch = load_batches(conn, run_id, group)
            todo, prints = batch, None
            if context is not None:
                known = _stored_fingerprints(conn, run_id, group)
                conv_ids = batch.conv_ids.tolist()
                stored = [known.get(c, (None, None)) for c in conv_ids]
                prints = journey_fingerprints(batch, [r for r, _ in stored], context)
                if not recompute:
                    changed = [i for i, (_, p) in enumerate(stored) if p != prints[i]]
                    if len(changed) < batch.n_journeys:
                        todo = batch.select(np.asarray(changed, dtype=np.int64))
                        prints = [prints[i] for i in changed]
            stats.unchanged += batch.n_journeys - todo.n_journeys
            if todo.n_journeys:
                result = provider.attribute(todo)
                check_attribution(todo, result)
                stats.rows_written += store_attribution(
                    conn,
                    run_id,
                    todo,
                    result,
                    provider.name,
                    prints,
                    batch_nos=group if todo is batch else None,
                )
        stats.batches += len(group)
        stats.journeys += batch.n_journeys
        stats.sessions += batch.n_sessions
        if on_batch is not None:
            for _ in group:
                on_batch(batch)
    return stats


def _transactions(engine: sa.Engine, run_id: str, batch_nos: list[int], limit: int):
    """The batches in groups of whole batches of about ``limit`` sessions."""
    if not batch_nos:
        return
    b, j = schema.batches, schema.journeys
    with engine.connect() as conn:
        sizes = dict(
            conn.execute(
                sa.select(b.c.batch_no, sa.func.sum(j.c.n_sessions))
                .join(j, sa.and_(j.c.run_id == b.c.run_id, j.c.journey_no == b.c.journey_no))
                .where(b.c.run_id == run_id, b.c.batch_no.in_(batch_nos))
                .group_by(b.c.batch_no)
            ).all()
        )
    group, rows = [], 0
    for batch_no in batch_nos:
        if group and rows + int(sizes.get(batch_no, 0)) > limit:
            yield group
            group, rows = [], 0
        group.append(batch_no)
        rows += int(sizes.get(batch_no, 0))
    yield group
