"""The bronze step: load each new landing file raw, once per content.

A file is registered in ``commission_files`` (feed, day, SHA-256 of its bytes, state) and its
records go to ``commission_bronze`` as text with their line numbers, in one transaction. A
file whose content is already loaded for its (feed, day) is skipped; a file that cannot be
loaded at all (empty, not UTF-8, a name that is not a date, a wrong column set) is registered
as rejected with the reason, to be set aside by the archive step.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa

from growthflow.commissions import schema
from growthflow.commissions.config import FeedConfig
from growthflow.commissions.landing import LandingFile, content_hash
from growthflow.database import bulk_insert, translate_errors

if TYPE_CHECKING:
    from growthflow.commissions.parse import Records

LOADED, SKIPPED, REJECTED = "loaded", "already loaded", "rejected"


@dataclass
class FileLoad:
    item: LandingFile
    digest: str
    outcome: str  # loaded | already loaded | rejected
    file_id: int | None = None
    records: Records | None = None  # kept for the silver step of the same process
    reason: str | None = None
    detail: str | None = None


def _existing(conn: sa.Connection, item: LandingFile, digest: str) -> str | None:
    """The state of this exact content if it was registered and is not superseded."""
    f = schema.files
    day = f.c.day.is_(None) if item.day is None else f.c.day == item.day
    states = (
        conn.execute(
            sa.select(f.c.state).where(
                f.c.feed == item.feed, day, f.c.content_hash == digest, f.c.name == item.name
            )
        )
        .scalars()
        .all()
    )
    for state in ("bronze", "silver", "current", "rejected"):
        if state in states:
            return state
    return None


def load_file(engine: sa.Engine, config: FeedConfig, item: LandingFile) -> FileLoad:
    # numpy and pyarrow are imported when a file is read, not by a run with nothing new
    from growthflow.commissions.parse import FileRejected, decode, split_records
    from growthflow.commissions.validate import match_columns

    data = item.path.read_bytes()
    digest = content_hash(data)
    feed = config.feeds[item.feed]
    now = datetime.now(UTC).isoformat(timespec="seconds")
    with translate_errors(engine), engine.begin() as conn:
        state = _existing(conn, item, digest)
        if state is not None:
            outcome = REJECTED if state == "rejected" else SKIPPED
            return FileLoad(item, digest, outcome)
        row = {
            "feed": item.feed,
            "day": item.day,
            "content_hash": digest,
            "name": item.name,
            "size": len(data),
            "loaded_at": now,
        }
        try:
            if item.bad_name:
                raise FileRejected(item.bad_name)
            records = split_records(decode(data))
            match_columns(feed, records.header)
        except FileRejected as rejected:
            file_id = conn.execute(
                sa.insert(schema.files).values(
                    **row, state="rejected", reason=rejected.reason, detail=rejected.detail
                )
            ).inserted_primary_key[0]
            if rejected.reason == "wrong column set":
                conn.execute(
                    sa.insert(schema.quarantine).values(
                        file_id=file_id,
                        line=1,
                        feed=item.feed,
                        reason=rejected.reason,
                        raw=records.header,
                    )
                )
            return FileLoad(item, digest, REJECTED, file_id, None, rejected.reason, rejected.detail)
        file_id = conn.execute(
            sa.insert(schema.files).values(
                **row,
                state="bronze",
                header=records.header,
                records=len(records),
                blank_lines=records.blank_lines,
            )
        ).inserted_primary_key[0]
        bulk_insert(
            conn,
            schema.bronze,
            zip([file_id] * len(records), records.lines.tolist(), records.raw, strict=True),
        )
    return FileLoad(item, digest, LOADED, file_id, records)


def bronze_order(items: list[LandingFile]) -> list[LandingFile]:
    """Snapshots first, then days in order."""
    return sorted(items, key=lambda i: (i.day is not None, i.day or i.name, i.feed))


def load_bronze(engine: sa.Engine, config: FeedConfig, items: list[LandingFile]) -> list[FileLoad]:
    """Load every landing file not loaded yet. The records are not kept (memory would follow
    the landing zone): the silver step reads them back from ``commission_bronze``."""
    loads = []
    for item in bronze_order(items):
        load = load_file(engine, config, item)
        load.records = None
        loads.append(load)
    return loads
