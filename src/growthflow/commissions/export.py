"""Gold tables as CSV files: money with two decimals, rows in key order."""

from __future__ import annotations

import csv
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa

from growthflow.commissions import schema
from growthflow.database import read_only, translate_errors
from growthflow.files import atomic_write

CENT = Decimal("0.01")


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal | float):  # SQLite hands NUMERIC back as a float
        return str(Decimal(str(value)).quantize(CENT))
    return str(value)


def export_gold(engine: sa.Engine, out: Path) -> list[tuple[Path, int]]:
    written = []
    with translate_errors(engine), read_only(engine) as conn:
        for table in schema.GOLD_TABLES:
            path = Path(out) / f"{table.name}.csv"
            rows = 0
            query = sa.select(table).order_by(*table.primary_key.columns)
            with atomic_write(path) as handle:
                writer = csv.writer(handle, lineterminator="\n")
                writer.writerow([c.name for c in table.columns])
                for row in conn.execute(query):
                    writer.writerow([_cell(v) for v in row])
                    rows += 1
            written.append((path, rows))
    return written
