"""Step 6: export ``channel_reporting`` as CSV with CPO and ROAS.

Numbers are written unrounded (Python's shortest round-trip form). ``CPO = cost / ihc`` and
``ROAS = ihc_revenue / cost`` are left empty when the divisor is 0, never ``inf``. The file is
written to a temporary file and renamed, so readers never see half a file.
"""

from __future__ import annotations

import csv
from pathlib import Path

import sqlalchemy as sa

from growthflow.attribution import schema
from growthflow.database import read_only
from growthflow.files import atomic_write
from growthflow.sql import collate_c

HEADER = ("channel_name", "date", "cost", "ihc", "ihc_revenue", "CPO", "ROAS")


def _number(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def _ratio(numerator: float | None, denominator: float | None) -> str:
    if numerator is None or not denominator:
        return ""
    return repr(float(numerator) / float(denominator))


def export_csv(engine: sa.Engine, path: Path | str) -> int:
    """Write the CSV; returns the number of data rows."""
    cr = schema.channel_reporting
    c = collate_c(engine.dialect.name)
    query = sa.select(cr.c.channel_name, cr.c.date, cr.c.cost, cr.c.ihc, cr.c.ihc_revenue).order_by(
        sa.text(f"channel_name{c}, date{c}")
    )
    rows = 0
    with atomic_write(path) as out, read_only(engine) as conn:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(HEADER)
        for channel, day, cost, ihc, revenue in conn.execute(query):
            writer.writerow(
                (
                    channel,
                    day,
                    _number(cost),
                    _number(ihc),
                    _number(revenue),
                    _ratio(cost, ihc),
                    _ratio(revenue, cost),
                )
            )
            rows += 1
    return rows
