"""Export journeys in the format the IHC service accepts for parameter training.

Journeys are built exactly as for attribution (every usable session strictly before the
conversion, so a session after the conversion never reaches the file), and written with the
fields of an API request, the last session of each journey carrying ``conversion = 1``. Rows
stream from the database in chunks, so the export runs in bounded memory.

CSV: one row per session. JSON: ``{"customer_journeys": [session, ...]}`` like a request body.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import sqlalchemy as sa

from growthflow.attribution import schema
from growthflow.attribution.journeys import build_journeys, clear_staging
from growthflow.attribution.rules import InputRules
from growthflow.database import read_only, translate_errors
from growthflow.errors import ConfigError
from growthflow.files import atomic_write

FIELDS = (
    "conversion_id",
    "session_id",
    "timestamp",
    "channel_label",
    "holder_engagement",
    "closer_engagement",
    "conversion",
    "impression_interaction",
)
CHUNK_ROWS = 10_000


def _sessions(engine: sa.Engine, run_id: str) -> Iterator[tuple]:
    j, js = schema.journeys, schema.journey_sessions
    query = (
        sa.select(
            j.c.conv_id,
            js.c.session_id,
            js.c.event_ts,
            js.c.channel_name,
            js.c.holder_engagement,
            js.c.closer_engagement,
            sa.case((js.c.position == j.c.n_sessions - 1, 1), else_=0),
            js.c.impression_interaction,
        )
        .join(js, sa.and_(js.c.run_id == j.c.run_id, js.c.journey_no == j.c.journey_no))
        .where(j.c.run_id == run_id)
        .order_by(j.c.journey_no, js.c.position)
    )
    with read_only(engine) as conn:
        result = conn.execution_options(yield_per=CHUNK_ROWS).execute(query)
        for row in result:
            yield tuple(row)


def export_training_set(
    engine: sa.Engine,
    start: date,
    end: date,
    out: Path | str,
    *,
    max_journey_sessions: int = 100,
    lookback_days: int | None = None,
) -> tuple[int, int]:
    """Write the journeys of conversions in [start, end]; returns (journeys, sessions)."""
    out = Path(out)
    kind = out.suffix.lower()
    if kind not in (".csv", ".json"):
        raise ConfigError(f"--out must end in .csv or .json, not {out.name!r}")
    from growthflow.attribution.pipeline import new_run_id

    run_id = new_run_id()
    with translate_errors(engine):
        schema.init_db(engine, inputs=False)
        try:
            stats = build_journeys(
                engine,
                run_id,
                start,
                end,
                rules=InputRules.for_engine(engine),
                max_journey_sessions=max_journey_sessions,
                lookback_days=lookback_days,
            )
            with atomic_write(out) as handle:
                if kind == ".csv":
                    writer = csv.writer(handle, lineterminator="\n")
                    writer.writerow(FIELDS)
                    writer.writerows(_sessions(engine, run_id))
                else:
                    handle.write('{"customer_journeys": [')
                    for i, row in enumerate(_sessions(engine, run_id)):
                        handle.write(("," if i else "") + "\n  ")
                        handle.write(json.dumps(dict(zip(FIELDS, row, strict=True))))
                    handle.write("\n]}\n")
        finally:
            with engine.begin() as conn:
                clear_staging(conn, run_id)
    return stats.journeys, stats.sessions
