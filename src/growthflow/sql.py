"""SQL fragments that differ between SQLite and PostgreSQL, shared by the pipelines.

Each returns constant SQL text for a column reference (never a value): composing them into
statements keeps every value a bound parameter.
"""

from __future__ import annotations

_PG_DATE_RE = r"'^[1-9][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$'"
_PG_TIME_RE = r"'^([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]$'"


def valid_date(col: str, dialect: str) -> str:
    if dialect == "sqlite":
        # date() alone accepts 2023-02-30; a +0 days shift normalises it, so compare.
        return f"(date({col}, '+0 days') = {col})"
    # to_date() raises on 2023-02-30, so check the shape first, then the day of the month.
    return (
        f"(CASE WHEN {col} ~ {_PG_DATE_RE} THEN "
        f"CAST(substr({col}, 9, 2) AS integer) <= CAST(extract(day FROM "
        f"date_trunc('month', to_date(substr({col}, 1, 7), 'YYYY-MM')) "
        f"+ interval '1 month - 1 day') AS integer) ELSE false END)"
    )


def valid_time(col: str, dialect: str) -> str:
    if dialect == "sqlite":
        return f"(time({col}) = {col})"
    return f"({col} ~ {_PG_TIME_RE})"


def finite_number(col: str, dialect: str) -> str:
    """SQL true for a finite number: false for NULL, text, +-Infinity and PostgreSQL's NaN
    (NaN sorts above every number there; SQLite has no NaN and stores it as NULL)."""
    if dialect == "sqlite":
        return f"({col} BETWEEN -1.7e308 AND 1.7e308)"
    return (
        f"({col} BETWEEN CAST(-1.7e308 AS double precision) AND CAST(1.7e308 AS double precision))"
    )


def collate_c(dialect: str) -> str:
    """Byte-order collation, so PostgreSQL sorts text exactly like SQLite."""
    return ' COLLATE "C"' if dialect == "postgresql" else ""
