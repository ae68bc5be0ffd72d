"""The silver step: validate every file loaded to bronze, one transaction per file.

Each record ends in exactly one of the feed's silver table (typed, standardised) or
``commission_quarantine`` (with the reason); warnings about kept rows go to
``commission_warnings``. The file's state becomes ``silver``: its rows wait for the gold step,
which makes them current (and supersedes an earlier version of the same file).
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from growthflow.commissions import schema
from growthflow.commissions.config import FeedConfig
from growthflow.commissions.deals import contradiction
from growthflow.commissions.parse import Records
from growthflow.commissions.validate import Validated, match_columns, validate
from growthflow.database import bulk_insert, translate_errors


@dataclass
class FileCheck:
    file_id: int
    feed: str
    name: str
    records: int
    silver_rows: int
    quarantined: Counter = field(default_factory=Counter)
    warnings: Counter = field(default_factory=Counter)


def _records_from_bronze(conn: sa.Connection, file_id: int, header: str) -> Records:
    b = schema.bronze
    rows = conn.execute(
        sa.select(b.c.line, b.c.raw).where(b.c.file_id == file_id).order_by(b.c.line)
    ).all()
    lines = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    return Records(header, lines, [r[1] for r in rows])


def _deal_warnings(config: FeedConfig, checked: Validated) -> list[tuple[str, str, int, int]]:
    """Deals whose comment describes another formula; unknown deals (quarantined)."""
    out = []
    silver = checked.silver
    if "comments" in silver.column_names:
        for line, source, deal, comment in zip(
            *(silver[c].to_pylist() for c in ("line", "marketing_source", "deal", "comments")),
            strict=True,
        ):
            why = contradiction(deal, comment, config.rate_e4)
            if why:
                out.append(
                    ("deal contradicts its comment: the deal applies", f"{source}: {why}", 1, line)
                )
    for line, reason, raw in zip(
        checked.quarantine_lines.tolist(),
        checked.quarantine_reasons,
        checked.quarantine_raw,
        strict=True,
    ):
        if reason == "unknown deal":
            out.append(("unknown deal: the source falls back to Default", raw, 1, line))
    return out


def _silver_rows(table: sa.Table, file_id: int, feed: str, silver: pa.Table, chunk=20_000):
    """The silver rows as tuples in the table's column order, converted a chunk at a time
    (Python objects for a whole file would be several times its size) and in the table's
    clustered key order (appends to the b-tree instead of inserts all over it). The rows are
    chained zips: no Python code runs per row."""
    key = [c.name for c in table.primary_key.columns if c.name in silver.column_names]
    if key:
        silver = silver.take(pc.sort_indices(silver, [(name, "ascending") for name in key]))

    def chunks():
        for start in range(0, silver.num_rows, chunk):
            part = silver.slice(start, chunk)
            n = part.num_rows
            columns = []
            for column in table.columns:
                if column.name == "file_id":
                    columns.append(itertools.repeat(file_id, n))
                elif column.name == "feed":
                    columns.append(itertools.repeat(feed, n))
                elif column.name == "day":
                    columns.append(pc.cast(part["day"], pa.string()).to_pylist())
                elif column.name in part.column_names:
                    columns.append(part[column.name].to_pylist())
                else:
                    columns.append(itertools.repeat(None, n))
            yield zip(*columns, strict=False)  # repeat() columns are endless

    return itertools.chain.from_iterable(chunks())


def validate_file(
    engine: sa.Engine, config: FeedConfig, file_id: int, records: Records | None = None
) -> FileCheck:
    f = schema.files
    with translate_errors(engine), engine.begin() as conn:
        info = conn.execute(
            sa.select(f.c.feed, f.c.day, f.c.name, f.c.header, f.c.state).where(
                f.c.file_id == file_id
            )
        ).one()
        if info.state != "bronze":  # done by an earlier or concurrent run
            return FileCheck(file_id, info.feed, info.name, 0, 0)
        feed = config.feeds[info.feed]
        if records is None:
            records = _records_from_bronze(conn, file_id, info.header)
        checked = validate(feed, records, info.day, match_columns(feed, info.header))
        table = schema.silver[feed.role]
        bulk_insert(conn, table, _silver_rows(table, file_id, feed.name, checked.silver))
        bulk_insert(
            conn,
            schema.quarantine,
            zip(
                [file_id] * len(checked.quarantine_reasons),
                checked.quarantine_lines.tolist(),
                [feed.name] * len(checked.quarantine_reasons),
                checked.quarantine_reasons,
                checked.quarantine_raw,
                strict=True,
            ),
        )
        warnings = checked.warnings
        if feed.role == "deals":
            warnings = warnings + _deal_warnings(config, checked)
        if warnings:
            conn.execute(
                sa.insert(schema.warnings),
                [
                    {
                        "kind": kind,
                        "feed": feed.name,
                        "date": info.day,
                        "subject": subject,
                        "rows": rows,
                        "file_id": file_id,
                        "line": line,
                        "origin": "file",
                    }
                    for kind, subject, rows, line in warnings
                ],
            )
        if "day" in checked.silver.column_names and checked.silver.num_rows:
            days = pc.unique(checked.silver["day"]).to_pylist()
            conn.execute(
                sa.insert(schema.file_days), [{"file_id": file_id, "day": d} for d in days]
            )
        conn.execute(
            sa.update(f)
            .where(f.c.file_id == file_id)
            .values(
                state="silver",
                silver_rows=checked.silver.num_rows,
                quarantined_rows=len(checked.quarantine_reasons),
            )
        )
    counted = Counter()
    for kind, _subject, rows, _line in warnings:
        counted[kind] += rows
    return FileCheck(
        file_id,
        feed.name,
        info.name,
        len(records),
        checked.silver.num_rows,
        checked.reasons,
        counted,
    )


def validate_pending(engine: sa.Engine, config: FeedConfig) -> list[FileCheck]:
    """Validate every file in state ``bronze``, reading its records back from
    ``commission_bronze`` (``validate_file`` takes them from memory right after bronze)."""
    f = schema.files
    with engine.connect() as conn:
        pending = (
            conn.execute(sa.select(f.c.file_id).where(f.c.state == "bronze").order_by(f.c.file_id))
            .scalars()
            .all()
        )
    return [validate_file(engine, config, fid) for fid in pending]
